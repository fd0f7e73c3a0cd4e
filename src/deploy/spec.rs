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
        let label = parse_version(self.version)?;
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
                parse_upstream(&url)?
            }
            (None, Some(command)) => {
                let command = parse_command(command)?;
                let transport = parse_transport(self.transport.as_deref())?;
                let port = parse_port(self.port, transport)?;
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

/// `version`: a label of at most 64 characters (a number is taken as its text).
fn parse_version(version: Option<Value>) -> Result<Option<String>, DeployError> {
    match version {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(
            validate::name(&s, 64).map_err(|e| DeployError::invalid("version", e))?,
        )),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(DeployError::invalid(
            "version",
            "must be a string label (at most 64 characters)",
        )),
    }
}

/// `upstreamUrl`: a URL the front door may forward to.
fn parse_upstream(url: &str) -> Result<Spec, DeployError> {
    let url = validate::upstream_url(url).map_err(|e| DeployError::invalid("upstreamUrl", e))?;
    Ok(Spec::Upstream {
        upstream_url: String::from(url),
    })
}

/// `command`: the program and its arguments, 1 to `MAX_ARGS` non-empty strings of at most
/// `MAX_ARG` bytes, without NUL.
fn parse_command(command: Value) -> Result<Vec<String>, DeployError> {
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
            Value::String(s) if !s.is_empty() && s.len() <= MAX_ARG && !s.contains('\0') => {
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
    Ok(command)
}

/// `transport`: `http` (the default) or `stdio`.
fn parse_transport(transport: Option<&str>) -> Result<Transport, DeployError> {
    match transport {
        Some("stdio") => Ok(Transport::Stdio),
        Some("http") | None => Ok(Transport::Http),
        Some(_) => Err(DeployError::invalid(
            "transport",
            "must be \"stdio\" or \"http\"",
        )),
    }
}

/// `port`: an HTTP command's port, 1024 to 65535; a stdio command has none.
fn parse_port(port: Option<Value>, transport: Transport) -> Result<Option<u16>, DeployError> {
    match port {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_u64() {
            Some(p) if (1024..=65535).contains(&p) && transport == Transport::Http => {
                Ok(Some(p as u16))
            }
            Some(_) if transport == Transport::Stdio => {
                Err(DeployError::invalid("port", "a stdio server has no port"))
            }
            _ => Err(DeployError::invalid(
                "port",
                "must be an integer between 1024 and 65535",
            )),
        },
    }
}
