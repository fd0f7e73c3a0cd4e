//! What a deployment routes to, as the API takes it and the store keeps it.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::DeployError;
use crate::domain::validate;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Stdio,
    Http,
}

/// A deployment's target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Spec {
    #[serde(rename_all = "camelCase")]
    Upstream { upstream_url: String },
    Command {
        command: Vec<String>,
        transport: Transport,
        port: Option<u16>,
    },
}

impl Spec {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".into())
    }

    pub fn from_json(s: &str) -> Option<Spec> {
        serde_json::from_str(s).ok()
    }

    /// The port an HTTP command was told to listen on, when it names one.
    pub fn fixed_port(&self) -> Option<u16> {
        match self {
            Spec::Command {
                transport: Transport::Http,
                port,
                ..
            } => *port,
            _ => None,
        }
    }

    /// One line for logs: the URL, or the command.
    pub fn describe(&self) -> String {
        match self {
            Spec::Upstream { upstream_url } => upstream_url.clone(),
            Spec::Command {
                command, transport, ..
            } => format!(
                "{} ({})",
                command.join(" "),
                match transport {
                    Transport::Stdio => "stdio",
                    Transport::Http => "http",
                }
            ),
        }
    }
}

/// The body of `POST /v1/servers/:id/deployments`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DeployBody {
    upstream_url: Option<String>,
    command: Option<Value>,
    transport: Option<String>,
    port: Option<Value>,
    version: Option<Value>,
    rollback_on_health_check_failure: Option<bool>,
}

pub struct Parsed {
    pub spec: Spec,
    pub label: Option<String>,
    pub rollback: Option<bool>,
}

const MAX_ARGS: usize = 256;
const MAX_ARG: usize = 4096;

impl DeployBody {
    pub fn parse(self) -> Result<Parsed, DeployError> {
        let label = match self.version {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => {
                Some(validate::name(&s, 64).map_err(|e| DeployError::invalid("version", e))?)
            }
            Some(Value::Number(n)) => Some(n.to_string()),
            Some(_) => {
                return Err(DeployError::invalid(
                    "version",
                    "must be a string label (at most 64 characters)",
                ));
            }
        };
        let spec = match (self.upstream_url, self.command) {
            (Some(_), Some(_)) => {
                return Err(DeployError::invalid(
                    "command",
                    "give either upstreamUrl or command, not both",
                ));
            }
            (None, None) => {
                return Err(DeployError::invalid("upstreamUrl", "required (or command)"));
            }
            (Some(url), None) => {
                if self.transport.is_some() || self.port.is_some() {
                    return Err(DeployError::invalid(
                        "transport",
                        "transport and port go with command, not upstreamUrl",
                    ));
                }
                let url = validate::upstream_url(&url)
                    .map_err(|e| DeployError::invalid("upstreamUrl", e))?;
                Spec::Upstream {
                    upstream_url: String::from(url),
                }
            }
            (None, Some(command)) => {
                let Value::Array(items) = command else {
                    return Err(DeployError::invalid(
                        "command",
                        "must be an array of strings: the program and its arguments",
                    ));
                };
                if items.is_empty() || items.len() > MAX_ARGS {
                    return Err(DeployError::invalid(
                        "command",
                        format!("must have 1 to {MAX_ARGS} elements"),
                    ));
                }
                let mut command = Vec::with_capacity(items.len());
                for item in items {
                    match item {
                        Value::String(s)
                            if !s.is_empty() && s.len() <= MAX_ARG && !s.contains('\0') =>
                        {
                            command.push(s)
                        }
                        _ => {
                            return Err(DeployError::invalid(
                                "command",
                                format!(
                                    "every element must be a non-empty string of at most {MAX_ARG} bytes, without NUL"
                                ),
                            ));
                        }
                    }
                }
                let transport = match self.transport.as_deref() {
                    Some("stdio") => Transport::Stdio,
                    Some("http") | None => Transport::Http,
                    Some(_) => {
                        return Err(DeployError::invalid(
                            "transport",
                            "must be \"stdio\" or \"http\"",
                        ));
                    }
                };
                let port = match self.port {
                    None | Some(Value::Null) => None,
                    Some(v) => match v.as_u64() {
                        Some(p) if (1024..=65535).contains(&p) && transport == Transport::Http => {
                            Some(p as u16)
                        }
                        Some(_) if transport == Transport::Stdio => {
                            return Err(DeployError::invalid("port", "a stdio server has no port"));
                        }
                        _ => {
                            return Err(DeployError::invalid(
                                "port",
                                "must be an integer between 1024 and 65535",
                            ));
                        }
                    },
                };
                Spec::Command {
                    command,
                    transport,
                    port,
                }
            }
        };
        Ok(Parsed {
            spec,
            label,
            rollback: self.rollback_on_health_check_failure,
        })
    }
}
