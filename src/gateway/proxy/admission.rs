//! What a request must be to be let in: an allowed Origin (preflights answered), a bearer
//! token in the right place, a body within its limit and time, headers that say what the body
//! says, a path that stays under the upstream's base.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;

use super::challenges::rpc_error;
use super::headers::{MCP_METHOD, MCP_NAME};
use crate::app::AppState;
use crate::gateway::policy;
use crate::gateway::registry::ServerEntry;

pub(super) async fn read_body(
    mut payload: web::Payload,
    limit: usize,
    declared: Option<usize>,
    deadline: Duration,
) -> Result<Bytes, HttpResponse> {
    let too_large = || {
        rpc_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            None,
            -32600,
            &format!("request body is larger than {limit} bytes"),
        )
    };
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut buf = BytesMut::with_capacity(declared.unwrap_or(0).min(limit));
    let read = async {
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|_| {
                rpc_error(
                    StatusCode::BAD_REQUEST,
                    None,
                    -32600,
                    "could not read the request body",
                )
            })?;
            if buf.len() + chunk.len() > limit {
                return Err(too_large());
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(())
    };
    match tokio::time::timeout(deadline, read).await {
        Ok(Ok(())) => Ok(buf.freeze()),
        Ok(Err(res)) => Err(res),
        Err(_) => Err(rpc_error(
            StatusCode::REQUEST_TIMEOUT,
            None,
            -32600,
            "the request body took too long to arrive",
        )),
    }
}

/// Why `Mcp-Method` / `Mcp-Name` disagree with the body, if they do: each, when present, must
/// be one value equal to the one message's `method` / `params.name` (`Mcp-Name` is left
/// unchecked only on methods that name nothing, such as `resources/read`).
pub(super) fn restated_mismatch(
    req: &HttpRequest,
    messages: &[policy::Message<'_>],
) -> Option<&'static str> {
    let one = |name: &HeaderName| -> Result<Option<&str>, ()> {
        let mut values = req.headers().get_all(name);
        match (values.next(), values.next()) {
            (None, _) => Ok(None),
            (Some(v), None) => v.to_str().map(Some).map_err(|_| ()),
            _ => Err(()),
        }
    };
    let single = match messages {
        [m] => Some(m),
        _ => None,
    };
    match one(&MCP_METHOD) {
        Ok(None) => {}
        Ok(Some(m)) if single.and_then(|s| s.method.as_deref()) == Some(m) => {}
        _ => return Some("the Mcp-Method header must be the body's method"),
    }
    let body_name = single
        .and_then(|s| s.params.as_ref())
        .and_then(|p| p.name.as_deref());
    match (one(&MCP_NAME), body_name) {
        (Ok(None), _) => None,
        // Only a message of a method that names nothing (`resources/read` names a URI) may
        // carry it unchecked: a `tools/call` without a name must not pick its tool by header.
        (Ok(Some(_)), None)
            if single.is_some_and(|s| {
                !matches!(s.method.as_deref(), Some("tools/call" | "prompts/get"))
            }) =>
        {
            None
        }
        (Ok(Some(n)), Some(b)) if n == b => None,
        _ => Some("the Mcp-Name header must be the body's params.name"),
    }
}

/// `Authorization: Bearer <token>`: `Ok(None)` without one (or with another scheme: RFC 6750
/// §3.1 answers an unsupported method like a missing one), `Err` when malformed.
pub(super) fn bearer(req: &HttpRequest) -> Result<Option<&str>, ()> {
    let Some(h) = req.headers().get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let v = h.to_str().map_err(|_| ())?;
    let (scheme, token) = v.split_once(' ').unwrap_or((v, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Ok(None);
    }
    let token = token.trim();
    if token.is_empty() {
        Err(())
    } else {
        Ok(Some(token))
    }
}

pub(super) fn origin_allowed(state: &AppState, server: &ServerEntry, origin: &str) -> bool {
    let own = |url: &str| url.split('/').take(3).collect::<Vec<_>>().join("/");
    if origin == own(&state.public_url) || origin == own(&server.resource) {
        return true;
    }
    if state
        .config
        .gateway
        .allowed_origins
        .iter()
        .any(|o| o == origin)
    {
        return true;
    }
    // Local tools (MCP Inspector and the like) run on loopback origins, which DNS rebinding
    // cannot forge.
    url::Url::parse(origin)
        .is_ok_and(|u| u.scheme() == "http" && crate::domain::validate::is_loopback_host(&u))
}

pub(super) fn cors_headers(h: &mut HeaderMap, origin: &str) {
    if let Ok(v) = HeaderValue::from_str(origin) {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
        h.insert(header::VARY, HeaderValue::from_static("Origin"));
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("WWW-Authenticate, Mcp-Session-Id, MCP-Protocol-Version"),
        );
    }
}

pub(super) fn preflight() -> HttpResponse {
    HttpResponse::NoContent()
        .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, "GET, POST, DELETE, OPTIONS"))
        .insert_header((
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            "Authorization, Content-Type, Accept, Mcp-Session-Id, MCP-Protocol-Version, Last-Event-ID, Mcp-Method, Mcp-Name",
        ))
        .insert_header((header::ACCESS_CONTROL_MAX_AGE, "86400"))
        .finish()
}

/// Whether a path below the server could reach above the upstream's base path once the
/// upstream resolves it: a `.` or `..` segment (also percent-encoded), an encoded slash or
/// backslash, or a backslash (which some servers read as a slash).
pub(super) fn leaves_base(rest: &str) -> bool {
    let dot_segment = |seg: &[u8]| {
        let (mut i, mut dots) = (0, 0);
        while i < seg.len() {
            if seg[i] == b'.' {
                i += 1;
            } else if seg[i..].len() >= 3 && seg[i..i + 2] == *b"%2" && seg[i + 2] | 0x20 == b'e' {
                i += 3;
            } else {
                return false;
            }
            dots += 1;
        }
        dots == 1 || dots == 2
    };
    let encoded_slash =
        |w: &[u8]| w[0] == b'%' && matches!((w[1], w[2] | 0x20), (b'2', b'f') | (b'5', b'c'));
    // Path parameters (`..;x`, which Java servers strip before resolving) do not hide a dot
    // segment either.
    let without_params = |seg: &str| -> usize {
        let lower_semicolon = seg
            .as_bytes()
            .windows(3)
            .position(|w| w[0] == b'%' && w[1] == b'3' && w[2] | 0x20 == b'b');
        let semicolon = seg.find(';');
        match (semicolon, lower_semicolon) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => seg.len(),
        }
    };
    rest.contains('\\')
        || rest.as_bytes().windows(3).any(encoded_slash)
        || rest
            .split('/')
            .any(|seg| dot_segment(&seg.as_bytes()[..without_params(seg)]))
}

#[cfg(test)]
mod tests {
    use super::leaves_base;

    #[test]
    fn paths_that_could_climb_above_the_base_are_caught() {
        for bad in [
            "/../admin",
            "/a/..",
            "/.",
            "/%2e%2e/admin",
            "/%2E./x",
            "/a%2fb",
            "/a%5Cb",
            "/a\\..\\b",
            "/..;/admin",
            "/.%3Bx/y",
        ] {
            assert!(leaves_base(bad), "{bad}");
        }
        for good in ["", "/", "/messages", "/a/b.c", "/..a", "/a..", "/%2e%2ex"] {
            assert!(!leaves_base(good), "{good}");
        }
    }
}
