//! The command line: `serve` and the operator commands that work on the data directory
//! (`local`), and the client commands that call a running server's control API (`client`).

mod client;
mod doctor;
mod local;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "ezforge",
    version,
    about = "Self-hosted OAuth 2.1 for MCP servers"
)]
pub struct Cli {
    /// Config file (TOML). Default: $EZFORGE_CONFIG, else /etc/ezforge/config.toml if it exists.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Before or after the command: the server's URL, `--json`.
    #[command(flatten)]
    pub client: client::ClientOpts,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    Serve {
        /// Address and port to listen on, instead of `server.listen` (e.g. 127.0.0.1:9000).
        #[arg(long, value_name = "ADDR")]
        listen: Option<std::net::SocketAddr>,
    },
    /// Inspect the configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Copy the database consistently while the server runs (SQLite online backup).
    Backup {
        /// Destination file (must not exist).
        file: PathBuf,
    },
    /// Access-token signing keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Users: `create` works on this machine's data directory (e.g. another admin when the
    /// first one's password is lost); `list`, `invite` and `delete` go through the control API
    /// (admins).
    Users {
        #[command(subcommand)]
        command: UsersCommand,
    },
    /// This month's usage: front-door requests, process time, bandwidth (control API client).
    Usage,
    /// Who did what, when, from where: the audit log, newest first (admins; control API client).
    Audit {
        #[command(flatten)]
        args: client::AuditArgs,
    },
    /// Exit 0 when the local server answers /v1/health (for container health checks); `--url`
    /// checks that base URL instead of the configured listener.
    Healthcheck,
    /// Check this installation, or with a URL any MCP server's authorization setup: one line
    /// per check (ok, warn, fail, and the fix); exit status 1 when a check failed.
    Doctor(doctor::DoctorArgs),
    /// Sign in to a server's control API, sign out, show who you are.
    Auth {
        #[command(subcommand)]
        command: client::AuthCommand,
    },
    /// Projects and their API keys (control API client).
    Project {
        #[command(subcommand)]
        command: client::ProjectCommand,
    },
    /// Authorizations people gave MCP clients (control API client).
    Grants {
        #[command(subcommand)]
        command: client::GrantsCommand,
    },
    /// MCP servers, their auth mode and OAuth clients (control API client).
    Servers {
        #[command(subcommand)]
        command: client::ServersCommand,
    },
    /// Deploy a new version of a server: an upstream URL or a command ezforge runs.
    Deploy {
        #[command(flatten)]
        args: client::DeployArgs,
    },
    /// List a server's deployments, or serve an earlier one again.
    Rollback {
        #[command(flatten)]
        args: client::RollbackArgs,
    },
    /// Print a server's log; with --follow, keep printing new entries.
    Logs {
        #[command(flatten)]
        args: client::LogsArgs,
    },
    /// Requests, errors, latency and tool use of a server over a recent window.
    Metrics {
        #[command(flatten)]
        args: client::MetricsArgs,
    },
    /// A server's environment variables (names only are ever shown).
    Env {
        #[command(subcommand)]
        command: client::EnvCommand,
    },
    /// Internal: what `serve` runs in place of a deployed program, to confine it first.
    #[command(name = "sandbox-exec", hide = true)]
    SandboxExec {
        #[arg(long)]
        policy: String,
        #[arg(last = true, required = true)]
        command: Vec<std::ffi::OsString>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate and print the effective config, secrets redacted.
    Check,
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Create a user who can sign in at once. The password is read from stdin with
    /// --password-stdin, else generated and printed once.
    Create {
        #[arg(long)]
        email: String,
        /// An admin (may manage users, sees every project); else a member.
        #[arg(long)]
        admin: bool,
        #[arg(long)]
        password_stdin: bool,
    },
    /// List the accounts (admins; control API client).
    List,
    /// Create an account through the control API (admins), without a password: the one-time
    /// token printed is for its owner to set one with `ezforge auth accept-invite`.
    Invite {
        /// The account's email.
        email: String,
        /// An admin (may manage users, sees every project); else a member.
        #[arg(long)]
        admin: bool,
    },
    /// Delete an account (admins; control API client): its sessions and grants end at once,
    /// and the invitations it sent are withdrawn.
    Delete {
        /// User id (usr_…) or email.
        user: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// List published signing keys (`--json` for JSON).
    List,
    /// Make a new active key; the old one stays published until its tokens have expired.
    Rotate,
}

/// Parses the command line and runs it. Errors print as one line: `error: …`.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    if !matches!(cli.command, Command::Serve { .. }) {
        quiet_on_closed_pipe();
    }
    let config_path = cli.config.as_deref();
    let opts = cli.client;
    match cli.command {
        Command::Serve { listen } => local::serve(config_path, listen),
        Command::Config {
            command: ConfigCommand::Check,
        } => local::config_check(config_path),
        Command::Backup { file } => local::backup(config_path, &file),
        Command::Keys { command } => match command {
            KeysCommand::List => local::keys_list(config_path, opts.json),
            KeysCommand::Rotate => local::keys_rotate(config_path),
        },
        Command::Users { command } => {
            use client::users::Call;
            let call = match command {
                UsersCommand::Create {
                    email,
                    admin,
                    password_stdin,
                } => return local::users_create(config_path, &email, admin, password_stdin),
                UsersCommand::List => Call::List,
                UsersCommand::Invite { email, admin } => Call::Invite { email, admin },
                UsersCommand::Delete { user } => Call::Delete { user },
            };
            client::run(opts, client::Group::Users(call))
        }
        Command::Usage => client::run(opts, client::Group::Usage),
        Command::Audit { args } => client::run(opts, client::Group::Audit(args)),
        Command::Healthcheck => local::healthcheck(config_path, opts.url),
        Command::Doctor(args) => doctor::run(config_path, args, opts.json),
        Command::Auth { command } => client::run(opts, client::Group::Auth(command)),
        Command::Project { command } => client::run(opts, client::Group::Project(command)),
        Command::Servers { command } => client::run(opts, client::Group::Servers(command)),
        Command::Grants { command } => client::run(opts, client::Group::Grants(command)),
        Command::Deploy { args } => client::run(opts, client::Group::Deploy(args)),
        Command::Rollback { args } => client::run(opts, client::Group::Rollback(args)),
        Command::Logs { args } => client::run(opts, client::Group::Logs(args)),
        Command::Metrics { args } => client::run(opts, client::Group::Metrics(args)),
        Command::Env { command } => client::run(opts, client::Group::Env(command)),
        Command::SandboxExec { policy, command } => {
            Ok(crate::deploy::sandbox::launcher_main(&policy, &command))
        }
    }
}

/// A command whose output is piped into something that stops reading (`| head`) ends quietly,
/// as Unix tools do, instead of panicking in `println!`. Not for `serve`: it must survive
/// anything. (Sockets are unaffected: Rust writes to them with `MSG_NOSIGNAL`.)
#[allow(unsafe_code)]
fn quiet_on_closed_pipe() {
    // SAFETY: restores the default disposition of one signal, before any thread is started.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
