//! What goes wrong reading a config: the key, and the source that set it.

use std::path::PathBuf;

use super::diagnose;

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
    pub(super) fn rule(key: &'static str, message: impl Into<String>) -> Self {
        Self::Rule {
            key,
            message: message.into(),
        }
    }

    pub(super) fn from_figment(err: figment::Error) -> Self {
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
