//! The front door's answers to what it refuses or cannot complete, all made here from a
//! [`GatewayError`]: OAuth errors with their `WWW-Authenticate` challenge (RFC 6750) where a
//! client should (re)authorize, else JSON-RPC errors carrying the request's id.

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use serde_json::json;

use super::cut;
use crate::domain::jsonrpc::ParseError;
use crate::gateway::error::GatewayError;
use crate::services::gateway::registry::ServerEntry;

/// How an answer's body is shaped: an OAuth error (`{"error","error_description"}`) with its
/// code, or a JSON-RPC error with its code.
enum Shape {
    OAuth(&'static str),
    Rpc(i64),
}

impl GatewayError {
    /// The answer for a request to `server` (`None` only before routing) whose single message
    /// had the id `rpc_id` (raw JSON), once the body has been read.
    pub(super) fn response(
        &self,
        server: Option<&ServerEntry>,
        rpc_id: Option<&str>,
    ) -> HttpResponse {
        use GatewayError as E;
        if let E::UnknownServer = self {
            return crate::gateway::unknown_server();
        }
        let (status, shape) = self.shape();
        let desc = self.description();
        let mut res = match shape {
            Shape::OAuth(code) => plain_error(status, code, &desc),
            Shape::Rpc(code) => rpc_error(status, rpc_id, code, &desc),
        };
        let mut challenge = |error: Option<(&str, &str)>, scope: Option<&str>| {
            if let Some(server) = server {
                set_challenge(&mut res, server, error, scope);
            }
        };
        match self {
            E::TokenInQuery => challenge(Some(("invalid_request", &desc)), None),
            E::MissingToken { scope } => challenge(None, Some(scope)),
            E::MalformedAuthorization { scope } | E::InvalidToken { scope, .. } => {
                challenge(Some(("invalid_token", &desc)), Some(scope));
            }
            E::InsufficientScope { scope, .. } => {
                challenge(Some(("insufficient_scope", &desc)), Some(scope));
            }
            E::RateLimited { retry_after } => {
                let secs = crate::shared::rate_limit::retry_secs(*retry_after);
                res.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            // Not the token's fault: a client must not throw it away and sign in again.
            E::IssuerUnavailable => {
                res.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
            }
            _ => {}
        }
        res
    }

    fn shape(&self) -> (StatusCode, Shape) {
        use GatewayError as E;
        use Shape::{OAuth, Rpc};
        match self {
            E::UnknownServer => (StatusCode::NOT_FOUND, OAuth("not_found")),
            E::ForbiddenOrigin => (StatusCode::FORBIDDEN, OAuth("forbidden_origin")),
            E::TokenInQuery | E::PathLeavesBase | E::PathInvalid => {
                (StatusCode::BAD_REQUEST, OAuth("invalid_request"))
            }
            E::ContentEncoded => (StatusCode::UNSUPPORTED_MEDIA_TYPE, OAuth("invalid_request")),
            E::MethodUnsupported => (StatusCode::METHOD_NOT_ALLOWED, OAuth("invalid_request")),
            E::MissingToken { .. } | E::MalformedAuthorization { .. } | E::InvalidToken { .. } => {
                (StatusCode::UNAUTHORIZED, OAuth("invalid_token"))
            }
            E::InsufficientScope { .. } => (StatusCode::FORBIDDEN, OAuth("insufficient_scope")),
            E::BodyTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, Rpc(-32600)),
            E::BodyUnreadable | E::SessionMalformed(_) => (StatusCode::BAD_REQUEST, Rpc(-32600)),
            E::BodyTooSlow => (StatusCode::REQUEST_TIMEOUT, Rpc(-32600)),
            E::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, Rpc(-32000)),
            E::IssuerUnavailable | E::NoUpstream | E::UpstreamStarting => {
                (StatusCode::SERVICE_UNAVAILABLE, Rpc(-32002))
            }
            E::Malformed(ParseError::NotJson(_)) => (StatusCode::BAD_REQUEST, Rpc(-32700)),
            E::Malformed(ParseError::NotJsonRpc(_)) => (StatusCode::BAD_REQUEST, Rpc(-32600)),
            E::HeaderMismatch(_) => (StatusCode::BAD_REQUEST, Rpc(HEADER_MISMATCH)),
            E::SessionNotFound => (StatusCode::NOT_FOUND, Rpc(-32001)),
            E::Unreachable(_) => (StatusCode::BAD_GATEWAY, Rpc(-32004)),
            E::UpstreamTimeout => (StatusCode::GATEWAY_TIMEOUT, Rpc(-32003)),
        }
    }

    /// What the client is told.
    fn description(&self) -> String {
        match self {
            Self::Malformed(ParseError::NotJson(d)) => format!("parse error: {d}"),
            // serde's messages quote the offending value: at most a few lines of it go back.
            Self::Malformed(ParseError::NotJsonRpc(d)) => {
                format!("invalid request: {}", cut(d, 512))
            }
            other => other.to_string(),
        }
    }
}

/// JSON-RPC error for headers that contradict the body (MCP 2026-07-28, SEP-2243).
const HEADER_MISMATCH: i64 = -32020;

/// Quotes a value for an auth-param (RFC 9110 quoted-string), dropping what cannot appear.
fn quoted(s: &str) -> String {
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

fn set_challenge(
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

fn plain_error(status: StatusCode, code: &str, desc: &str) -> HttpResponse {
    HttpResponse::build(status).json(json!({ "error": code, "error_description": desc }))
}

/// A JSON-RPC error body carrying the request's id (raw JSON) when there was one.
fn rpc_error(status: StatusCode, id: Option<&str>, code: i64, message: &str) -> HttpResponse {
    let id = id.unwrap_or("null");
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":{id},"error":{{"code":{code},"message":{}}}}}"#,
        serde_json::Value::from(message)
    );
    HttpResponse::build(status)
        .content_type("application/json")
        .body(body)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use actix_web::http::header;

    use crate::domain::jsonrpc::ParseError;
    use crate::gateway::error::GatewayError as E;
    use crate::services::gateway::registry::{ServerAuth, ServerEntry};
    use crate::services::gateway::verify::VerifyError;

    fn server() -> ServerEntry {
        ServerEntry {
            id: "srv_1".into(),
            project_id: "prj_1".into(),
            slug: "w".into(),
            name: "w".into(),
            resource: "https://ez.example/mcp/w".into(),
            metadata_url: "https://ez.example/.well-known/oauth-protected-resource/mcp/w".into(),
            target: None,
            auto_stop_seconds: None,
            counters: Arc::default(),
            auth: ServerAuth::Managed,
            tool_scopes: Default::default(),
            scopes_supported: Vec::new(),
            metadata: bytes::Bytes::new(),
            issuer: None,
            limiter: None,
            rate_limit: None,
        }
    }

    const META: &str =
        r#"resource_metadata="https://ez.example/.well-known/oauth-protected-resource/mcp/w""#;

    /// What a client sees of `error`'s answer: status,
    /// `WWW-Authenticate`, `Retry-After`, body.
    async fn answer(
        error: &E,
        rpc_id: Option<&str>,
    ) -> (u16, Option<String>, Option<String>, String) {
        let res = error.response(Some(&server()), rpc_id);
        let h = res.headers();
        let text = |name| {
            h.get(name)
                .map(|v: &header::HeaderValue| v.to_str().expect("text").to_owned())
        };
        assert_eq!(
            text(header::CONTENT_TYPE).as_deref(),
            Some("application/json")
        );
        let (challenge, retry) = (text(header::WWW_AUTHENTICATE), text(header::RETRY_AFTER));
        let status = res.status().as_u16();
        let body = actix_web::body::to_bytes(res.into_body())
            .await
            .expect("body");
        let body = String::from_utf8(body.to_vec()).expect("utf-8");
        (status, challenge, retry, body)
    }

    #[actix_web::test]
    async fn oauth_refusals_carry_their_challenge() {
        let expired = E::InvalidToken {
            scope: "mcp:read".into(),
            cause: VerifyError::Expired,
        };
        let scope = E::InsufficientScope {
            scope: "a b".into(),
            description: "needs b".into(),
        };
        let bad_header = E::MalformedAuthorization {
            scope: "mcp:read mcp:x".into(),
        };
        let missing = E::MissingToken {
            scope: "mcp:read".into(),
        };
        let in_query = "tokens are accepted only in the Authorization header";
        let bad_header_desc = "the Authorization header must be `Bearer <token>`";
        // (error, status, the challenge's error ("": a challenge without one), code, description)
        #[rustfmt::skip]
        let cases = [
            (E::UnknownServer, 404, None, "not_found", "no such MCP server"),
            (E::ForbiddenOrigin, 403, None, "forbidden_origin", "this Origin may not call this server"),
            (E::ContentEncoded, 415, None, "invalid_request", "request bodies must not be content-encoded"),
            (E::PathLeavesBase, 400, None, "invalid_request", "the request path must not hold dot segments or encoded slashes"),
            (E::PathInvalid, 400, None, "invalid_request", "the request path is not valid"),
            (E::MethodUnsupported, 405, None, "invalid_request", "unsupported method"),
            (E::TokenInQuery, 400, Some("invalid_request"), "invalid_request", in_query),
            (missing, 401, Some(""), "invalid_token", "a bearer token is required"),
            (bad_header, 401, Some("invalid_token"), "invalid_token", bad_header_desc),
            (expired, 401, Some("invalid_token"), "invalid_token", "the token has expired"),
            (scope, 403, Some("insufficient_scope"), "insufficient_scope", "needs b"),
        ];
        for (error, status, challenge, code, desc) in cases {
            let scope = match &error {
                E::MissingToken { scope }
                | E::MalformedAuthorization { scope }
                | E::InvalidToken { scope, .. }
                | E::InsufficientScope { scope, .. } => format!(r#", scope="{scope}""#),
                _ => String::new(),
            };
            let challenge = challenge.map(|c| match c {
                "" => format!("Bearer {META}{scope}"),
                c => format!(r#"Bearer error="{c}", error_description="{desc}", {META}{scope}"#),
            });
            let body = format!(r#"{{"error":"{code}","error_description":"{desc}"}}"#);
            let got = answer(&error, Some("7")).await;
            assert_eq!(got, (status, challenge, None, body), "{error:?}");
        }
    }

    #[actix_web::test]
    async fn json_rpc_refusals_carry_the_request_id() {
        let limited = E::RateLimited {
            retry_after: Duration::from_millis(1500),
        };
        let issuer_down = "the token's issuer cannot be reached to check it; try again shortly";
        let starting = "the MCP server is starting or restarting; retry shortly";
        // (error, status, Retry-After, JSON-RPC code, message)
        #[rustfmt::skip]
        let cases = [
            (E::BodyTooLarge { limit: 10 }, 413, None, -32600, "request body is larger than 10 bytes"),
            (E::BodyUnreadable, 400, None, -32600, "could not read the request body"),
            (E::BodyTooSlow, 408, None, -32600, "the request body took too long to arrive"),
            (limited, 429, Some("2"), -32000, "rate limit exceeded; retry later"),
            (E::IssuerUnavailable, 503, Some("30"), -32002, issuer_down),
            (E::HeaderMismatch("h"), 400, None, -32020, "h"),
            (E::SessionMalformed("s"), 400, None, -32600, "s"),
            (E::SessionNotFound, 404, None, -32001, "session not found"),
            (E::NoUpstream, 503, None, -32002, "this server has no upstream deployed"),
            (E::UpstreamStarting, 503, None, -32002, starting),
            (E::Unreachable("u"), 502, None, -32004, "u"),
            (E::UpstreamTimeout, 504, None, -32003, "the MCP server did not answer in time"),
        ];
        for (error, status, retry, code, message) in cases {
            for id in [Some("7"), None] {
                let body = format!(
                    r#"{{"jsonrpc":"2.0","id":{},"error":{{"code":{code},"message":"{message}"}}}}"#,
                    id.unwrap_or("null")
                );
                let retry = retry.map(str::to_owned);
                assert_eq!(
                    answer(&error, id).await,
                    (status, None, retry, body),
                    "{error:?}"
                );
            }
        }
    }

    #[actix_web::test]
    async fn a_malformed_body_is_answered_with_its_detail_cut() {
        let long = "x".repeat(600);
        for (error, code, message) in [
            (
                ParseError::NotJson("EOF".into()),
                -32700,
                "parse error: EOF".to_owned(),
            ),
            (
                ParseError::NotJsonRpc(long.clone()),
                -32600,
                format!("invalid request: {}", &long[..512]),
            ),
        ] {
            let body = format!(
                r#"{{"jsonrpc":"2.0","id":null,"error":{{"code":{code},"message":"{message}"}}}}"#
            );
            assert_eq!(
                answer(&E::Malformed(error), None).await,
                (400, None, None, body)
            );
        }
    }
}
