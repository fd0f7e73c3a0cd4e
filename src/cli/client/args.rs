//! The clap definitions of the client commands: their subcommands, arguments and flags.

use clap::{ArgGroup, Args, Subcommand};

/// Flags every client command takes (before or after its subcommand).
#[derive(Debug, Clone, Args)]
pub struct ClientOpts {
    /// Server base URL. Default: the URL of the stored session, else http://127.0.0.1:8080.
    #[arg(long, env = "EZFORGE_URL", global = true, value_name = "URL")]
    pub url: Option<String>,
    /// Print the API's `data` as JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum AuthCommand {
    /// Sign in; keeps the session token in ~/.config/ezforge/credentials (mode 0600).
    ///
    /// The password comes from `--password-stdin` (one line), else `EZFORGE_PASSWORD`, else a
    /// prompt without echo when stdin is a terminal.
    Login {
        /// Account email.
        #[arg(long)]
        email: String,
        /// Read the password from the first line of stdin.
        #[arg(long)]
        password_stdin: bool,
    },
    /// End the stored session on the server and delete the credentials file.
    Logout,
    /// Show whom the current credentials (API key or session) belong to.
    Whoami,
    /// Set your password with an invite token: one an admin gave you with your new account, or
    /// an administrator's project invitation to an email that has no account yet (which makes
    /// the account and joins the project).
    ///
    /// The password is read like `login`'s. Other owners' invitations make no account: once
    /// an administrator has created yours, sign in and use `ezforge project join` instead.
    AcceptInvite {
        /// The token (ezf_inv_…). Better left out: it is then read from `EZFORGE_INVITE_TOKEN`,
        /// or asked for without echo. On the command line, other users of this machine can
        /// read it (in `ps`) while the password is typed, and take the account first.
        token: Option<String>,
        /// Read the password from the first line of stdin.
        #[arg(long)]
        password_stdin: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ProjectCommand {
    /// Create a project; you become its owner.
    Create {
        /// Display name.
        name: String,
        /// URL-safe identifier (DNS label). Default: derived from the name.
        #[arg(long)]
        slug: Option<String>,
    },
    /// List the projects you can see.
    List,
    /// Create an API key for a project; the key is printed once.
    CreateKey {
        /// Project id (proj_…) or slug.
        project: String,
        /// Name of the key (for you to recognise it).
        #[arg(long)]
        name: String,
        /// Scopes, comma separated: servers:read, servers:write, deployments:read,
        /// deployments:write, logs:read, metrics:read, billing:read.
        #[arg(long, value_name = "A,B")]
        scopes: String,
        /// Expiry time, RFC 3339 (2026-01-15T10:00:00Z). Default: never.
        #[arg(long, value_name = "TIME")]
        expires_at: Option<String>,
        /// Make a test key (ezf_test_…) instead of a live one (ezf_live_…).
        #[arg(long)]
        test: bool,
    },
    /// List a project's members (owners).
    Members {
        /// Project id or slug.
        project: String,
    },
    /// Invite an email to a project (owners). Nobody joins unasked: they accept signed in as
    /// that email, with the invitation's token (printed once, for you to hand to them) or from
    /// their own list. The answer is the same whether or not the email has an account; an
    /// email without one needs an administrator to create it.
    Invite {
        /// Project id or slug.
        project: String,
        /// Whom to invite.
        email: String,
        /// Their role once they accept: member or owner.
        #[arg(long, default_value = "member")]
        role: String,
    },
    /// A project's invitations (owners); without a project, the ones addressed to you.
    Invitations {
        /// Project id or slug.
        project: Option<String>,
    },
    /// Withdraw an invitation (owners): its token stops working.
    Withdraw {
        /// Project id or slug.
        project: String,
        /// Invitation id (inv_…).
        invitation: String,
    },
    /// Join a project by accepting an invitation, signed in as the invited email.
    Join {
        /// The invitation's token (ezf_inv_…), or its id (inv_…) from
        /// `ezforge project invitations`.
        invitation: String,
    },
    /// Decline an invitation addressed to you: it is deleted, and its token stops working.
    Decline {
        /// Invitation id (inv_…), from `ezforge project invitations`.
        invitation: String,
    },
    /// Remove a member from a project (owners). Unless they are an instance admin, what they
    /// authorized on its servers is revoked and the invitations they sent to it withdrawn.
    RemoveMember {
        /// Project id or slug.
        project: String,
        /// The member's user id (usr_…) or email.
        user: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ServersCommand {
    /// Register an MCP server in a project.
    Create {
        /// Display name.
        name: String,
        /// Project id or slug. Default: your only project.
        #[arg(long)]
        project: Option<String>,
        /// URL-safe identifier; the server's URL ends with it. Default: derived from the name.
        #[arg(long)]
        slug: Option<String>,
        /// The upstream MCP endpoint to route to (creates the first deployment).
        #[arg(long, value_name = "URL")]
        upstream: Option<String>,
    },
    /// List servers (all you can see, or one project's).
    List {
        /// Project id or slug.
        #[arg(long)]
        project: Option<String>,
    },
    /// Show one server.
    Get {
        /// Server id (srv_…) or slug.
        server: String,
    },
    /// Show a server's state: status, the deployment serving it, its process, a failed deploy.
    Status {
        /// Server id (srv_…) or slug.
        server: String,
    },
    /// Delete a server: its grants are revoked and its URL answers 404.
    Delete {
        /// Server id or slug.
        server: String,
    },
    /// Change a server's settings or its auth mode (auth mode: session only).
    Update(UpdateArgs),
    /// OAuth clients allowed for a server (session only).
    Clients {
        #[command(subcommand)]
        command: ClientsCommand,
    },
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// Server id or slug.
    pub server: String,
    /// New display name.
    #[arg(long)]
    pub name: Option<String>,
    /// New upstream MCP endpoint.
    #[arg(long, value_name = "URL")]
    pub upstream: Option<String>,
    /// Who issues the tokens the server accepts: ezForge itself or your own IdP.
    #[arg(long, value_name = "MODE", value_parser = ["ezforge_managed", "byoa"])]
    pub auth_mode: Option<String>,
    /// BYOA: the issuer (`iss`) of your IdP's tokens (https, no query or fragment).
    #[arg(long, value_name = "URL", requires = "auth_mode")]
    pub byoa_issuer: Option<String>,
    /// BYOA: your IdP's JWKS URL (https).
    #[arg(long, value_name = "URL", requires = "auth_mode")]
    pub byoa_jwks_uri: Option<String>,
    /// BYOA: your IdP's authorization endpoint (https).
    #[arg(long, value_name = "URL", requires = "auth_mode")]
    pub byoa_authorization_endpoint: Option<String>,
    /// BYOA: your IdP's token endpoint (https).
    #[arg(long, value_name = "URL", requires = "auth_mode")]
    pub byoa_token_endpoint: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ClientsCommand {
    /// Pre-register an OAuth client for a server (or register one by its metadata URL).
    Add {
        /// Server id or slug.
        server: String,
        /// Client name shown on the consent page.
        #[arg(long, required_unless_present = "metadata_url")]
        name: Option<String>,
        /// Allowed redirect URI (repeat for several): https, or http on loopback.
        #[arg(
            long = "redirect-uri",
            value_name = "URL",
            required_unless_present = "metadata_url"
        )]
        redirect_uris: Vec<String>,
        /// Scopes the client may ask for, comma separated. Default: mcp:read.
        #[arg(long, value_name = "A,B")]
        scopes: Option<String>,
        /// Skip the consent page for this client.
        #[arg(long)]
        trusted: bool,
        /// Give the client a secret (printed once).
        #[arg(long)]
        confidential: bool,
        /// Register the client described by this Client ID Metadata Document (https URL).
        #[arg(long, value_name = "URL", conflicts_with_all = ["name", "redirect_uris", "confidential"])]
        metadata_url: Option<String>,
    },
    /// List a server's OAuth clients.
    List {
        /// Server id or slug.
        server: String,
    },
    /// Remove an OAuth client: its refresh tokens stop working.
    Remove {
        /// Server id or slug.
        server: String,
        /// Client id (oac_…) or its OAuth client_id.
        client: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum GrantsCommand {
    /// Your authorizations of MCP clients (admins: everyone's).
    List,
    /// Revoke one: its refresh and access tokens stop working at once.
    Revoke {
        /// Grant id (grt_…).
        grant: String,
    },
}

/// `ezforge deploy`: what a server's URL should route to from now on.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("target").required(true).args(["upstream", "command"])))]
pub struct DeployArgs {
    /// Server id (srv_…) or slug.
    pub server: String,
    /// Route to an MCP server running elsewhere (its endpoint URL).
    #[arg(long, value_name = "URL")]
    pub upstream: Option<String>,
    /// Start and supervise this command. One string, split into arguments like a shell does
    /// ('single' and "double" quotes, backslash escapes) but not run by one: no variables,
    /// globs, pipes or redirections (use `sh -c '…'` for those).
    #[arg(long, value_name = "COMMAND")]
    pub command: Option<String>,
    /// The command speaks MCP on stdin/stdout (bridged to Streamable HTTP); default: it serves
    /// HTTP itself.
    // Not `requires = "command"`: clap lets that pass when --upstream is given instead.
    #[arg(long, conflicts_with = "upstream")]
    pub stdio: bool,
    /// The port the command's HTTP server listens on.
    #[arg(long, value_name = "N", conflicts_with_all = ["upstream", "stdio"])]
    pub port: Option<u16>,
    /// A version label for you to recognise the deployment (v1.2, a commit id).
    #[arg(long, value_name = "L")]
    pub label: Option<String>,
    /// Keep this deployment when its health check fails instead of going back to the previous
    /// one (overrides the server's rollbackOnHealthCheckFailure, for this deployment only).
    #[arg(long)]
    pub no_rollback: bool,
}

/// `ezforge rollback`: list deployments, or serve an earlier one again.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("which").required(true).args(["list", "version", "deployment"])))]
pub struct RollbackArgs {
    /// Server id (srv_…) or slug.
    pub server: String,
    /// List the server's deployments (newest first) instead of rolling back.
    #[arg(long)]
    pub list: bool,
    /// Re-deploy the target of this version number (see --list).
    #[arg(long, value_name = "N")]
    pub version: Option<u64>,
    /// Re-deploy the target of this deployment.
    #[arg(long, value_name = "dep_…")]
    pub deployment: Option<String>,
}

/// `ezforge logs`: a server's access, process and deploy log.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Server id (srv_…) or slug.
    pub server: String,
    /// After the latest entries, keep printing new ones as they come (until Ctrl-C).
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Only entries of this level or above.
    #[arg(long, value_name = "L", value_parser = ["debug", "info", "warn", "error"])]
    pub level: Option<String>,
    /// Only entries whose text contains this.
    #[arg(long, value_name = "TEXT")]
    pub search: Option<String>,
    /// How many of the latest entries to print (1–200). Default: the server's (50).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=200))]
    pub limit: Option<u16>,
}

/// `ezforge audit`: the newest entries of the audit log.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// How many of the newest entries to print.
    #[arg(long, value_name = "N", default_value = "50", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub limit: u32,
}

/// `ezforge metrics`: a server's traffic over a recent window.
#[derive(Debug, Args)]
pub struct MetricsArgs {
    /// Server id (srv_…) or slug.
    pub server: String,
    /// How far back to look.
    #[arg(long, value_name = "W", default_value = "1h", value_parser = ["1h", "24h", "7d"])]
    pub window: String,
}

#[derive(Debug, Subcommand)]
pub enum EnvCommand {
    /// Set a variable (create or replace). It applies at the server's next deployment.
    ///
    /// The value comes from `--value-stdin` (all of stdin, one trailing newline dropped), else
    /// `--value` (visible in shell history and `ps`), else a prompt without echo when stdin is a
    /// terminal.
    Set {
        /// Server id (srv_…) or slug.
        server: String,
        /// Variable name ([A-Za-z_][A-Za-z0-9_]*).
        name: String,
        /// The value, on the command line (where shell history and `ps` see it).
        #[arg(long, value_name = "V", conflicts_with = "value_stdin")]
        value: Option<String>,
        /// Read the value from stdin.
        #[arg(long)]
        value_stdin: bool,
    },
    /// List a server's variables (names only: values are never shown).
    List {
        /// Server id (srv_…) or slug.
        server: String,
    },
    /// Remove a variable. It applies at the server's next deployment.
    Unset {
        /// Server id (srv_…) or slug.
        server: String,
        /// Variable name.
        name: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;
    use clap::error::ErrorKind;

    fn parse(args: &[&str]) -> Result<Command, clap::Error> {
        parse_all(args).map(|c| c.command)
    }

    fn parse_all(args: &[&str]) -> Result<Cli, clap::Error> {
        let argv = std::iter::once("ezforge").chain(args.iter().copied());
        Cli::try_parse_from(argv)
    }

    #[test]
    fn url_and_json_go_before_or_after_the_command() {
        for args in [
            &["--url", "http://h.example:9000", "--json", "auth", "whoami"][..],
            &["auth", "whoami", "--url", "http://h.example:9000", "--json"][..],
            &["auth", "--url", "http://h.example:9000", "whoami", "--json"][..],
        ] {
            let cli = parse_all(args).expect("parses");
            assert_eq!(
                cli.client.url.as_deref(),
                Some("http://h.example:9000"),
                "{args:?}"
            );
            assert!(cli.client.json, "{args:?}");
        }
        let cli = parse_all(&["serve", "--listen", "127.0.0.1:9000"]).expect("serve");
        assert!(matches!(
            cli.command,
            Command::Serve { listen: Some(a) } if a.port() == 9000
        ));
        assert!(parse_all(&["serve", "--listen", "nine"]).is_err());
        let cli = parse_all(&["healthcheck", "--url", "https://h.example"]).expect("hc");
        assert_eq!(cli.client.url.as_deref(), Some("https://h.example"));
    }

    fn refused(args: &[&str]) -> ErrorKind {
        parse(args).expect_err("refused").kind()
    }

    #[test]
    fn deploy_takes_exactly_one_target() {
        let Ok(Cli {
            command: Command::Deploy { args },
            client: opts,
            ..
        }) = parse_all(&[
            "deploy",
            "weather",
            "--command",
            "python3 srv.py",
            "--stdio",
            "--label",
            "v2",
            "--no-rollback",
            "--json",
        ])
        else {
            panic!("deploy parses");
        };
        assert_eq!(args.server, "weather");
        assert_eq!(args.command.as_deref(), Some("python3 srv.py"));
        assert!(args.stdio && args.no_rollback && opts.json);
        assert_eq!(args.label.as_deref(), Some("v2"));
        assert!(
            parse(&[
                "deploy",
                "weather",
                "--upstream",
                "http://127.0.0.1:3001/mcp"
            ])
            .is_ok()
        );
        assert!(parse(&["deploy", "w", "--command", "node s.js", "--port", "3001"]).is_ok());

        assert_eq!(
            refused(&["deploy", "weather"]),
            ErrorKind::MissingRequiredArgument
        );
        assert_eq!(
            refused(&["deploy", "w", "--upstream", "http://h", "--command", "x"]),
            ErrorKind::ArgumentConflict
        );
        // --stdio and --port only go with --command, and not together.
        assert_eq!(
            refused(&["deploy", "w", "--upstream", "http://h", "--stdio"]),
            ErrorKind::ArgumentConflict
        );
        assert_eq!(
            refused(&["deploy", "w", "--upstream", "http://h", "--port", "1"]),
            ErrorKind::ArgumentConflict
        );
        assert_eq!(
            refused(&["deploy", "w", "--stdio"]),
            ErrorKind::MissingRequiredArgument
        );
        assert_eq!(
            refused(&["deploy", "w", "--command", "x", "--stdio", "--port", "1"]),
            ErrorKind::ArgumentConflict
        );
        assert_eq!(
            refused(&["deploy", "w", "--command", "x", "--port", "70000"]),
            ErrorKind::ValueValidation
        );
    }

    #[test]
    fn rollback_takes_exactly_one_of_list_version_deployment() {
        let Ok(Command::Rollback { args, .. }) = parse(&["rollback", "w", "--version", "2"]) else {
            panic!("rollback parses");
        };
        assert_eq!(args.version, Some(2));
        assert!(!args.list);
        assert!(parse(&["rollback", "w", "--list"]).is_ok());
        assert!(parse(&["rollback", "w", "--deployment", "dep_1"]).is_ok());
        assert_eq!(
            refused(&["rollback", "w"]),
            ErrorKind::MissingRequiredArgument
        );
        assert_eq!(
            refused(&["rollback", "w", "--list", "--version", "2"]),
            ErrorKind::ArgumentConflict
        );
        assert_eq!(
            refused(&["rollback", "w", "--version", "two"]),
            ErrorKind::ValueValidation
        );
    }

    #[test]
    fn logs_and_metrics_check_their_values() {
        let Ok(Command::Logs { args, .. }) = parse(&[
            "logs", "w", "-f", "--level", "warn", "--search", "timeout", "--limit", "200",
        ]) else {
            panic!("logs parses");
        };
        assert!(args.follow);
        assert_eq!(args.level.as_deref(), Some("warn"));
        assert_eq!(args.search.as_deref(), Some("timeout"));
        assert_eq!(args.limit, Some(200));
        assert_eq!(
            refused(&["logs", "w", "--limit", "0"]),
            ErrorKind::ValueValidation
        );
        assert_eq!(
            refused(&["logs", "w", "--limit", "201"]),
            ErrorKind::ValueValidation
        );
        assert_eq!(
            refused(&["logs", "w", "--level", "trace"]),
            ErrorKind::InvalidValue
        );

        let Ok(Command::Metrics { args, .. }) = parse(&["metrics", "w"]) else {
            panic!("metrics parses");
        };
        assert_eq!(args.window, "1h");
        assert!(parse(&["metrics", "w", "--window", "7d"]).is_ok());
        assert_eq!(
            refused(&["metrics", "w", "--window", "2h"]),
            ErrorKind::InvalidValue
        );
    }

    #[test]
    fn env_set_takes_one_value_source() {
        let Ok(Command::Env {
            command: EnvCommand::Set {
                value_stdin, value, ..
            },
            ..
        }) = parse(&["env", "set", "w", "API_TOKEN", "--value-stdin"])
        else {
            panic!("env set parses");
        };
        assert!(value_stdin && value.is_none());
        assert!(parse(&["env", "set", "w", "A", "--value", ""]).is_ok());
        assert!(parse(&["env", "set", "w", "A"]).is_ok());
        assert_eq!(
            refused(&["env", "set", "w", "A", "--value", "x", "--value-stdin"]),
            ErrorKind::ArgumentConflict
        );
        assert!(parse(&["env", "list", "w"]).is_ok());
        assert!(parse(&["env", "unset", "w", "A"]).is_ok());
        assert!(parse(&["servers", "status", "w", "--json"]).is_ok());
    }
}
