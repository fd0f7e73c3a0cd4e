//! The config file's sections: one struct per `[section]`, with its defaults.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::error::ConfigError;
use super::sandbox::SandboxConfigOrMode;
use super::units::{ByteSize, Duration, RateLimit};
use crate::domain::Secret;
use crate::domain::destinations::{Rules, parse_rules};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address and port to listen on.
    pub listen: SocketAddr,
    /// The URL users and clients see (scheme, host, port; no path). The OAuth issuer.
    /// Derived from `listen` and `tls.mode` when unset.
    pub public_url: Option<String>,
    pub data_dir: PathBuf,
    /// Worker threads; 0 = one per core.
    pub workers: usize,
    /// How long in-flight requests may take to finish on shutdown.
    pub shutdown_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: None,
            data_dir: PathBuf::from("./ezforge-data"),
            workers: 0,
            shutdown_timeout: Duration::secs(10),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TlsMode {
    #[default]
    Off,
    SelfSigned,
    Files,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    pub mode: TlsMode,
    /// PEM certificate chain (`mode = "files"`).
    pub cert_file: Option<PathBuf>,
    /// PEM private key (`mode = "files"`).
    pub key_file: Option<PathBuf>,
    /// Names for the self-signed certificate, besides `localhost`, `127.0.0.1` and the
    /// public URL's host.
    pub names: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    #[default]
    Managed,
    Byoa,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    pub mode: AuthMode,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    pub auth_code_ttl: Duration,
    /// Control API and login-page sessions.
    pub session_ttl: Duration,
    /// How long a remembered consent stays valid.
    pub consent_ttl: Duration,
    /// How long a just-rotated refresh token may be replayed (while its successor is unused)
    /// and answered with that same successor; `"0s"`: never (strict rotation).
    pub refresh_reuse_grace: Duration,
    pub signing: SigningConfig,
    pub registration: RegistrationConfig,
    /// The deployment's default external issuer for BYOA servers.
    pub byoa: Option<ByoaConfig>,
    /// Requests per address to the authorization server's endpoints (`/oauth/*`).
    pub rate_limit: RateLimit,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            mode: AuthMode::Managed,
            access_token_ttl: Duration::secs(15 * 60),
            refresh_token_ttl: Duration::secs(30 * 86_400),
            auth_code_ttl: Duration::secs(5 * 60),
            session_ttl: Duration::secs(3600),
            consent_ttl: Duration::secs(90 * 86_400),
            refresh_reuse_grace: Duration::secs(60),
            signing: SigningConfig::default(),
            registration: RegistrationConfig::default(),
            byoa: None,
            rate_limit: RateLimit {
                per_minute: 1200,
                burst: 200,
            },
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SigningConfig {
    /// Signing algorithm for access tokens. Only `ES256` for now.
    pub algorithm: SigningAlgorithm,
    /// Rotate the active key automatically when it is older than this; `"0s"` = only by
    /// `ezforge keys rotate`.
    pub rotate_after: Duration,
}

impl Default for SigningConfig {
    fn default() -> Self {
        Self {
            algorithm: SigningAlgorithm::ES256,
            rotate_after: Duration::secs(90 * 86_400),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SigningAlgorithm {
    ES256,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegistrationMode {
    #[default]
    Open,
    Token,
    Off,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistrationConfig {
    /// RFC 7591 dynamic registration: `open`, `token` (needs `initial_access_token`) or `off`.
    pub mode: RegistrationMode,
    #[serde(deserialize_with = "crate::domain::secret_lenient")]
    pub initial_access_token: Option<Secret>,
    /// Dynamic clients unused for this long are deleted.
    pub reap_unused_after: Duration,
}

impl Default for RegistrationConfig {
    fn default() -> Self {
        Self {
            mode: RegistrationMode::Open,
            initial_access_token: None,
            reap_unused_after: Duration::secs(30 * 86_400),
        }
    }
}

/// An external OpenID provider (the hosted API's `byoaConfig`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ByoaConfig {
    pub issuer: String,
    pub jwks_uri: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Routing {
    #[default]
    Path,
    Host,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// `path`: `{public_url}/mcp/{slug}`; `host`: `https://{slug}.{server_domain}`.
    pub routing: Routing,
    pub server_domain: Option<String>,
    pub body_limit: ByteSize,
    pub upstream_connect_timeout: Duration,
    /// Time to the upstream's response headers (streams may then run longer).
    pub upstream_timeout: Duration,
    /// Browser origins allowed on every server, besides the public URL's own.
    pub allowed_origins: Vec<String>,
    /// While an SSE stream from an upstream is quiet, send a comment this often, so clients
    /// that went away are noticed and their upstream connections closed.
    pub sse_keepalive: Duration,
    /// A client must send its whole request body within this time (slow senders get 408).
    pub body_timeout: Duration,
    pub rate_limit: RateLimit,
    /// Upstream destinations allowed beyond the defaults: CIDRs lift the built-in refusals
    /// (link-local, metadata…) for their range; when non-empty, everything else is refused.
    pub upstream_allow: Vec<String>,
    /// Upstream destinations refused: CIDRs and host patterns (`*.example.com`).
    pub upstream_deny: Vec<String>,
}

impl GatewayConfig {
    /// `upstream_allow` and `upstream_deny`, parsed; an error names the list.
    pub fn destination_rules(&self) -> Result<Rules, ConfigError> {
        let list = |key, entries| parse_rules(entries).map_err(|e| ConfigError::rule(key, e));
        Ok(Rules::new(
            list("gateway.upstream_allow", &self.upstream_allow)?,
            list("gateway.upstream_deny", &self.upstream_deny)?,
        ))
    }
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            routing: Routing::Path,
            server_domain: None,
            body_limit: ByteSize(4 * 1024 * 1024),
            upstream_connect_timeout: Duration::secs(5),
            upstream_timeout: Duration::secs(60),
            allowed_origins: Vec::new(),
            sse_keepalive: Duration::secs(15),
            body_timeout: Duration::secs(30),
            rate_limit: RateLimit {
                per_minute: 1200,
                burst: 200,
            },
            upstream_allow: Vec::new(),
            upstream_deny: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControlConfig {
    pub rate_limit: RateLimit,
    /// Failed logins allowed per account and per address per 15 minutes.
    pub login_attempts: u32,
}

impl Default for ControlConfig {
    fn default() -> Self {
        Self {
            rate_limit: RateLimit {
                per_minute: 600,
                burst: 100,
            },
            login_attempts: 10,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboundConfig {
    /// Extra PEM CA files trusted for outbound https (CIMD, BYOA JWKS).
    pub ca_files: Vec<PathBuf>,
    /// Allow outbound fetches to loopback, private and link-local addresses. Off by default.
    pub allow_private_addresses: bool,
    pub timeout: Duration,
    /// Largest document fetched (metadata documents, JWKS).
    pub max_document_size: ByteSize,
}

impl Default for OutboundConfig {
    fn default() -> Self {
        Self {
            ca_files: Vec::new(),
            allow_private_addresses: false,
            timeout: Duration::secs(5),
            max_document_size: ByteSize(64 * 1024),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Pretty,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoggingConfig {
    pub format: LogFormat,
    /// A tracing filter: `info`, `debug`, `ezforge=debug,actix_server=warn`.
    pub level: String,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Pretty,
            level: "info".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeployConfig {
    /// Allow deployments that run a command (confined by `sandbox`). Off: only
    /// `upstreamUrl` deployments.
    pub allow_commands: bool,
    /// How command deployments are confined.
    pub sandbox: SandboxConfigOrMode,
    /// When ezforge runs as root, deployed programs run as: `"per-server"`, a uid of each
    /// server's own from `run_as_uids`; or one user for all (a name from /etc/passwd, or
    /// `uid:gid`); never as root.
    pub run_as: ProgramUser,
    /// The uids `run_as = "per-server"` gives out: `[first, last]`.
    pub run_as_uids: [u32; 2],
    /// How long a deployment's health check may take (process start included).
    pub health_timeout: Duration,
    /// After a traffic swap, how long requests still running on the old target may take
    /// before its process is stopped.
    pub drain_timeout: Duration,
    /// A stdio MCP server runs one process per MCP session; at most this many per server.
    pub max_stdio_sessions: usize,
    /// A stdio session with no request for this long ends (unless the server sets
    /// `autoStopSeconds`, which then applies).
    pub stdio_idle_timeout: Duration,
    /// Process output kept per process and second (the rest is counted, not stored).
    pub output_lines_per_second: u32,
}

impl Default for DeployConfig {
    fn default() -> Self {
        Self {
            allow_commands: true,
            sandbox: SandboxConfigOrMode::default(),
            run_as: ProgramUser::PerServer,
            run_as_uids: [59000, 59999],
            health_timeout: Duration::secs(30),
            drain_timeout: Duration::secs(30),
            max_stdio_sessions: 16,
            stdio_idle_timeout: Duration::secs(600),
            output_lines_per_second: 100,
        }
    }
}

/// `deploy.run_as`: who deployed programs run as when ezforge runs as root. Written as a
/// string: `"per-server"`, or a user (a name from /etc/passwd, or `uid:gid`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum ProgramUser {
    /// Each server a uid of its own, from `deploy.run_as_uids`.
    PerServer,
    /// Every server as this one user (as written; resolved when programs are run).
    Named(String),
}

impl ProgramUser {
    const PER_SERVER: &str = "per-server";
}

impl From<&str> for ProgramUser {
    fn from(text: &str) -> Self {
        match text.trim() {
            Self::PER_SERVER => ProgramUser::PerServer,
            _ => ProgramUser::Named(text.to_owned()),
        }
    }
}

impl From<String> for ProgramUser {
    fn from(text: String) -> Self {
        ProgramUser::from(text.as_str())
    }
}

impl From<ProgramUser> for String {
    fn from(user: ProgramUser) -> String {
        match user {
            ProgramUser::PerServer => ProgramUser::PER_SERVER.to_owned(),
            ProgramUser::Named(name) => name,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogsConfig {
    /// Access log and process output older than this are deleted.
    pub retention: Duration,
    /// At most this many entries are kept in each of the access log and the process log.
    pub max_entries: u64,
}

impl Default for LogsConfig {
    fn default() -> Self {
        Self {
            retention: Duration::secs(7 * 86_400),
            max_entries: 1_000_000,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Serve Prometheus metrics at `/metrics`.
    pub enabled: bool,
    /// Serve them on this address instead of the main listener (plain HTTP).
    pub listen: Option<SocketAddr>,
    /// Require `Authorization: Bearer <token>` on `/metrics`.
    #[serde(deserialize_with = "crate::domain::secret_lenient")]
    pub bearer_token: Option<Secret>,
}

/// Usage limits reported by `GET /v1/billing` (unset = unlimited). Reported, not enforced.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    pub requests_per_month: Option<u64>,
    pub compute_seconds_per_month: Option<u64>,
    pub bandwidth_bytes_per_month: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BootstrapConfig {
    /// The first admin, created when the database has no user
    /// (also `EZFORGE_ADMIN_EMAIL`). Default `admin@localhost`.
    pub admin_email: Option<String>,
    /// Also `EZFORGE_ADMIN_PASSWORD`. Generated and printed once when unset.
    #[serde(deserialize_with = "crate::domain::secret_lenient")]
    pub admin_password: Option<Secret>,
}

/// A server declared in the config file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerDecl {
    /// Slug of the project it belongs to (created if missing).
    pub project: String,
    pub slug: String,
    /// Display name; the slug when unset.
    pub name: Option<String>,
    /// Upstream MCP endpoint, e.g. `http://127.0.0.1:3001/mcp`.
    pub upstream: Option<String>,
    /// `ezforge_managed` or `byoa`; the deployment's mode decides when unset.
    pub auth_mode: Option<String>,
    /// The external issuer for `byoa` (else `[auth.byoa]` applies).
    pub byoa: Option<ByoaConfig>,
    /// Tool name -> required scope.
    #[serde(default)]
    pub tool_scopes: std::collections::BTreeMap<String, String>,
    /// This server's front-door rate limit; `[gateway.rate_limit]` when unset.
    pub rate_limit: Option<RateLimit>,
}
