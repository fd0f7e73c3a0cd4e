//! Which headers go upstream and which come back, and the session id sealed on the way out.

use actix_web::HttpResponse;
use actix_web::http::header::{HeaderName, HeaderValue};

use crate::app::AppState;
use crate::gateway::registry::ServerEntry;

pub(super) static MCP_SESSION_ID: HeaderName = HeaderName::from_static("mcp-session-id");
pub(super) static MCP_METHOD: HeaderName = HeaderName::from_static("mcp-method");
pub(super) static MCP_NAME: HeaderName = HeaderName::from_static("mcp-name");

/// The headers the front door adds to what it forwards (names parsed once, at compile time).
pub(super) mod upstream_headers {
    use http::HeaderName;
    pub static FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
    pub static FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
    pub static FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
    pub static SUBJECT: HeaderName = HeaderName::from_static("x-ezforge-subject");
    pub static CLIENT_ID: HeaderName = HeaderName::from_static("x-ezforge-client-id");
    pub static SCOPES: HeaderName = HeaderName::from_static("x-ezforge-scopes");
    pub static SESSION_ID: HeaderName = HeaderName::from_static("mcp-session-id");
}

/// Seals the session id an answer sets for the token's owner (see [`crate::gateway::sessions`]). An id
/// that is empty or not text is not one to hand out, and never goes out as the upstream's own.
pub(super) fn seal_session(
    state: &AppState,
    server: &ServerEntry,
    res: &mut HttpResponse,
    owner: &str,
) {
    let Some(upstream_id) = res.headers().get(&MCP_SESSION_ID) else {
        return;
    };
    let sealed = upstream_id
        .to_str()
        .ok()
        .filter(|s| !s.is_empty())
        .map(|s| state.gateway.sessions.seal(&server.id, owner, s))
        .and_then(|sealed| HeaderValue::from_str(&sealed).ok());
    match sealed {
        Some(v) => {
            res.headers_mut().insert(MCP_SESSION_ID.clone(), v);
        }
        None => {
            res.headers_mut().remove(&MCP_SESSION_ID);
        }
    }
}

/// Request headers never passed upstream: credentials, hop-by-hop, and identity and routing
/// headers a client might try to forge, and any name spelt with `_`.
pub(super) fn is_dropped_request_header(name: &str) -> bool {
    // A `_` spelling of any header (nginx drops them too): CGI-style servers read it as the
    // `-` one, which may be checked (`Mcp-Method`), rewritten (`Mcp-Session-Id`) or ours.
    name.contains('_')
        || matches!(
            name,
            "authorization"
                | "cookie"
                | "host"
                | "connection"
                | "keep-alive"
                | "proxy-authorization"
                | "proxy-authenticate"
                | "proxy-connection"
                | "te"
                | "trailer"
                | "transfer-encoding"
                | "upgrade"
                | "content-length"
                | "forwarded"
                | "x-real-ip"
                | "x-client-ip"
                | "true-client-ip"
                | "cf-connecting-ip"
                | "x-original-url"
                | "x-rewrite-url"
                | "origin"
        )
        || name.starts_with("x-ezforge-")
        || name.starts_with("x-forwarded-")
}

pub(super) fn is_dropped_response_header(name: &str) -> bool {
    matches!(
        name,
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "content-length"
            | "set-cookie"
            // The front door's challenge is the only one a client may follow.
            | "www-authenticate"
            // These reach past the response, to the whole origin every server shares.
            | "clear-site-data"
            | "strict-transport-security"
            | "alt-svc"
    ) || name.starts_with("access-control-")
}

#[cfg(test)]
mod tests {
    use super::{is_dropped_request_header, is_dropped_response_header};

    #[test]
    fn forged_and_origin_wide_headers_are_dropped() {
        for name in [
            "x-ezforge-subject",
            "x_ezforge_scopes",
            "x-forwarded-port",
            "x_real_ip",
        ] {
            assert!(is_dropped_request_header(name), "{name}");
        }
        assert!(!is_dropped_request_header("mcp-session-id"));
        for name in [
            "clear-site-data",
            "strict-transport-security",
            "alt-svc",
            "set-cookie",
        ] {
            assert!(is_dropped_response_header(name), "{name}");
        }
        assert!(!is_dropped_response_header("content-type"));
    }
}
