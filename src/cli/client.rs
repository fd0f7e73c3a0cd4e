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
        Group::Auth(cmd) => match cmd {
            AuthCommand::Login {
                email,
                password_stdin,
            } => block_on(auth::login(&ctx, &email, password_stdin)),
            AuthCommand::Logout => block_on(auth::logout(&ctx)),
            AuthCommand::Whoami => block_on(auth::whoami(&ctx)),
            AuthCommand::AcceptInvite {
                token,
                password_stdin,
            } => block_on(auth::accept_invite(&ctx, &token, password_stdin)),
        },
        Group::Grants(cmd) => match cmd {
            GrantsCommand::List => block_on(grants::list(&ctx)),
            GrantsCommand::Revoke { grant } => block_on(grants::revoke(&ctx, &grant)),
        },
        Group::Project(cmd) => match cmd {
            ProjectCommand::Create { name, slug } => {
                block_on(project::create(&ctx, &name, slug.as_deref()))
            }
            ProjectCommand::List => block_on(project::list(&ctx)),
            ProjectCommand::CreateKey {
                project,
                name,
                scopes,
                expires_at,
                test,
            } => block_on(project::create_key(
                &ctx,
                &project,
                &name,
                &scopes,
                expires_at.as_deref(),
                test,
            )),
            ProjectCommand::Members { project } => block_on(members::members(&ctx, &project)),
            ProjectCommand::Invite {
                project,
                email,
                role,
            } => block_on(members::invite(&ctx, &project, &email, &role)),
            ProjectCommand::Invitations { project } => {
                block_on(members::invitations(&ctx, project.as_deref()))
            }
            ProjectCommand::Withdraw {
                project,
                invitation,
            } => block_on(members::withdraw(&ctx, &project, &invitation)),
            ProjectCommand::Join { invitation } => block_on(members::join(&ctx, &invitation)),
            ProjectCommand::Decline { invitation } => block_on(members::decline(&ctx, &invitation)),
            ProjectCommand::RemoveMember { project, user } => {
                block_on(members::remove(&ctx, &project, &user))
            }
        },
        Group::Servers(cmd) => match cmd {
            ServersCommand::Create {
                name,
                project,
                slug,
                upstream,
            } => block_on(servers::create(
                &ctx,
                &name,
                project.as_deref(),
                slug.as_deref(),
                upstream.as_deref(),
            )),
            ServersCommand::List { project } => block_on(servers::list(&ctx, project.as_deref())),
            ServersCommand::Get { server } => block_on(servers::get(&ctx, &server)),
            ServersCommand::Status { server } => block_on(deployments::status(&ctx, &server)),
            ServersCommand::Delete { server } => block_on(servers::delete(&ctx, &server)),
            ServersCommand::Update(args) => block_on(servers::update(&ctx, &args)),
            ServersCommand::Clients { command } => match command {
                ClientsCommand::Add {
                    server,
                    name,
                    redirect_uris,
                    scopes,
                    trusted,
                    confidential,
                    metadata_url,
                } => block_on(servers::clients_add(
                    &ctx,
                    &server,
                    servers::NewClient {
                        name,
                        redirect_uris,
                        scopes,
                        trusted,
                        confidential,
                        metadata_url,
                    },
                )),
                ClientsCommand::List { server } => block_on(servers::clients_list(&ctx, &server)),
                ClientsCommand::Remove { server, client } => {
                    block_on(servers::clients_remove(&ctx, &server, &client))
                }
            },
        },
        Group::Deploy(args) => block_on(deployments::deploy(&ctx, &args)),
        Group::Rollback(args) => block_on(deployments::rollback(&ctx, &args)),
        Group::Logs(args) => block_on(logs::logs(&ctx, &args)),
        Group::Metrics(args) => block_on(metrics::metrics(&ctx, &args)),
        Group::Env(cmd) => match cmd {
            EnvCommand::Set {
                server,
                name,
                value,
                value_stdin,
            } => block_on(env::set(&ctx, &server, &name, value, value_stdin)),
            EnvCommand::List { server } => block_on(env::list(&ctx, &server)),
            EnvCommand::Unset { server, name } => block_on(env::unset(&ctx, &server, &name)),
        },
        Group::Users(call) => block_on(users::run(&ctx, call)),
        Group::Usage => block_on(usage::usage(&ctx)),
        Group::Audit(args) => block_on(audit::audit(&ctx, args.limit as usize)),
    }?;
    Ok(ExitCode::SUCCESS)
}

fn block_on<F: Future<Output = anyhow::Result<()>>>(f: F) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(f)
}
