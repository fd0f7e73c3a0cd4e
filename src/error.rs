//! The error policy.
//!
//! - Each layer has its own `thiserror` enum: `store::StoreError`, `config::ConfigError`,
//!   `ApiError` here for the control API. `anyhow` is used only by `main` and the CLI.
//! - The control API answers `{"error":{"code","message","details"}}` with the status the
//!   code implies (docs/api.md). OAuth endpoints answer RFC 6749 JSON; the gateway answers with
//!   RFC 6750 `WWW-Authenticate`; each defines its own error type next to its handlers.
//! - A 500 body is always generic. The cause chain goes to the log with the request id,
//!   never to the client.

use std::collections::BTreeMap;
use std::fmt;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde_json::{Value, json};

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{message}")]
    Validation {
        message: String,
        fields: BTreeMap<String, String>,
    },
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{message}")]
    Forbidden {
        message: String,
        required_scope: Option<String>,
    },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    Conflict(String),
    #[error("request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("too many requests; retry in {retry_after} s")]
    RateLimited { retry_after: u64 },
    #[error("service unavailable: {0}")]
    Unavailable(String),
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    pub fn validation(field: &str, reason: impl Into<String>) -> Self {
        let reason = reason.into();
        Self::Validation {
            message: format!("{field}: {reason}"),
            fields: BTreeMap::from([(field.to_owned(), reason)]),
        }
    }

    pub fn forbidden_scope(scope: &str) -> Self {
        Self::Forbidden {
            message: format!("this API key lacks the scope {scope}"),
            required_scope: Some(scope.to_owned()),
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "BAD_REQUEST",
            Self::Validation { .. } => "VALIDATION_FAILED",
            Self::Unauthenticated(_) => "UNAUTHENTICATED",
            Self::Forbidden { .. } => "FORBIDDEN",
            Self::NotFound(_) => "NOT_FOUND",
            Self::MethodNotAllowed(_) => "METHOD_NOT_ALLOWED",
            Self::Conflict(_) => "CONFLICT",
            Self::PayloadTooLarge { .. } => "PAYLOAD_TOO_LARGE",
            Self::UnsupportedMediaType(_) => "UNSUPPORTED_MEDIA_TYPE",
            Self::RateLimited { .. } => "RATE_LIMITED",
            Self::Unavailable(_) => "UNAVAILABLE",
            Self::Internal(_) => "INTERNAL",
        }
    }

    fn details(&self) -> Value {
        match self {
            Self::Validation { fields, .. } => json!({ "fields": fields }),
            Self::Forbidden {
                required_scope: Some(s),
                ..
            } => json!({ "requiredScope": s }),
            Self::PayloadTooLarge { limit } => json!({ "limit": limit }),
            Self::RateLimited { retry_after } => json!({ "retryAfter": retry_after }),
            _ => json!({}),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Busy => Self::Unavailable("the database is busy; try again".into()),
            // Every reference a client names is looked up first, in the same transaction; one
            // that fails here was deleted by a request that committed in between.
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _))
                if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY =>
            {
                Self::Conflict(
                    "something this request refers to was deleted meanwhile; try again".into(),
                )
            }
            other => Self::Internal(other.into()),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Validation { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden { .. } => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let Self::Internal(cause) = self {
            tracing::error!(error = %ErrorChain(cause.as_ref()), "internal error");
        }
        let message = match self {
            Self::Internal(_) => "internal error".to_owned(),
            other => other.to_string(),
        };
        let mut res = HttpResponse::build(self.status_code());
        if let Self::RateLimited { retry_after } = self {
            res.insert_header((header::RETRY_AFTER, retry_after.to_string()));
        }
        if let Self::Unauthenticated(_) = self {
            res.insert_header((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
        }
        res.json(json!({
            "error": { "code": self.code(), "message": message, "details": self.details() }
        }))
    }
}

/// Formats an error and its sources on one line: `outer: inner: root`.
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reference_deleted_meanwhile_is_a_conflict_not_a_500() {
        let conn = rusqlite::Connection::open_in_memory().expect("db");
        conn.execute_batch(
            "PRAGMA foreign_keys = ON;
             CREATE TABLE a (id TEXT PRIMARY KEY);
             CREATE TABLE b (a_id TEXT NOT NULL REFERENCES a(id));",
        )
        .expect("schema");
        let e = conn
            .execute("INSERT INTO b (a_id) VALUES ('gone')", [])
            .expect_err("a foreign key failure");
        let api = ApiError::from(StoreError::Sqlite(e));
        assert_eq!(api.status_code(), StatusCode::CONFLICT);
    }
}
