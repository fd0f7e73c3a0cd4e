//! Which headers go upstream and which come back, and the session id sealed on the way out.

use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder};

use crate::domain::endpoint::Endpoint;
use crate::services::gateway::registry::ServerEntry;
use crate::services::gateway::sessions::SessionSeal;
use crate::services::gateway::verify::Verified;

pub(super) static MCP_SESSION_ID: HeaderName = HeaderName::from_static("mcp-session-id");
pub(super) static MCP_METHOD: HeaderName = HeaderName::from_static("mcp-method");
pub(super) static MCP_NAME: HeaderName = HeaderName::from_static("mcp-name");

/// The headers the front door adds to what it forwards (names parsed once, at compile time).
mod upstream_headers {
    use http::HeaderName;
    pub static FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
    pub static FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
    pub static FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
    pub static SUBJECT: HeaderName = HeaderName::from_static("x-ezforge-subject");
    pub static CLIENT_ID: HeaderName = HeaderName::from_static("x-ezforge-client-id");
    pub static SCOPES: HeaderName = HeaderName::from_static("x-ezforge-scopes");
    pub static SESSION_ID: HeaderName = HeaderName::from_static("mcp-session-id");
}

/// Seals the session id an answer sets for the token's owner (see [`crate::services::gateway::sessions`]).
/// An id that is empty or not text is not one to hand out, and never goes out as the
/// upstream's own.
pub(super) fn seal_session(
    sessions: &SessionSeal,
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
        .map(|s| sessions.seal(&server.id, owner, s))
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

/// The headers of the request to the upstream: the client's, less those dropped, with the
/// upstream's `Host`, `X-Forwarded-*`, the caller's identity (`X-Ezforge-*`, and signed in
/// `assertion`) and the upstream's own session id (unsealed).
pub(super) fn upstream_request(
    req: &HttpRequest,
    upstream: &Endpoint,
    public_url: &str,
    who: &Verified,
    session: Option<&str>,
    assertion: http::HeaderValue,
) -> http::HeaderMap {
    let mut headers = http::HeaderMap::with_capacity(req.headers().len() + 8);
    headers.insert(http::header::HOST, upstream.host_header().clone());
    for (name, value) in req.headers() {
        if is_dropped_request_header(name.as_str()) || name == MCP_SESSION_ID {
            continue;
        }
        if let (Ok(n), Ok(v)) = (
            http::HeaderName::from_bytes(name.as_str().as_bytes()),
            http::HeaderValue::from_bytes(value.as_bytes()),
        ) {
            headers.append(n, v);
        }
    }
    let mut set = |name: &http::HeaderName, value: &str| {
        if let Ok(v) = http::HeaderValue::from_str(value) {
            headers.insert(name.clone(), v);
        }
    };
    if let Some(peer) = req.peer_addr() {
        set(&upstream_headers::FORWARDED_FOR, &peer.ip().to_string());
    }
    set(
        &upstream_headers::FORWARDED_PROTO,
        if public_url.starts_with("https") {
            "https"
        } else {
            "http"
        },
    );
    if let Some(host) = crate::gateway::request_host(req.head()) {
        set(&upstream_headers::FORWARDED_HOST, host);
    }
    set(&upstream_headers::SUBJECT, &who.subject);
    if let Some(c) = &who.client_id {
        set(&upstream_headers::CLIENT_ID, c);
    }
    set(&upstream_headers::SCOPES, &who.scope_header);
    if let Some(s) = session {
        set(&upstream_headers::SESSION_ID, s);
    }
    // The identity again, signed for this server alone (a recent one reused: no signing per
    // request); a client's own `X-Ezforge-*` headers were dropped above.
    headers.insert(
        crate::services::gateway::assertion::HEADER.clone(),
        assertion,
    );
    headers
}

/// Copies the upstream's answer headers that may reach the client; whether it is SSE.
pub(super) fn copy_response(from: &http::HeaderMap, res: &mut HttpResponseBuilder) -> bool {
    let mut is_sse = false;
    for (name, value) in from {
        if is_dropped_response_header(name.as_str()) {
            continue;
        }
        if name == http::header::CONTENT_TYPE && value.as_bytes().starts_with(b"text/event-stream")
        {
            is_sse = true;
        }
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_str().as_bytes()),
            HeaderValue::from_bytes(value.as_bytes()),
        ) {
            res.append_header((n, v));
        }
    }
    is_sse
}

/// Request headers never passed upstream: credentials, hop-by-hop, and identity and routing
/// headers a client might try to forge, and any name spelt with `_`.
fn is_dropped_request_header(name: &str) -> bool {
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

fn is_dropped_response_header(name: &str) -> bool {
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
