//! The rules a config must keep beyond what its types say: the ones that span keys or that
//! serde cannot express. `config check` reports every problem; `serve` stops at the first.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};

use url::Url;

use super::Config;
use super::error::ConfigError;
use super::sections::{AuthMode, ProgramUser, RegistrationMode, Routing, ServerDecl, TlsMode};
use crate::domain::destinations::{Ours, Refusal, Rules};
use crate::domain::validate;

impl Config {
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

    /// The first rule that spans keys or that serde cannot express, if the config breaks one.
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
        let checks: [Check; 10] = [
            Config::check_secrets,
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

    /// A secret set to nothing (an empty `*_FILE`, an unset variable in `KEY=${VAR}`) would
    /// match an empty credential: it is an error, not "no secret" (leave the key out for that).
    fn check_secrets(&self) -> Result<(), ConfigError> {
        // Only where they guard something: an empty admin password after the first start
        // (a compose file's unset variable) must not stop the server; the first start refuses
        // short ones itself.
        for (key, secret, used) in [
            (
                "metrics.bearer_token",
                &self.metrics.bearer_token,
                self.metrics.enabled,
            ),
            (
                "auth.registration.initial_access_token",
                &self.auth.registration.initial_access_token,
                self.auth.registration.mode == RegistrationMode::Token,
            ),
        ] {
            if used
                && secret
                    .as_ref()
                    .is_some_and(|s| s.expose().trim().is_empty())
            {
                return Err(ConfigError::rule(
                    key,
                    "is set but empty (an empty file or variable?); set a value, or leave the key out",
                ));
            }
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
        self.gateway.destination_rules()?;
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
        if matches!(&self.deploy.run_as, ProgramUser::Named(name) if name.trim().is_empty()) {
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
        let rules = self.gateway.destination_rules()?;
        let own = self.own_listeners();
        let ours = |ip: IpAddr, port: u16| own_listener(&own, ip, port);
        let mut seen = HashSet::new();
        for (i, d) in self.servers.iter().enumerate() {
            let checked = check_declared_identity(d, &mut seen, &rules, &ours)
                .and_then(|()| self.check_declared_auth(d))
                .and_then(|()| check_declared_limits(d));
            checked.map_err(|(field, message)| {
                ConfigError::Invalid(format!("config key `servers[{i}].{field}`: {message}"))
            })?;
        }
        Ok(())
    }

    /// A declared server's `auth_mode` and `byoa`.
    fn check_declared_auth(&self, d: &ServerDecl) -> Result<(), FieldError> {
        match d.auth_mode.as_deref() {
            None | Some("byoa") => {}
            Some("ezforge_managed") if self.auth.mode == AuthMode::Byoa => {
                return Err(at("auth_mode")(
                    "ezforge_managed is not available with auth.mode = \"byoa\"".into(),
                ));
            }
            Some("ezforge_managed") => {}
            Some(other) => {
                return Err(at("auth_mode")(format!(
                    "{other:?} is not \"ezforge_managed\" or \"byoa\""
                )));
            }
        }
        let byoa = match d.auth_mode.as_deref() {
            Some(mode) => mode == "byoa",
            None => self.auth.mode == AuthMode::Byoa,
        };
        if byoa && d.byoa.is_none() && self.auth.byoa.is_none() {
            return Err(at("byoa")(
                "a byoa server needs its issuer: set servers.byoa, or [auth.byoa] for all".into(),
            ));
        }
        if let Some(b) = &d.byoa {
            validate::https_url(&b.authorization_endpoint)
                .map_err(at("byoa.authorization_endpoint"))?;
            validate::https_url(&b.token_endpoint).map_err(at("byoa.token_endpoint"))?;
            validate::https_url(&b.jwks_uri).map_err(at("byoa.jwks_uri"))?;
            validate::issuer(&b.issuer).map_err(at("byoa.issuer"))?;
        }
        Ok(())
    }
}

/// Whether `ip`:`port` is one of `own` (the listeners this config names), as far as can be told
/// without asking the system: on a loopback or unspecified address, or on the very address a
/// listener names. (A server's other local addresses are refused when connecting, by the
/// destination policy in `shared::destinations`.)
fn own_listener(own: &[SocketAddr], ip: IpAddr, port: u16) -> Option<Refusal> {
    own.iter()
        .any(|o| o.port() == port && (ip.is_loopback() || ip.is_unspecified() || o.ip() == ip))
        .then(|| Refusal::OwnListener(SocketAddr::new(ip, port)))
}

/// What is wrong with one field of a declared server: (the field, the message).
type FieldError = (String, String);

/// The message, as the problem of `field`.
fn at(field: &'static str) -> impl Fn(String) -> FieldError {
    move |message| (field.to_owned(), message)
}

/// A declared server's project, slug (once in the file), name and upstream.
fn check_declared_identity<'a>(
    d: &'a ServerDecl,
    seen: &mut HashSet<&'a str>,
    rules: &Rules,
    ours: Ours<'_>,
) -> Result<(), FieldError> {
    validate::Slug::parse(&d.project).map_err(at("project"))?;
    validate::Slug::parse(&d.slug).map_err(at("slug"))?;
    if !seen.insert(d.slug.as_str()) {
        return Err(at("slug")(format!("{} is declared twice", d.slug)));
    }
    if let Some(name) = &d.name {
        validate::name(name, 255).map_err(at("name"))?;
    }
    if let Some(u) = &d.upstream {
        let url = validate::upstream_url(u).map_err(at("upstream"))?;
        rules
            .check_url(&url, ours)
            .map_err(|e| at("upstream")(format!("is refused: {e}")))?;
    }
    Ok(())
}

/// A declared server's rate limit and tool scopes.
fn check_declared_limits(d: &ServerDecl) -> Result<(), FieldError> {
    if let Some(problem) = d.rate_limit.and_then(|r| r.problem()) {
        return Err(("rate_limit".into(), problem));
    }
    for (tool, scope) in &d.tool_scopes {
        validate::tool_scope(scope).map_err(|e| (format!("tool_scopes.{tool}"), e))?;
    }
    Ok(())
}
