//! `EZFORGE_SECTION__KEY` environment variables (and `…_FILE` for secrets) as config sources.

use super::Config;
use super::error::ConfigError;
use crate::domain::Secret;

const ENV_PREFIX: &str = "EZFORGE_";

/// Keys that also take `EZFORGE_…_FILE=/path` (the value is read from the file). Only secrets:
/// `tls.cert_file` must stay settable as `EZFORGE_TLS__CERT_FILE`.
const SECRET_KEYS: &[&str] = &[
    "bootstrap.admin_password",
    "auth.registration.initial_access_token",
    "metrics.bearer_token",
];
/// One `EZFORGE_SECTION__KEY` environment variable as a figment provider, so an error names
/// the variable. Only names with a `__` are config keys, so `EZFORGE_CONFIG`, `EZFORGE_URL`,
/// `EZFORGE_API_KEY` and friends are never mistaken for them.
pub(super) struct EnvVar {
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

pub(super) fn env_vars(env: &[(String, String)]) -> Result<Vec<EnvVar>, ConfigError> {
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

/// The variables of ours that are not config keys but set config: `EZFORGE_MASTER_KEY[_FILE]`
/// (never a config key, so never written to a file by accident), `EZFORGE_ADMIN_EMAIL` and
/// `EZFORGE_ADMIN_PASSWORD[_FILE]`.
pub(super) fn apply_other_variables(
    config: &mut Config,
    env: &[(String, String)],
) -> Result<(), ConfigError> {
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
    Ok(())
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
