//! The front door's refusals: OAuth errors with their `WWW-Authenticate` challenge
//! (401/403/400), `429`, and JSON-RPC error bodies.

use std::time::Duration;

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use serde_json::json;

use super::Trace;
use crate::gateway::registry::ServerEntry;

/// Quotes a value for an auth-param (RFC 9110 quoted-string), dropping what cannot appear.
pub(super) fn quoted(s: &str) -> String {
    s.chars()
        .filter(|c| (' '..='~').contains(c))
        .map(|c| {
            if c == '"' || c == '\\' {
                format!("\\{c}")
            } else {
                c.to_string()
            }
        })
        .collect()
}

pub(super) fn set_challenge(
    res: &mut HttpResponse,
    server: &ServerEntry,
    error: Option<(&str, &str)>,
    scope: Option<&str>,
) {
    let mut v = String::from("Bearer ");
    if let Some((code, desc)) = error {
        v.push_str(&format!(
            "error=\"{code}\", error_description=\"{}\", ",
            quoted(desc)
        ));
    }
    v.push_str(&format!(
        "resource_metadata=\"{}\"",
        quoted(&server.metadata_url)
    ));
    if let Some(s) = scope {
        v.push_str(&format!(", scope=\"{}\"", quoted(s)));
    }
    if let Ok(h) = HeaderValue::from_str(&v) {
        res.headers_mut().insert(header::WWW_AUTHENTICATE, h);
    }
}

pub(super) fn invalid_token(server: &ServerEntry, scope: &str, desc: &str) -> HttpResponse {
    let mut res = plain_error(StatusCode::UNAUTHORIZED, "invalid_token", desc);
    set_challenge(&mut res, server, Some(("invalid_token", desc)), Some(scope));
    res
}

/// 429 with `Retry-After`.
pub(super) fn too_many(rpc_id: Option<&str>, retry_after: Duration) -> HttpResponse {
    let secs = crate::control::rate_limit::retry_secs(retry_after);
    let mut res = rpc_error(
        StatusCode::TOO_MANY_REQUESTS,
        rpc_id,
        -32000,
        "rate limit exceeded; retry later",
    );
    res.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    res
}

pub(super) fn plain_error(status: StatusCode, code: &str, desc: &str) -> HttpResponse {
    HttpResponse::build(status).json(json!({ "error": code, "error_description": desc }))
}

/// A request's session refused, the reason kept for the access log: `400` (`-32600`) when it
/// is malformed, else `404` "session not found" (`-32001`; MCP clients then start anew).
pub(super) fn session_refused(
    trace: &mut Trace,
    rpc_id: Option<&str>,
    malformed: bool,
    why: &str,
) -> HttpResponse {
    if malformed {
        trace.refuse("invalid_session", why);
        rpc_error(StatusCode::BAD_REQUEST, rpc_id, -32600, why)
    } else {
        trace.refuse("unknown_session", why);
        rpc_error(StatusCode::NOT_FOUND, rpc_id, -32001, "session not found")
    }
}

/// A JSON-RPC error body carrying the request's id (raw JSON) when there was one.
pub(super) fn rpc_error(
    status: StatusCode,
    id: Option<&str>,
    code: i64,
    message: &str,
) -> HttpResponse {
    let id = id.unwrap_or("null");
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":{id},"error":{{"code":{code},"message":{}}}}}"#,
        serde_json::Value::from(message)
    );
    HttpResponse::build(status)
        .content_type("application/json")
        .body(body)
}
