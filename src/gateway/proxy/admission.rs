//! What a request must be to be let in: from an allowed Origin (preflights answered here), no
//! token in the query, a body within its limit and time and read strictly, headers that say
//! what the body says, a session this caller was given, a path that stays under the upstream's
//! base.

use std::borrow::Cow;
use std::time::Duration;

use actix_web::http::Method;
use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;

use super::headers::{MCP_METHOD, MCP_NAME, MCP_SESSION_ID};
use super::{Env, Trace, log_field};
use crate::config::GatewayConfig;
use crate::domain::jsonrpc::ParseError;
use crate::gateway::error::GatewayError;
use crate::gateway::legacy;
use crate::services::gateway::policy::{self, Message, ToolTable};
use crate::services::gateway::registry::ServerEntry;

/// Browsers: a foreign Origin is refused (DNS rebinding); preflights are answered here
/// (`Ok(Some)`). A token in the query is refused: tokens travel only in `Authorization`.
pub(super) fn screen(
    req: &HttpRequest,
    env: Env<'_>,
    server: &ServerEntry,
    origin: Option<&str>,
) -> Result<Option<HttpResponse>, GatewayError> {
    if let Some(o) = origin
        && !origin_allowed(env, server, o)
    {
        return Err(GatewayError::ForbiddenOrigin);
    }
    if req.method() == Method::OPTIONS {
        return Ok(Some(preflight()));
    }
    if req
        .query_string()
        .split('&')
        .any(|p| p.starts_with("access_token="))
    {
        return Err(GatewayError::TokenInQuery);
    }
    Ok(None)
}

/// A POST's body, whole (other methods have none). The policy reads the body as sent; an
/// encoded one would reach the upstream as something else once decoded.
pub(super) async fn read(
    req: &HttpRequest,
    payload: web::Payload,
    config: &GatewayConfig,
) -> Result<Bytes, GatewayError> {
    if req.method() != Method::POST {
        return Ok(Bytes::new());
    }
    if req
        .headers()
        .get_all(header::CONTENT_ENCODING)
        .any(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"))
    {
        return Err(GatewayError::ContentEncoded);
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    read_body(
        payload,
        config.body_limit.0,
        declared,
        config.body_timeout.0,
    )
    .await
}

async fn read_body(
    mut payload: web::Payload,
    limit: usize,
    declared: Option<usize>,
    deadline: Duration,
) -> Result<Bytes, GatewayError> {
    if declared.is_some_and(|n| n > limit) {
        return Err(GatewayError::BodyTooLarge { limit });
    }
    let mut buf = BytesMut::with_capacity(declared.unwrap_or(0).min(limit));
    let read = async {
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|_| GatewayError::BodyUnreadable)?;
            if buf.len() + chunk.len() > limit {
                return Err(GatewayError::BodyTooLarge { limit });
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(())
    };
    match tokio::time::timeout(deadline, read).await {
        Ok(Ok(())) => Ok(buf.freeze()),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(GatewayError::BodyTooSlow),
    }
}

/// A body as the policy reads it, before the caller is known.
pub(super) struct Call<'b> {
    /// Its messages, or why it is refused (answered only after authentication).
    pub(super) messages: Result<Vec<Message<'b>>, ParseError>,
    /// The scopes its messages need, sorted, each once.
    pub(super) needed: Vec<String>,
}

/// Reads a body strictly, in one pass (`domain/jsonrpc.rs`): every POST carries JSON-RPC (an
/// empty body is not JSON either), other methods no body. The first message's method and tool
/// are traced even if the token is then refused (bounded, as the caller is not yet known).
pub(super) fn parse<'b>(
    req: &HttpRequest,
    body: &'b Bytes,
    server: &ServerEntry,
    tools: &ToolTable,
    trace: &mut Trace,
) -> Call<'b> {
    let messages = if req.method() == Method::POST {
        policy::parse(body)
    } else {
        Ok(Vec::new())
    };
    let Ok(parsed) = &messages else {
        return Call {
            messages,
            needed: Vec::new(),
        };
    };
    if let [one] = parsed.as_slice() {
        trace.rpc_id = one.id.map(|r| r.get().to_owned());
    }
    if let Some(m) = parsed.first() {
        trace.method = m.method.as_deref().map(log_field);
        trace.tool = m
            .params
            .as_ref()
            .and_then(|p| p.name.as_deref())
            .map(log_field);
    }
    let mut needed: Vec<String> = parsed
        .iter()
        .filter_map(|m| policy::required(m, server, tools))
        .collect();
    needed.sort();
    needed.dedup();
    Call { messages, needed }
}

/// A body's messages, once the caller is known: a malformed body, or headers restating it
/// otherwise than it says, are refused.
pub(super) fn admit<'b>(
    req: &HttpRequest,
    messages: Result<Vec<Message<'b>>, ParseError>,
    trace: &mut Trace,
) -> Result<Vec<Message<'b>>, GatewayError> {
    let messages = messages.map_err(|e| {
        let (ParseError::NotJson(d) | ParseError::NotJsonRpc(d)) = &e;
        trace.refuse(e.reason(), d);
        GatewayError::Malformed(e)
    })?;
    // Headers that restate the body must say what it says: an upstream routing on them would
    // otherwise act on a method or tool the policy never saw.
    if let Some(why) = restated_mismatch(req, &messages) {
        trace.refuse("header_mismatch", why);
        return Err(GatewayError::HeaderMismatch(why));
    }
    Ok(messages)
}

/// The upstream's session id the request presents, sealed for `owner` at this server, and the
/// query with the 2024 SSE transport's session (sealed the same way) opened.
pub(super) fn bind_session<'r>(
    req: &'r HttpRequest,
    env: Env<'_>,
    server: &ServerEntry,
    owner: &str,
    trace: &mut Trace,
) -> Result<(Option<&'r str>, Cow<'r, str>), GatewayError> {
    let sessions = &env.gateway.sessions;
    // One session id of visible ASCII (MCP's rule), or the binding could be sidestepped by a
    // second value the upstream reads instead.
    let mut ids = req.headers().get_all(&MCP_SESSION_ID);
    let presented = match (ids.next(), ids.next()) {
        (None, _) => None,
        (Some(v), None) if !v.is_empty() && v.as_bytes().iter().all(u8::is_ascii_graphic) => {
            v.to_str().ok()
        }
        _ => {
            let why = "the Mcp-Session-Id header must be one value of visible ASCII";
            return Err(session_refused(trace, true, why));
        }
    };
    let session = match presented {
        None => None,
        Some(p) => match sessions.open(&server.id, owner, p) {
            Some(s) => Some(s),
            None => {
                let why = "Mcp-Session-Id is not one this caller was given";
                return Err(session_refused(trace, false, why));
            }
        },
    };
    let opened = legacy::open_query(req.query_string(), |sealed| {
        sessions.open(&server.id, owner, sealed).map(str::to_owned)
    });
    match opened {
        Ok(query) => Ok((session, query)),
        Err(legacy::Refused::Ambiguous(why)) => Err(session_refused(trace, true, why)),
        Err(legacy::Refused::Unknown) => {
            let why = "the query's session id is not one this caller was given";
            Err(session_refused(trace, false, why))
        }
    }
}

/// A request's session refused, the reason kept for the access log: malformed (400) or not
/// this caller's (404 "session not found"; MCP clients then start anew).
fn session_refused(trace: &mut Trace, malformed: bool, why: &'static str) -> GatewayError {
    if malformed {
        trace.refuse("invalid_session", why);
        GatewayError::SessionMalformed(why)
    } else {
        trace.refuse("unknown_session", why);
        GatewayError::SessionNotFound
    }
}

/// Why `Mcp-Method` / `Mcp-Name` disagree with the body, if they do: each, when present, must
/// be one value equal to the one message's `method` / `params.name` (`Mcp-Name` is left
/// unchecked only on methods that name nothing, such as `resources/read`).
fn restated_mismatch(req: &HttpRequest, messages: &[policy::Message<'_>]) -> Option<&'static str> {
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

pub(super) fn origin_allowed(env: Env<'_>, server: &ServerEntry, origin: &str) -> bool {
    let own = |url: &str| url.split('/').take(3).collect::<Vec<_>>().join("/");
    if origin == own(env.public_url) || origin == own(&server.resource) {
        return true;
    }
    if env.config.allowed_origins.iter().any(|o| o == origin) {
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

fn preflight() -> HttpResponse {
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
