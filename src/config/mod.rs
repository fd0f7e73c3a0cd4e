//! Typed configuration: built-in defaults < TOML file < `EZFORGE_SECTION__KEY` environment
//! variables (and `EZFORGE_SECTION__KEY_FILE` for secrets). Unknown keys and bad values are
//! errors naming the key and where it came from.
//!
//! Here: [`Config`] and its loading API. The sections' types are `sections.rs` (`sandbox.rs`
//! for `[deploy.sandbox]`), the units settings are written in `units.rs`, the environment
//! variables `env.rs`, the rules that span keys `validate.rs`, the errors `error.rs`, and what
//! `config check` says besides them `diagnose.rs`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Format, Toml};
use serde::{Deserialize, Serialize};

use crate::domain::Secret;
use env::env_vars;

mod diagnose;
mod env;
mod error;
mod sandbox;
mod sections;
mod units;
mod validate;
pub use diagnose::unused_variables;
pub use error::ConfigError;
pub use sandbox::{PROGRAM_ENV_PREFIX, SandboxConfig, SandboxConfigOrMode, SandboxMode};
pub use sections::{
    AuthConfig, AuthMode, BootstrapConfig, ByoaConfig, ControlConfig, DeployConfig, GatewayConfig,
    LimitsConfig, LogFormat, LoggingConfig, LogsConfig, MetricsConfig, OutboundConfig, ProgramUser,
    RegistrationConfig, RegistrationMode, Routing, ServerConfig, ServerDecl, SigningAlgorithm,
    SigningConfig, TlsConfig, TlsMode,
};
pub use units::{ByteSize, Duration, RateLimit};

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
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })?;
            check_syntax(path, &text)?;
            figment = figment.merge(Toml::file_exact(path));
        }
        for var in env_vars(env)? {
            figment = figment.merge(var);
        }
        let mut config: Config = figment.extract().map_err(ConfigError::from_figment)?;
        config.source_file = file.map(Path::to_path_buf);
        config.server.public_url = config.server.public_url.map(|u| normal_origin(&u));

        env::apply_other_variables(&mut config, env)?;
        Ok(config)
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

    /// The addresses this config has ezforge listen on (main, and metrics when separate).
    pub fn own_listeners(&self) -> Vec<SocketAddr> {
        let mut own = vec![self.server.listen];
        if self.metrics.enabled
            && let Some(m) = self.metrics.listen
        {
            own.push(m);
        }
        own
    }

    /// The effective config as TOML, secrets shown as `***`.
    pub fn to_redacted_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render config: {e}\n"))
    }
}

/// An origin as browsers send it (`HTTPS://Auth.Example.com:443` -> `https://auth.example.com`):
/// the public URL is compared with `Origin` headers and its scheme decides cookies' `Secure`.
/// Anything else is left as written, for the rules to name.
fn normal_origin(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u)
            if matches!(u.scheme(), "http" | "https")
                && u.path() == "/"
                && u.query().is_none()
                && u.fragment().is_none()
                && u.username().is_empty()
                && u.password().is_none() =>
        {
            u.origin().ascii_serialization()
        }
        _ => url.to_owned(),
    }
}

/// A TOML syntax error, said by line and column without the line itself: the parser's own
/// message quotes it, and it may hold a secret (a password with a stray backslash).
fn check_syntax(path: &Path, text: &str) -> Result<(), ConfigError> {
    let Err(e) = text.parse::<toml::Table>() else {
        return Ok(());
    };
    let at = e.span().map_or(0, |s| s.start).min(text.len());
    let before = &text[..text.floor_char_boundary(at)];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    let message = e.message().lines().next().unwrap_or("invalid TOML");
    Err(ConfigError::Invalid(format!(
        "config file {}: TOML syntax error at line {line}, column {column}: {message}",
        path.display()
    )))
}

#[cfg(test)]
mod tests;
