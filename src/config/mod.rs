//! Typed configuration: built-in defaults < TOML file < `EZFORGE_SECTION__KEY` environment
//! variables (and `EZFORGE_SECTION__KEY_FILE` for secrets). Unknown keys and bad values are
//! errors naming the key and where it came from.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Format, Toml};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use url::Url;

use crate::domain::Secret;

mod diagnose;
mod sandbox;
pub use diagnose::unused_variables;
pub use sandbox::{SandboxConfig, SandboxConfigOrMode, SandboxMode};

/// Where the config file was found, for messages and for `managedBy: "config"` answers.
pub const SYSTEM_CONFIG_PATH: &str = "/etc/ezforge/config.toml";

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub tls: TlsConfig,
    pub auth: AuthConfig,
    pub gateway: GatewayConfig,
    pub control: ControlConfig,
    pub outbound: OutboundConfig,
    pub logging: LoggingConfig,
    pub bootstrap: BootstrapConfig,
    pub deploy: DeployConfig,
    pub logs: LogsConfig,
    pub metrics: MetricsConfig,
    pub limits: LimitsConfig,
    /// MCP servers declared here rather than through the API (`[[servers]]`), reconciled at
    /// start and on SIGHUP.
    pub servers: Vec<ServerDecl>,
    /// The file this config was read from, if any.
    #[serde(skip)]
    pub source_file: Option<PathBuf>,
    /// `EZFORGE_MASTER_KEY[_FILE]`: not a config key, so it is never written to a file by accident.
    #[serde(skip)]
    pub master_key: Option<Secret>,
}

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub per_minute: u32,
    pub burst: u32,
}

impl RateLimit {
    /// The most either number may be: large enough for a benchmark to lift a limit out of
    /// the way, small enough that the limiter's arithmetic (a refill period times the burst,
    /// in nanoseconds) cannot overflow.
    pub const MAX: u32 = 100_000_000;

    /// Why this limit cannot be used, if it cannot.
    pub fn problem(&self) -> Option<String> {
        let range = 1..=Self::MAX;
        (!range.contains(&self.per_minute) || !range.contains(&self.burst))
            .then(|| format!("per_minute and burst must be between 1 and {}", Self::MAX))
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
    pub run_as: String,
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
            run_as: "per-server".into(),
            run_as_uids: [59000, 59999],
            health_timeout: Duration::secs(30),
            drain_timeout: Duration::secs(30),
            max_stdio_sessions: 16,
            stdio_idle_timeout: Duration::secs(600),
            output_lines_per_second: 100,
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

/// A duration written as a string: `"90s"`, `"15m"`, `"30d"`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Duration(pub std::time::Duration);

impl Duration {
    /// The longest a setting may be: 10 years (3,650 days).
    pub const MAX: Duration = Duration::secs(3650 * 86_400);

    pub const fn secs(s: u64) -> Self {
        Self(std::time::Duration::from_secs(s))
    }
    pub fn as_secs(self) -> i64 {
        self.0.as_secs() as i64
    }
}

impl fmt::Display for Duration {
    /// The largest whole unit: `30d`, `15m`, `90s` (what a person would write).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.as_secs();
        let (n, unit) = match secs {
            0 => (0, "s"),
            s if s.is_multiple_of(86_400) => (s / 86_400, "d"),
            s if s.is_multiple_of(3600) => (s / 3600, "h"),
            s if s.is_multiple_of(60) => (s / 60, "m"),
            s => (s, "s"),
        };
        if self.0.subsec_millis() > 0 {
            return write!(f, "{}ms", self.0.as_millis());
        }
        write!(f, "{n}{unit}")
    }
}

impl fmt::Debug for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Duration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration string such as \"90s\", \"15m\" or \"30d\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Duration, E> {
                let d = humantime::parse_duration(v.trim()).map_err(|e| {
                    E::custom(format!("invalid duration {v:?}: {e}; write e.g. \"15m\""))
                })?;
                // Longer is never meant, and dates that far out cannot be written.
                if d > Duration::MAX.0 {
                    return Err(E::custom(format!(
                        "invalid duration {v:?}: at most 10 years"
                    )));
                }
                Ok(Duration(d))
            }
        }
        d.deserialize_str(V)
    }
}

/// A size in bytes: an integer, or a string with a unit (`"64KiB"`, `"4MiB"`, `"1MB"`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ByteSize(pub usize);

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let n = self.0;
        if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
            s.serialize_str(&format!("{}MiB", n >> 20))
        } else if n >= 1 << 10 && n.is_multiple_of(1 << 10) {
            s.serialize_str(&format!("{}KiB", n >> 10))
        } else {
            s.serialize_u64(n as u64)
        }
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size such as 65536, \"64KiB\" or \"4MiB\"")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ByteSize, E> {
                usize::try_from(v).map(ByteSize).map_err(E::custom)
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<ByteSize, E> {
                usize::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom(format!("invalid size {v}: must not be negative")))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ByteSize, E> {
                parse_byte_size(v).map(ByteSize).ok_or_else(|| {
                    E::custom(format!(
                        "invalid size {v:?}; write e.g. \"64KiB\" or \"4MiB\""
                    ))
                })
            }
        }
        d.deserialize_any(V)
    }
}

fn parse_byte_size(text: &str) -> Option<usize> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: usize = digits.parse().ok()?;
    let factor = match unit.trim() {
        "" | "B" => 1,
        "KB" | "kB" => 1000,
        "KiB" => 1024,
        "MB" => 1_000_000,
        "MiB" => 1 << 20,
        "GB" => 1_000_000_000,
        "GiB" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(factor)
}

/// A configuration problem, with the key and the source that set it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("config key `{key}`: {message}")]
    Rule { key: &'static str, message: String },
}

impl ConfigError {
    fn rule(key: &'static str, message: impl Into<String>) -> Self {
        Self::Rule {
            key,
            message: message.into(),
        }
    }

    fn from_figment(err: figment::Error) -> Self {
        let lines: Vec<String> = err
            .into_iter()
            .map(|e| describe_figment_error(&e))
            .collect();
        Self::Invalid(lines.join("; "))
    }
}

fn describe_figment_error(e: &figment::Error) -> String {
    let key = if e.path.is_empty() {
        None
    } else {
        Some(e.path.join("."))
    };
    let source = e.metadata.as_ref().map(|m| match &m.source {
        Some(figment::Source::File(path)) => format!("in {}", path.display()),
        _ => format!("from {}", m.name),
    });
    let hint = match &e.kind {
        figment::error::Kind::UnknownField(field, expected) => {
            diagnose::nearest(field, expected.iter().copied())
                .map(|n| format!(" (did you mean `{n}`?)"))
        }
        _ => None,
    }
    .unwrap_or_default();
    match (key, source) {
        (Some(k), Some(s)) => format!("config key `{k}` {s}: {}{hint}", e.kind),
        (Some(k), None) => format!("config key `{k}`: {}{hint}", e.kind),
        (None, Some(s)) => format!("config {s}: {}{hint}", e.kind),
        (None, None) => format!("config: {}{hint}", e.kind),
    }
}

const ENV_PREFIX: &str = "EZFORGE_";

/// Keys that also take `EZFORGE_…_FILE=/path` (the value is read from the file). Only secrets:
/// `tls.cert_file` must stay settable as `EZFORGE_TLS__CERT_FILE`.
const SECRET_KEYS: &[&str] = &[
    "bootstrap.admin_password",
    "auth.registration.initial_access_token",
    "metrics.bearer_token",
];

impl Config {
    /// Loads from the file named by `--config`, else `EZFORGE_CONFIG`, else
    /// `/etc/ezforge/config.toml` if it exists, then applies the environment, then validates.
    pub fn load(explicit: Option<&Path>) -> Result<Self, ConfigError> {
        let config = Self::read(explicit)?;
        config.validate()?;
        Ok(config)
    }

    /// Like [`Config::load`], without the rules that span keys ([`Config::problems`]): for
    /// `config check`, which reports every problem at once.
    pub fn read(explicit: Option<&Path>) -> Result<Self, ConfigError> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        let file = match explicit {
            Some(p) => Some(p.to_path_buf()),
            None => match std::env::var_os("EZFORGE_CONFIG") {
                Some(p) if !p.is_empty() => Some(PathBuf::from(p)),
                _ => Some(PathBuf::from(SYSTEM_CONFIG_PATH)).filter(|p| p.exists()),
            },
        };
        Self::read_from(file.as_deref(), &env)
    }

    /// Loading with an explicit environment, so tests need not touch the process's.
    pub fn load_from(file: Option<&Path>, env: &[(String, String)]) -> Result<Self, ConfigError> {
        let config = Self::read_from(file, env)?;
        config.validate()?;
        Ok(config)
    }

    fn read_from(file: Option<&Path>, env: &[(String, String)]) -> Result<Self, ConfigError> {
        // The rate limits' defaults underneath, so that setting one of a limit's two keys
        // keeps the default of the other.
        let defaults = Config::default();
        let limit =
            |l: RateLimit| serde_json::json!({ "per_minute": l.per_minute, "burst": l.burst });
        let mut figment = Figment::from(figment::providers::Serialized::defaults(
            serde_json::json!({
                "auth": { "rate_limit": limit(defaults.auth.rate_limit) },
                "gateway": { "rate_limit": limit(defaults.gateway.rate_limit) },
                "control": { "rate_limit": limit(defaults.control.rate_limit) },
            }),
        ));
        if let Some(path) = file {
            // Read it ourselves: figment treats a missing file as empty, we treat it as an error.
            std::fs::metadata(path).map_err(|source| ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })?;
            figment = figment.merge(Toml::file_exact(path));
        }
        for var in env_vars(env)? {
            figment = figment.merge(var);
        }
        let mut config: Config = figment.extract().map_err(ConfigError::from_figment)?;
        config.source_file = file.map(Path::to_path_buf);

        let lookup = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        config.master_key = match (
            lookup("EZFORGE_MASTER_KEY"),
            lookup("EZFORGE_MASTER_KEY_FILE"),
        ) {
            (Some(v), _) => Some(Secret::new(v)),
            (None, Some(path)) => Some(Secret::new(read_secret_file(
                "EZFORGE_MASTER_KEY_FILE",
                &path,
            )?)),
            (None, None) => None,
        };
        if let Some(email) = lookup("EZFORGE_ADMIN_EMAIL") {
            config.bootstrap.admin_email = Some(email);
        }
        match (
            lookup("EZFORGE_ADMIN_PASSWORD"),
            lookup("EZFORGE_ADMIN_PASSWORD_FILE"),
        ) {
            (Some(v), _) => config.bootstrap.admin_password = Some(Secret::new(v)),
            (None, Some(path)) => {
                config.bootstrap.admin_password = Some(Secret::new(read_secret_file(
                    "EZFORGE_ADMIN_PASSWORD_FILE",
                    &path,
                )?))
            }
            (None, None) => {}
        }
        Ok(config)
    }

    /// Rules that span keys or that serde cannot express.
    /// What is wrong with the `[bootstrap]` admin, if anything. Checked where it is used: on a
    /// first start (an existing installation ignores these settings) and by `config check`
    /// before one.
    pub fn bootstrap_problem(&self) -> Option<ConfigError> {
        if let Some(email) = &self.bootstrap.admin_email
            && (!email.contains('@') || email.len() > 254 || email.chars().any(char::is_whitespace))
        {
            return Some(ConfigError::rule(
                "bootstrap.admin_email",
                format!("{email:?} is not an email address"),
            ));
        }
        self.bootstrap
            .admin_password
            .as_ref()
            .is_some_and(|p| p.expose().chars().count() < crate::domain::password::MIN_LENGTH)
            .then(|| {
                ConfigError::rule(
                    "bootstrap.admin_password",
                    format!(
                        "must be at least {} characters",
                        crate::domain::password::MIN_LENGTH
                    ),
                )
            })
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        match self.problems().into_iter().next() {
            Some(first) => Err(first),
            None => Ok(()),
        }
    }

    /// Every rule the config breaks, one error per group of keys (`config check` reports them
    /// all at once; `serve` stops at the first).
    pub fn problems(&self) -> Vec<ConfigError> {
        type Check = fn(&Config) -> Result<(), ConfigError>;
        let checks: [Check; 9] = [
            Config::check_public_url,
            Config::check_listen_and_tls,
            Config::check_routing,
            Config::check_durations,
            Config::check_registration_and_byoa,
            Config::check_limits,
            Config::check_deploy,
            Config::validate_servers,
            Config::check_logging,
        ];
        checks
            .iter()
            .filter_map(|check| check(self).err())
            .collect()
    }

    fn check_public_url(&self) -> Result<(), ConfigError> {
        if let Some(url) = &self.server.public_url {
            let parsed = Url::parse(url).map_err(|e| {
                ConfigError::rule("server.public_url", format!("{url:?} is not a URL: {e}"))
            })?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(ConfigError::rule(
                    "server.public_url",
                    "must be an http or https URL",
                ));
            }
            if parsed.path() != "/" || parsed.query().is_some() || parsed.fragment().is_some() {
                return Err(ConfigError::rule(
                    "server.public_url",
                    "must be scheme://host[:port] with no path, query or fragment",
                ));
            }
            if !parsed.username().is_empty() || parsed.password().is_some() {
                return Err(ConfigError::rule(
                    "server.public_url",
                    "must not contain credentials",
                ));
            }
        }
        Ok(())
    }

    fn check_listen_and_tls(&self) -> Result<(), ConfigError> {
        let public_https = self
            .server
            .public_url
            .as_deref()
            .is_some_and(|u| u.starts_with("https://"));
        if !self.server.listen.ip().is_loopback() && self.tls.mode == TlsMode::Off && !public_https
        {
            return Err(ConfigError::rule(
                "server.listen",
                format!(
                    "{} is beyond loopback without TLS; set tls.mode, or an https server.public_url when a proxy terminates TLS",
                    self.server.listen
                ),
            ));
        }
        if self.tls.mode == TlsMode::Files {
            if self.tls.cert_file.is_none() {
                return Err(ConfigError::rule(
                    "tls.cert_file",
                    "required when tls.mode = \"files\"",
                ));
            }
            if self.tls.key_file.is_none() {
                return Err(ConfigError::rule(
                    "tls.key_file",
                    "required when tls.mode = \"files\"",
                ));
            }
        }
        Ok(())
    }

    fn check_routing(&self) -> Result<(), ConfigError> {
        if self.gateway.routing == Routing::Host {
            match self.gateway.server_domain.as_deref() {
                None | Some("") => {
                    return Err(ConfigError::rule(
                        "gateway.server_domain",
                        "required when gateway.routing = \"host\"",
                    ));
                }
                Some(d) if d.starts_with('.') || d.contains('/') || d.contains(':') => {
                    return Err(ConfigError::rule(
                        "gateway.server_domain",
                        "must be a bare domain such as mcp.example.com",
                    ));
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    fn check_durations(&self) -> Result<(), ConfigError> {
        for (key, d) in [
            ("auth.access_token_ttl", self.auth.access_token_ttl),
            ("auth.refresh_token_ttl", self.auth.refresh_token_ttl),
            ("auth.auth_code_ttl", self.auth.auth_code_ttl),
            ("auth.session_ttl", self.auth.session_ttl),
            ("auth.consent_ttl", self.auth.consent_ttl),
            (
                "auth.registration.reap_unused_after",
                self.auth.registration.reap_unused_after,
            ),
            ("gateway.upstream_timeout", self.gateway.upstream_timeout),
            (
                "gateway.upstream_connect_timeout",
                self.gateway.upstream_connect_timeout,
            ),
            ("outbound.timeout", self.outbound.timeout),
            ("gateway.sse_keepalive", self.gateway.sse_keepalive),
            ("gateway.body_timeout", self.gateway.body_timeout),
        ] {
            if d.0.is_zero() {
                return Err(ConfigError::rule(key, "must be longer than zero"));
            }
        }
        if self.auth.refresh_reuse_grace.as_secs() > 3600 {
            return Err(ConfigError::rule(
                "auth.refresh_reuse_grace",
                "must be at most 1h (\"0s\" turns the grace off)",
            ));
        }
        let rotate = self.auth.signing.rotate_after;
        if !rotate.0.is_zero() && rotate.as_secs() < 3600 {
            return Err(ConfigError::rule(
                "auth.signing.rotate_after",
                "must be at least 1h, or \"0s\" to rotate only with `ezforge keys rotate`",
            ));
        }
        Ok(())
    }

    fn check_registration_and_byoa(&self) -> Result<(), ConfigError> {
        if self.auth.registration.mode == RegistrationMode::Token
            && self.auth.registration.initial_access_token.is_none()
        {
            return Err(ConfigError::rule(
                "auth.registration.initial_access_token",
                "required when auth.registration.mode = \"token\"",
            ));
        }
        if let Some(byoa) = &self.auth.byoa {
            for (key, value) in [
                ("auth.byoa.issuer", &byoa.issuer),
                ("auth.byoa.jwks_uri", &byoa.jwks_uri),
                (
                    "auth.byoa.authorization_endpoint",
                    &byoa.authorization_endpoint,
                ),
                ("auth.byoa.token_endpoint", &byoa.token_endpoint),
            ] {
                let url = Url::parse(value)
                    .map_err(|e| ConfigError::rule(key, format!("{value:?} is not a URL: {e}")))?;
                if url.scheme() != "https" {
                    return Err(ConfigError::rule(key, "must be an https URL"));
                }
            }
        }
        Ok(())
    }

    fn check_limits(&self) -> Result<(), ConfigError> {
        for (key, rl) in [
            ("gateway.rate_limit.per_minute", self.gateway.rate_limit),
            ("control.rate_limit.per_minute", self.control.rate_limit),
            ("auth.rate_limit.per_minute", self.auth.rate_limit),
        ] {
            if let Some(problem) = rl.problem() {
                return Err(ConfigError::rule(key, problem));
            }
        }
        for (key, list) in [
            ("gateway.upstream_allow", &self.gateway.upstream_allow),
            ("gateway.upstream_deny", &self.gateway.upstream_deny),
        ] {
            crate::gateway::destinations::parse_rules(list)
                .map_err(|e| ConfigError::rule(key, e))?;
        }
        if self.gateway.body_limit.0 == 0 {
            return Err(ConfigError::rule(
                "gateway.body_limit",
                "must be at least 1 byte",
            ));
        }
        Ok(())
    }

    fn check_deploy(&self) -> Result<(), ConfigError> {
        if let Some((key, problem)) = self.deploy.sandbox.problem() {
            return Err(ConfigError::rule(key, problem));
        }
        if self.deploy.run_as.trim().is_empty() {
            return Err(ConfigError::rule(
                "deploy.run_as",
                "must be \"per-server\", or name a user (or uid:gid)",
            ));
        }
        let [first, last] = self.deploy.run_as_uids;
        if first == 0 || first > last || last >= u32::MAX - 1 {
            return Err(ConfigError::rule(
                "deploy.run_as_uids",
                "must be [first, last] with 0 < first <= last",
            ));
        }
        Ok(())
    }

    fn check_logging(&self) -> Result<(), ConfigError> {
        tracing_subscriber::EnvFilter::try_new(&self.logging.level).map_err(|e| {
            ConfigError::rule(
                "logging.level",
                format!("{:?} is not a valid filter: {e}", self.logging.level),
            )
        })?;
        Ok(())
    }

    fn validate_servers(&self) -> Result<(), ConfigError> {
        use crate::domain::validate;
        let err = |i: usize, field: &str, message: String| {
            ConfigError::Invalid(format!("config key `servers[{i}].{field}`: {message}"))
        };
        let mut seen = std::collections::HashSet::new();
        let destinations = crate::gateway::destinations::Destinations::from_config(self)
            .map_err(|e| ConfigError::rule("gateway.upstream_allow", e))?;
        for (i, d) in self.servers.iter().enumerate() {
            validate::Slug::parse(&d.project).map_err(|e| err(i, "project", e))?;
            validate::Slug::parse(&d.slug).map_err(|e| err(i, "slug", e))?;
            if !seen.insert(d.slug.as_str()) {
                return Err(err(i, "slug", format!("{} is declared twice", d.slug)));
            }
            if let Some(name) = &d.name {
                validate::name(name, 255).map_err(|e| err(i, "name", e))?;
            }
            if let Some(u) = &d.upstream {
                let url = validate::upstream_url(u).map_err(|e| err(i, "upstream", e))?;
                destinations
                    .check_url(&url)
                    .map_err(|e| err(i, "upstream", format!("is refused: {e}")))?;
            }
            match d.auth_mode.as_deref() {
                None | Some("byoa") => {}
                Some("ezforge_managed") if self.auth.mode == AuthMode::Byoa => {
                    return Err(err(
                        i,
                        "auth_mode",
                        "ezforge_managed is not available with auth.mode = \"byoa\"".into(),
                    ));
                }
                Some("ezforge_managed") => {}
                Some(other) => {
                    return Err(err(
                        i,
                        "auth_mode",
                        format!("{other:?} is not \"ezforge_managed\" or \"byoa\""),
                    ));
                }
            }
            let byoa = match d.auth_mode.as_deref() {
                Some(mode) => mode == "byoa",
                None => self.auth.mode == AuthMode::Byoa,
            };
            if byoa && d.byoa.is_none() && self.auth.byoa.is_none() {
                return Err(err(
                    i,
                    "byoa",
                    "a byoa server needs its issuer: set servers.byoa, or [auth.byoa] for all"
                        .into(),
                ));
            }
            if let Some(b) = &d.byoa {
                validate::https_url(&b.authorization_endpoint)
                    .map_err(|e| err(i, "byoa.authorization_endpoint", e))?;
                validate::https_url(&b.token_endpoint)
                    .map_err(|e| err(i, "byoa.token_endpoint", e))?;
                validate::https_url(&b.jwks_uri).map_err(|e| err(i, "byoa.jwks_uri", e))?;
                validate::issuer(&b.issuer).map_err(|e| err(i, "byoa.issuer", e))?;
            }
            if let Some(problem) = d.rate_limit.and_then(|r| r.problem()) {
                return Err(err(i, "rate_limit", problem));
            }
            for (tool, scope) in &d.tool_scopes {
                validate::tool_scope(scope)
                    .map_err(|e| err(i, &format!("tool_scopes.{tool}"), e))?;
            }
        }
        Ok(())
    }

    /// The public URL without a trailing slash: the OAuth issuer. Derived from the bound
    /// address when not configured.
    pub fn public_url_for(&self, bound: SocketAddr) -> String {
        if let Some(url) = &self.server.public_url {
            return url.trim_end_matches('/').to_owned();
        }
        let scheme = if self.tls.mode == TlsMode::Off {
            "http"
        } else {
            "https"
        };
        let host = match bound.ip() {
            ip if ip.is_unspecified() => "localhost".to_owned(),
            std::net::IpAddr::V6(v6) => format!("[{v6}]"),
            ip => ip.to_string(),
        };
        format!("{scheme}://{host}:{}", bound.port())
    }

    /// The effective config as TOML, secrets shown as `***`.
    pub fn to_redacted_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render config: {e}\n"))
    }
}

/// One `EZFORGE_SECTION__KEY` environment variable as a figment provider, so an error names
/// the variable. Only names with a `__` are config keys, so `EZFORGE_CONFIG`, `EZFORGE_URL`,
/// `EZFORGE_API_KEY` and friends are never mistaken for them.
struct EnvVar {
    name: String,
    key: String,
    value: figment::value::Value,
}

impl figment::Provider for EnvVar {
    fn metadata(&self) -> figment::Metadata {
        figment::Metadata::named(format!("environment variable {}", self.name))
    }

    fn data(
        &self,
    ) -> Result<figment::value::Map<figment::Profile, figment::value::Dict>, figment::Error> {
        let mut map = figment::value::Map::new();
        map.insert(
            figment::Profile::Default,
            figment::util::nest(&self.key, self.value.clone())
                .into_dict()
                .unwrap_or_default(),
        );
        Ok(map)
    }
}

fn env_vars(env: &[(String, String)]) -> Result<Vec<EnvVar>, ConfigError> {
    let mut out = Vec::new();
    for (name, value) in env {
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        if !rest.contains("__") {
            continue;
        }
        let secret_file = rest.strip_suffix("_FILE").filter(|key| {
            SECRET_KEYS.contains(&key.to_ascii_lowercase().replace("__", ".").as_str())
        });
        let (key, value) = match secret_file {
            Some(key) => (
                key,
                figment::value::Value::from(read_secret_file(name, value)?),
            ),
            // A secret is taken as written: `00123`, `true` or `[x]` are passwords too.
            None if SECRET_KEYS
                .contains(&rest.to_ascii_lowercase().replace("__", ".").as_str()) =>
            {
                (rest, figment::value::Value::from(value.to_owned()))
            }
            None => (rest, parse_env_value(value)),
        };
        out.push(EnvVar {
            name: name.clone(),
            key: key.to_ascii_lowercase().replace("__", "."),
            value,
        });
    }
    Ok(out)
}

/// Environment values are TOML-ish: `true`, `8080`, `["a","b"]`; anything else is a string.
fn parse_env_value(text: &str) -> figment::value::Value {
    text.parse()
        .unwrap_or_else(|_| figment::value::Value::from(text.to_owned()))
}

fn read_secret_file(var: &str, path: &str) -> Result<String, ConfigError> {
    std::fs::read_to_string(path)
        .map(|s| s.trim_end_matches(['\r', '\n']).to_owned())
        .map_err(|e| {
            ConfigError::Invalid(format!(
                "environment variable {var}: cannot read {path}: {e}"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_toml(text: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.toml");
        std::fs::write(&path, text).expect("write");
        Config::load_from(Some(&path), &[])
    }

    #[test]
    fn defaults_are_valid() {
        let c = Config::load_from(None, &[]).expect("defaults");
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.auth.access_token_ttl.as_secs(), 900);
        assert_eq!(c.public_url_for(c.server.listen), "http://127.0.0.1:8080");
    }

    #[test]
    fn the_sandbox_is_set_as_a_table_a_shorthand_or_from_the_environment() {
        let c = load_toml("[deploy]\nsandbox = \"off\"\n").expect("shorthand");
        assert_eq!(c.deploy.sandbox.mode, SandboxMode::Off);
        let c = load_toml("[deploy.sandbox]\nmode = \"off\"\nread_paths = [\"/srv\"]\n")
            .expect("table");
        assert_eq!(c.deploy.sandbox.mode, SandboxMode::Off);
        for var in ["EZFORGE_DEPLOY__SANDBOX", "EZFORGE_DEPLOY__SANDBOX__MODE"] {
            let c = Config::load_from(None, &[(var.into(), "off".into())]).expect(var);
            assert_eq!(c.deploy.sandbox.mode, SandboxMode::Off, "{var}");
        }
        let err =
            load_toml("[deploy.sandbox]\nread_paths = [\"relative\"]\n").expect_err("relative");
        assert!(
            err.to_string().contains("deploy.sandbox.read_paths"),
            "{err}"
        );
        let err = load_toml("[deploy]\nrun_as = \" \"\n").expect_err("empty user");
        assert!(err.to_string().contains("deploy.run_as"), "{err}");
    }

    #[test]
    fn unknown_key_names_key_and_file() {
        let err = load_toml("[server]\nlisen = \"127.0.0.1:1\"\n").expect_err("unknown key");
        let msg = err.to_string();
        assert!(msg.contains("lisen"), "{msg}");
        assert!(msg.contains("c.toml"), "{msg}");
        assert!(msg.contains("did you mean `listen`?"), "{msg}");
    }

    #[test]
    fn bad_duration_names_key() {
        let err = load_toml("[auth]\naccess_token_ttl = \"soon\"\n").expect_err("bad duration");
        let msg = err.to_string();
        assert!(msg.contains("auth.access_token_ttl"), "{msg}");
        assert!(msg.contains("invalid duration"), "{msg}");
    }

    #[test]
    fn durations_and_sizes_parse() {
        let c = load_toml("[auth]\naccess_token_ttl = \"5m\"\n[gateway]\nbody_limit = \"64KiB\"\n")
            .expect("valid");
        assert_eq!(c.auth.access_token_ttl.as_secs(), 300);
        assert_eq!(c.gateway.body_limit.0, 65536);
        assert_eq!(parse_byte_size("4MiB"), Some(4 << 20));
        assert_eq!(parse_byte_size("12"), Some(12));
        assert_eq!(parse_byte_size("1 parsec"), None);
    }

    #[test]
    fn non_loopback_without_tls_is_refused_unless_https_public_url() {
        let err = load_toml("[server]\nlisten = \"0.0.0.0:8080\"\n").expect_err("refused");
        assert!(err.to_string().contains("server.listen"));
        load_toml(
            "[server]\nlisten = \"0.0.0.0:8080\"\npublic_url = \"https://auth.example.com\"\n",
        )
        .expect("proxy terminates TLS");
    }

    #[test]
    fn public_url_rules() {
        let err =
            load_toml("[server]\npublic_url = \"https://x.example.com/sub\"\n").expect_err("path");
        assert!(err.to_string().contains("server.public_url"));
        let c = load_toml("[server]\npublic_url = \"https://x.example.com/\"\n").expect("slash ok");
        assert_eq!(c.public_url_for(c.server.listen), "https://x.example.com");
    }

    #[test]
    fn host_routing_needs_domain() {
        let err = load_toml("[gateway]\nrouting = \"host\"\n").expect_err("domain");
        assert!(err.to_string().contains("gateway.server_domain"));
    }

    #[test]
    fn secrets_are_redacted_in_output() {
        let c = load_toml("[bootstrap]\nadmin_password = \"hunter2hunter2\"\n").expect("valid");
        let out = c.to_redacted_toml();
        assert!(!out.contains("hunter2"), "{out}");
        assert!(out.contains("***"));
    }

    #[test]
    fn missing_file_is_an_error() {
        let err = Config::load_from(Some(Path::new("/nonexistent/ezforge.toml")), &[])
            .expect_err("missing");
        assert!(err.to_string().contains("/nonexistent/ezforge.toml"));
    }

    #[test]
    fn env_overrides_file_and_names_the_variable() {
        let env = vec![
            (
                "EZFORGE_SERVER__LISTEN".to_owned(),
                "127.0.0.1:9999".to_owned(),
            ),
            (
                "EZFORGE_BOOTSTRAP__ADMIN_PASSWORD".to_owned(),
                "123456789012".to_owned(),
            ),
            ("EZFORGE_URL".to_owned(), "http://ignored".to_owned()),
        ];
        let c = Config::load_from(None, &env).expect("valid");
        assert_eq!(c.server.listen.port(), 9999);
        assert_eq!(
            c.bootstrap.admin_password.as_ref().map(Secret::expose),
            Some("123456789012")
        );
        let bad = vec![("EZFORGE_AUTH__SESSION_TTL".to_owned(), "forever".to_owned())];
        let msg = Config::load_from(None, &bad).expect_err("bad").to_string();
        assert!(msg.contains("EZFORGE_AUTH__SESSION_TTL"), "{msg}");
        let unknown = vec![("EZFORGE_SERVER__NOPE".to_owned(), "1".to_owned())];
        let msg = Config::load_from(None, &unknown)
            .expect_err("unknown")
            .to_string();
        assert!(msg.contains("nope"), "{msg}");
    }

    #[test]
    fn one_key_of_a_rate_limit_keeps_the_default_of_the_other() {
        let env = vec![
            (
                "EZFORGE_AUTH__RATE_LIMIT__PER_MINUTE".to_owned(),
                "5".to_owned(),
            ),
            (
                "EZFORGE_CONTROL__RATE_LIMIT__BURST".to_owned(),
                "7".to_owned(),
            ),
        ];
        let c = Config::load_from(None, &env).expect("valid");
        assert_eq!(
            (c.auth.rate_limit.per_minute, c.auth.rate_limit.burst),
            (5, 200)
        );
        assert_eq!(
            (c.control.rate_limit.per_minute, c.control.rate_limit.burst),
            (600, 7)
        );
        assert_eq!(c.gateway.rate_limit, Config::default().gateway.rate_limit);
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[gateway.rate_limit]\nburst = 9\n").expect("write");
        let c = Config::load_from(Some(&path), &[]).expect("valid");
        assert_eq!(
            (c.gateway.rate_limit.per_minute, c.gateway.rate_limit.burst),
            (1200, 9)
        );
        // Zero, and sizes the limiter cannot represent, are refused by name.
        for (key, value) in [
            ("EZFORGE_GATEWAY__RATE_LIMIT__BURST", "0"),
            ("EZFORGE_CONTROL__RATE_LIMIT__BURST", "4294967295"),
            ("EZFORGE_AUTH__RATE_LIMIT__PER_MINUTE", "100000001"),
        ] {
            let env = vec![(key.to_owned(), value.to_owned())];
            let msg = Config::load_from(None, &env).expect_err(key).to_string();
            assert!(msg.contains("between 1 and 100000000"), "{key}: {msg}");
        }
    }

    #[test]
    fn durations_are_at_most_ten_years() {
        let env = vec![("EZFORGE_AUTH__SESSION_TTL".to_owned(), "8000y".to_owned())];
        let msg = Config::load_from(None, &env)
            .expect_err("too long")
            .to_string();
        assert!(msg.contains("at most 10 years"), "{msg}");
        let env = vec![("EZFORGE_AUTH__SESSION_TTL".to_owned(), "3650d".to_owned())];
        assert!(Config::load_from(None, &env).is_ok());
    }

    #[test]
    fn a_declared_byoa_server_needs_an_issuer() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("c.toml");
        let server = "[[servers]]\nproject = \"p\"\nslug = \"s\"\nauth_mode = \"byoa\"\n";
        std::fs::write(&path, server).expect("write");
        let msg = Config::load_from(Some(&path), &[])
            .expect_err("no issuer")
            .to_string();
        assert!(msg.contains("servers[0].byoa"), "{msg}");
        let issuer = "[servers.byoa]\nauthorization_endpoint = \"https://idp.example/authorize\"\n\
            token_endpoint = \"https://idp.example/token\"\njwks_uri = \"https://idp.example/jwks\"\n\
            issuer = \"https://idp.example\"\n";
        std::fs::write(&path, format!("{server}{issuer}")).expect("write");
        Config::load_from(Some(&path), &[]).expect("its own issuer");
    }

    #[test]
    fn a_declared_tool_scope_is_never_an_openid_or_refresh_scope() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("c.toml");
        let server = "[[servers]]\nproject = \"p\"\nslug = \"s\"\nupstream = \"http://127.0.0.1:3001/mcp\"\n";
        for reserved in crate::domain::scopes::RESERVED_SCOPES {
            let toml = format!("{server}[servers.tool_scopes]\ndelete_repo = \"{reserved}\"\n");
            std::fs::write(&path, toml).expect("write");
            let msg = Config::load_from(Some(&path), &[])
                .expect_err(reserved)
                .to_string();
            assert!(
                msg.contains("servers[0].tool_scopes.delete_repo") && msg.contains("reserved"),
                "{msg}"
            );
        }
        let toml = format!("{server}[servers.tool_scopes]\ndelete_repo = \"repo:delete\"\n");
        std::fs::write(&path, toml).expect("write");
        Config::load_from(Some(&path), &[]).expect("an ordinary tool scope");
    }
    #[test]
    fn durations_print_in_whole_units() {
        assert_eq!(Duration::secs(90 * 86_400).to_string(), "90d");
        assert_eq!(Duration::secs(900).to_string(), "15m");
        assert_eq!(Duration::secs(7200).to_string(), "2h");
        assert_eq!(Duration::secs(61).to_string(), "61s");
    }

    #[test]
    fn file_suffix_is_only_for_secrets() {
        let env = vec![
            ("EZFORGE_TLS__MODE".to_owned(), "files".to_owned()),
            (
                "EZFORGE_TLS__CERT_FILE".to_owned(),
                "/etc/ssl/cert.pem".to_owned(),
            ),
            (
                "EZFORGE_TLS__KEY_FILE".to_owned(),
                "/etc/ssl/key.pem".to_owned(),
            ),
        ];
        let c = Config::load_from(None, &env).expect("valid");
        assert_eq!(
            c.tls.cert_file.as_deref(),
            Some(Path::new("/etc/ssl/cert.pem"))
        );
    }

    #[test]
    fn secrets_in_the_environment_are_taken_as_written() {
        for value in ["0123456789012", "true", "1.5e3", "[1,2]", "inf"] {
            let env = vec![("EZFORGE_METRICS__BEARER_TOKEN".to_owned(), value.to_owned())];
            let c = Config::load_from(None, &env).expect(value);
            assert_eq!(
                c.metrics.bearer_token.as_ref().map(Secret::expose),
                Some(value)
            );
        }
        for value in ["0123456789012", "[1,2,3,4,5,6]", "1.000000000e3"] {
            let env = vec![(
                "EZFORGE_BOOTSTRAP__ADMIN_PASSWORD".to_owned(),
                value.to_owned(),
            )];
            let c = Config::load_from(None, &env).expect(value);
            assert_eq!(
                c.bootstrap.admin_password.as_ref().map(Secret::expose),
                Some(value)
            );
        }
        // Other values still read as TOML.
        let env = vec![(
            "EZFORGE_SERVER__LISTEN".to_owned(),
            "127.0.0.1:9999".to_owned(),
        )];
        assert!(Config::load_from(None, &env).is_ok());
    }

    #[test]
    fn file_secret_variables_are_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let secret = dir.path().join("pw");
        std::fs::write(&secret, "s3cret-pass-phrase\n").expect("write");
        let env = vec![(
            "EZFORGE_BOOTSTRAP__ADMIN_PASSWORD_FILE".to_owned(),
            secret.display().to_string(),
        )];
        let c = Config::load_from(None, &env).expect("valid");
        assert_eq!(
            c.bootstrap.admin_password.as_ref().map(Secret::expose),
            Some("s3cret-pass-phrase")
        );
    }
}
