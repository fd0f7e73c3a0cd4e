//! Client commands: `ezforge auth|project|servers …` talk HTTP to a running server's control
//! API (`/v1`, see docs/api.md). Credentials: `EZFORGE_API_KEY` if set, else the session that
//! `ezforge auth login` keeps in the credentials file (see `credentials`).

mod api;
mod args;
mod audit;
mod auth;
mod credentials;
mod ctx;
mod deployments;
mod env;
mod grants;
mod logs;
mod members;
mod metrics;
mod output;
mod project;
mod servers;
mod usage;
pub mod users;

use std::future::Future;
use std::process::ExitCode;

use anyhow::Context;

pub use self::args::{
    AuditArgs, AuthCommand, ClientOpts, ClientsCommand, DeployArgs, EnvCommand, GrantsCommand,
    LogsArgs, MetricsArgs, ProjectCommand, RollbackArgs, ServersCommand,
};
use self::ctx::Ctx;
pub use self::ctx::DEFAULT_URL;

/// One client command group, as `cli::run` hands it over.
pub enum Group {
    Auth(AuthCommand),
    Project(ProjectCommand),
    Servers(ServersCommand),
    Grants(GrantsCommand),
    Deploy(DeployArgs),
    Rollback(RollbackArgs),
    Logs(LogsArgs),
    Metrics(MetricsArgs),
    Env(EnvCommand),
    Users(users::Call),
    Usage,
    Audit(AuditArgs),
}

pub fn run(opts: ClientOpts, group: Group) -> anyhow::Result<ExitCode> {
    let ctx = Ctx::new(opts)?;
    match group {
        Group::Auth(cmd) => block_on(auth_command(&ctx, cmd)),
        Group::Grants(cmd) => block_on(grants_command(&ctx, cmd)),
        Group::Project(cmd) => block_on(project_command(&ctx, cmd)),
        Group::Servers(cmd) => block_on(servers_command(&ctx, cmd)),
        Group::Deploy(args) => block_on(deployments::deploy(&ctx, &args)),
        Group::Rollback(args) => block_on(deployments::rollback(&ctx, &args)),
        Group::Logs(args) => block_on(logs::logs(&ctx, &args)),
        Group::Metrics(args) => block_on(metrics::metrics(&ctx, &args)),
        Group::Env(cmd) => block_on(env_command(&ctx, cmd)),
        Group::Users(call) => block_on(users::run(&ctx, call)),
        Group::Usage => block_on(usage::usage(&ctx)),
        Group::Audit(args) => block_on(audit::audit(&ctx, args.limit as usize)),
    }?;
    Ok(ExitCode::SUCCESS)
}

async fn auth_command(ctx: &Ctx, cmd: AuthCommand) -> anyhow::Result<()> {
    match cmd {
        AuthCommand::Login {
            email,
            password_stdin,
        } => auth::login(ctx, &email, password_stdin).await,
        AuthCommand::Logout => auth::logout(ctx).await,
        AuthCommand::Whoami => auth::whoami(ctx).await,
        AuthCommand::AcceptInvite {
            token,
            password_stdin,
        } => auth::accept_invite(ctx, token, password_stdin).await,
    }
}

async fn grants_command(ctx: &Ctx, cmd: GrantsCommand) -> anyhow::Result<()> {
    match cmd {
        GrantsCommand::List => grants::list(ctx).await,
        GrantsCommand::Revoke { grant } => grants::revoke(ctx, &grant).await,
    }
}

async fn project_command(ctx: &Ctx, cmd: ProjectCommand) -> anyhow::Result<()> {
    match cmd {
        ProjectCommand::Create { name, slug } => project::create(ctx, &name, slug.as_deref()).await,
        ProjectCommand::List => project::list(ctx).await,
        ProjectCommand::CreateKey {
            project,
            name,
            scopes,
            expires_at,
            test,
        } => project::create_key(ctx, &project, &name, &scopes, expires_at.as_deref(), test).await,
        ProjectCommand::Members { project } => members::members(ctx, &project).await,
        ProjectCommand::Invite {
            project,
            email,
            role,
        } => members::invite(ctx, &project, &email, &role).await,
        ProjectCommand::Invitations { project } => {
            members::invitations(ctx, project.as_deref()).await
        }
        ProjectCommand::Withdraw {
            project,
            invitation,
        } => members::withdraw(ctx, &project, &invitation).await,
        ProjectCommand::Join { invitation } => members::join(ctx, &invitation).await,
        ProjectCommand::Decline { invitation } => members::decline(ctx, &invitation).await,
        ProjectCommand::RemoveMember { project, user } => {
            members::remove(ctx, &project, &user).await
        }
    }
}

async fn servers_command(ctx: &Ctx, cmd: ServersCommand) -> anyhow::Result<()> {
    match cmd {
        ServersCommand::Create {
            name,
            project,
            slug,
            upstream,
        } => {
            servers::create(
                ctx,
                &name,
                project.as_deref(),
                slug.as_deref(),
                upstream.as_deref(),
            )
            .await
        }
        ServersCommand::List { project } => servers::list(ctx, project.as_deref()).await,
        ServersCommand::Get { server } => servers::get(ctx, &server).await,
        ServersCommand::Status { server } => deployments::status(ctx, &server).await,
        ServersCommand::Delete { server } => servers::delete(ctx, &server).await,
        ServersCommand::Update(args) => servers::update(ctx, &args).await,
        ServersCommand::Clients { command } => clients_command(ctx, command).await,
    }
}

async fn clients_command(ctx: &Ctx, cmd: ClientsCommand) -> anyhow::Result<()> {
    match cmd {
        ClientsCommand::Add {
            server,
            name,
            redirect_uris,
            scopes,
            trusted,
            confidential,
            metadata_url,
        } => {
            let client = servers::NewClient {
                name,
                redirect_uris,
                scopes,
                trusted,
                confidential,
                metadata_url,
            };
            servers::clients_add(ctx, &server, client).await
        }
        ClientsCommand::List { server } => servers::clients_list(ctx, &server).await,
        ClientsCommand::Remove { server, client } => {
            servers::clients_remove(ctx, &server, &client).await
        }
    }
}

async fn env_command(ctx: &Ctx, cmd: EnvCommand) -> anyhow::Result<()> {
    match cmd {
        EnvCommand::Set {
            server,
            name,
            value,
            value_stdin,
        } => env::set(ctx, &server, &name, value, value_stdin).await,
        EnvCommand::List { server } => env::list(ctx, &server).await,
        EnvCommand::Unset { server, name } => env::unset(ctx, &server, &name).await,
    }
}

fn block_on<F: Future<Output = anyhow::Result<()>>>(f: F) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(f)
}
