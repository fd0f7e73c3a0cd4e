//! One request through the front door: route, CORS and Origin, body limit, bearer token,
//! rate limit, session binding, scope policy, then a streaming proxy to the upstream.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use http_body_util::Full;
use serde_json::json;

use super::legacy;
use crate::app::AppState;
use crate::deploy::process::Supervisor;
use crate::deploy::{InFlight, TargetKind};
use crate::domain::endpoint::Endpoint;
use crate::services::gateway::counters::ServerCounters;
use crate::services::gateway::policy::{self, ParseError};
use crate::services::gateway::registry::ServerEntry;
use crate::services::gateway::verify::{Verified, VerifyError};
use crate::shared::rate_limit::Decision;
use crate::shared::upstream::{PooledBody, SendError, UpstreamClient};
use crate::store::request_log::RequestLogRow;

/// Upstream answers up to this size with a Content-Length are forwarded as one body.
const SMALL_BODY: usize = 256 * 1024;
/// `tools/list` responses larger than this are passed on without learning from them.
const LEARN_CAP: usize = 4 * 1024 * 1024;
/// Longest method or tool name written to the access log (longer ones are cut).
const LOG_FIELD_MAX: usize = 128;
/// Longest refusal reason written to the access log.
const REFUSAL_MAX: usize = 256;

static MCP_SESSION_ID: HeaderName = HeaderName::from_static("mcp-session-id");
static MCP_METHOD: HeaderName = HeaderName::from_static("mcp-method");
static MCP_NAME: HeaderName = HeaderName::from_static("mcp-name");

/// JSON-RPC error for headers that contradict the body (MCP 2026-07-28, SEP-2243).
const HEADER_MISMATCH: i64 = -32020;

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

/// `/mcp/{slug}[/rest]`.
pub async fn path_routed(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let Some(after) = req.path().strip_prefix("/mcp/") else {
        return super::unknown_server();
    };
    let (slug, rest) = after.split_at(after.find('/').unwrap_or(after.len()));
    if slug.is_empty() {
        return super::unknown_server();
    }
    let (slug, rest) = (slug.to_owned(), rest.to_owned());
    handle(req, payload, state, &slug, rest).await
}

/// `https://{slug}.{server_domain}/[rest]` under host routing.
pub async fn host_routed(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let Some(slug) = super::server_slug_from_host(&state, super::request_host(req.head())) else {
        return super::unknown_server();
    };
    let rest = match req.path() {
        "/" => String::new(),
        p => p.to_owned(),
    };
    handle(req, payload, state, &slug, rest).await
}

/// What the access log records about a request as it goes.
struct Trace {
    start: Instant,
    server_id: String,
    subject: Option<String>,
    client_id: Option<String>,
    method: Option<String>,
    tool: Option<String>,
    auth_failure: Option<&'static str>,
    /// Why the front door refused the request, when it did (`code: detail`).
    refusal: Option<String>,
}

impl Trace {
    fn refuse(&mut self, code: &str, detail: &str) {
        self.refusal = Some(cut(&format!("{code}: {detail}"), REFUSAL_MAX));
    }
}

async fn handle(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    slug: &str,
    rest: String,
) -> HttpResponse {
    let Some(server) = state.gateway.registry.get(slug) else {
        return super::unknown_server();
    };
    let mut trace = Trace {
        start: Instant::now(),
        server_id: server.id.clone(),
        subject: None,
        client_id: None,
        method: None,
        tool: None,
        auth_failure: None,
        refusal: None,
    };
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .map(str::to_owned);
    let response = match process(
        &req,
        payload,
        &state,
        &server,
        rest,
        origin.as_deref(),
        &mut trace,
    )
    .await
    {
        Ok(r) | Err(r) => r,
    };
    let mut response = response;
    if let Some(o) = origin.filter(|o| origin_allowed(&state, &server, o)) {
        cors_headers(response.headers_mut(), &o);
    }
    let status = response.status().as_u16();
    let latency = trace.start.elapsed();
    server.counters.record(status, latency, trace.auth_failure);
    let row = RequestLogRow {
        at_ms: crate::domain::now_ms(),
        server_id: trace.server_id,
        subject: trace.subject,
        client_id: trace.client_id,
        method: trace.method,
        tool: trace.tool,
        status,
        latency_ms: latency.as_secs_f64() * 1000.0,
        auth_failure: trace.auth_failure,
        request_id: req
            .headers()
            .get(&crate::app::REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        refusal: trace.refusal,
    };
    state.deployer.hub.access(&row);
    state.gateway.log.record(row);
    response
}

/// A method or tool name as the access log keeps it: at most [`LOG_FIELD_MAX`] bytes.
fn log_field(s: &str) -> String {
    cut(s, LOG_FIELD_MAX)
}

/// `s`, cut to at most `max` bytes on a character boundary.
fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

async fn process(
    req: &HttpRequest,
    payload: web::Payload,
    state: &web::Data<AppState>,
    server: &Arc<ServerEntry>,
    rest: String,
    origin: Option<&str>,
    trace: &mut Trace,
) -> Result<HttpResponse, HttpResponse> {
    // Browsers: a foreign Origin is refused (DNS rebinding); preflights are answered here.
    if let Some(o) = origin
        && !origin_allowed(state, server, o)
    {
        return Err(plain_error(
            StatusCode::FORBIDDEN,
            "forbidden_origin",
            "this Origin may not call this server",
        ));
    }
    if req.method() == Method::OPTIONS {
        return Ok(preflight());
    }
    if req
        .query_string()
        .split('&')
        .any(|p| p.starts_with("access_token="))
    {
        let mut res = plain_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "tokens are accepted only in the Authorization header",
        );
        set_challenge(
            &mut res,
            server,
            Some((
                "invalid_request",
                "tokens are accepted only in the Authorization header",
            )),
            None,
        );
        return Err(res);
    }

    // Requests without a token (and refused tokens, below) are limited by the caller's address
    // (a good token by its subject and client), those without one before their body is read.
    let limiter = server.limiter.as_deref().unwrap_or(&state.gateway.limiter);
    let by_address = || {
        let key = format!(
            "{}|{}",
            server.id,
            crate::shared::rate_limit::address_bucket(req.peer_addr())
        );
        limiter.check(key)
    };
    let presented = bearer(req);
    if !matches!(presented, Ok(Some(_)))
        && let Decision::Limited { retry_after } = by_address()
    {
        trace.auth_failure = Some("throttled");
        return Err(too_many(None, retry_after));
    }

    // The policy reads the body as sent; an encoded one would reach the upstream as something
    // else once decoded.
    if req.method() == Method::POST
        && req
            .headers()
            .get_all(header::CONTENT_ENCODING)
            .any(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"))
    {
        return Err(plain_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid_request",
            "request bodies must not be content-encoded",
        ));
    }
    let body = if req.method() == Method::POST {
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        read_body(
            payload,
            state.config.gateway.body_limit.0,
            declared,
            state.config.gateway.body_timeout.0,
        )
        .await?
    } else {
        Bytes::new()
    };
    // Every POST carries JSON-RPC (an empty body is not JSON either); other methods no body.
    let parsed = if req.method() == Method::POST {
        policy::parse(&body)
    } else {
        Ok(Vec::new())
    };
    let first_id = parsed.as_ref().ok().and_then(|m| {
        if m.len() == 1 {
            m[0].id.map(|r| r.get().to_owned())
        } else {
            None
        }
    });
    let needed: Vec<String> = match &parsed {
        Ok(messages) => {
            if let Some(m) = messages.first() {
                // Recorded even when the token is then refused: bounded, as the caller is not
                // yet known.
                trace.method = m.method.as_deref().map(log_field);
                trace.tool = m
                    .params
                    .as_ref()
                    .and_then(|p| p.name.as_deref())
                    .map(log_field);
            }
            let mut needed: Vec<String> = messages
                .iter()
                .filter_map(|m| policy::required(m, server, &state.gateway.tools))
                .collect();
            needed.sort();
            needed.dedup();
            needed
        }
        Err(_) => Vec::new(),
    };

    // The token: only from the Authorization header, only Bearer.
    let challenge_scope = || {
        if needed.is_empty() {
            server.base_scope().to_owned()
        } else {
            needed.join(" ")
        }
    };
    let token = match presented {
        Ok(Some(t)) => t,
        Ok(None) => {
            let mut res = plain_error(
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "a bearer token is required",
            );
            set_challenge(&mut res, server, None, Some(&challenge_scope()));
            trace.auth_failure = Some("missing");
            return Err(res);
        }
        Err(()) => {
            trace.auth_failure = Some("malformed");
            return Err(invalid_token(
                server,
                &challenge_scope(),
                "the Authorization header must be `Bearer <token>`",
            ));
        }
    };
    let verified = match state.gateway.verifier.verify(state, server, token).await {
        Ok(v) => v,
        Err(e) => {
            trace.auth_failure = Some(e.reason());
            let status_desc = e.to_string();
            if matches!(e, VerifyError::IssuerUnavailable) {
                // Not the token's fault: a client must not throw it away and sign in again.
                tracing::warn!(server = %server.slug, "token not checked: the issuer's keys are unavailable");
                let mut res = rpc_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    first_id.as_deref(),
                    -32002,
                    "the token's issuer cannot be reached to check it; try again shortly",
                );
                res.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
                return Err(res);
            }
            // A refused token counts like none against the caller's address.
            if let Decision::Limited { retry_after } = by_address() {
                return Err(too_many(first_id.as_deref(), retry_after));
            }
            return Err(invalid_token(server, &challenge_scope(), &status_desc));
        }
    };
    trace.subject = Some(verified.subject.clone());
    trace.client_id = verified.client_id.clone();

    // Rate limit per (server, subject + client).
    let key = format!("{}|{}", server.id, verified.owner);
    if let Decision::Limited { retry_after } = limiter.check(key) {
        return Err(too_many(first_id.as_deref(), retry_after));
    }

    // Only now is a malformed body worth an answer: after authentication.
    if let Err(e) = &parsed {
        let (ParseError::NotJson(d) | ParseError::NotJsonRpc(d)) = e;
        trace.refuse(e.reason(), d);
        return Err(match e {
            ParseError::NotJson(d) => rpc_error(
                StatusCode::BAD_REQUEST,
                None,
                -32700,
                &format!("parse error: {d}"),
            ),
            // serde's messages quote the offending value: at most a few lines of it go back.
            ParseError::NotJsonRpc(d) => rpc_error(
                StatusCode::BAD_REQUEST,
                None,
                -32600,
                &format!("invalid request: {}", cut(d, 512)),
            ),
        });
    }

    // Headers that restate the body must say what it says: an upstream routing on them would
    // otherwise act on a method or tool the policy never saw.
    if let Some(why) = restated_mismatch(req, parsed.as_deref().unwrap_or(&[])) {
        trace.refuse("header_mismatch", why);
        return Err(rpc_error(
            StatusCode::BAD_REQUEST,
            first_id.as_deref(),
            HEADER_MISMATCH,
            why,
        ));
    }

    // Scope policy.
    let missing: Vec<&String> = needed
        .iter()
        .filter(|n| !policy::satisfied(&verified.scopes, n))
        .collect();
    if !missing.is_empty() {
        // Everything the request needs plus what the token already holds: clients re-authorize
        // with exactly this scope, and must not lose access they had (step-up, not swap).
        let mut wanted: Vec<&str> = verified
            .scopes
            .iter()
            .map(String::as_str)
            .chain(needed.iter().map(String::as_str))
            .collect();
        wanted.sort_unstable();
        wanted.dedup();
        let scope = wanted.join(" ");
        let desc = format!(
            "this request needs the scope {}",
            missing
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(" ")
        );
        let mut res = plain_error(StatusCode::FORBIDDEN, "insufficient_scope", &desc);
        set_challenge(
            &mut res,
            server,
            Some(("insufficient_scope", &desc)),
            Some(&scope),
        );
        return Err(res);
    }

    // Session binding.
    let owner = verified.owner.as_str();
    // One session id of visible ASCII (MCP's rule), or the binding could be sidestepped by a
    // second value the upstream reads instead.
    let mut ids = req.headers().get_all(&MCP_SESSION_ID);
    let presented = match (ids.next(), ids.next()) {
        (None, _) => None,
        (Some(v), None) if !v.is_empty() && v.as_bytes().iter().all(u8::is_ascii_graphic) => {
            v.to_str().ok()
        }
        _ => {
            return Err(session_refused(
                trace,
                first_id.as_deref(),
                true,
                "the Mcp-Session-Id header must be one value of visible ASCII",
            ));
        }
    };
    // The id the client holds is the upstream's, sealed for this owner at this server.
    let session = match presented {
        None => None,
        Some(p) => match state.gateway.sessions.open(&server.id, owner, p) {
            Some(s) => Some(s),
            None => {
                return Err(session_refused(
                    trace,
                    first_id.as_deref(),
                    false,
                    "Mcp-Session-Id is not one this caller was given",
                ));
            }
        },
    };
    // The 2024 SSE transport's session travels in the query, sealed the same way.
    let query = match legacy::open_query(req.query_string(), |sealed| {
        state
            .gateway
            .sessions
            .open(&server.id, owner, sealed)
            .map(str::to_owned)
    }) {
        Ok(query) => query,
        Err(legacy::Refused::Ambiguous(why)) => {
            return Err(session_refused(trace, first_id.as_deref(), true, why));
        }
        Err(legacy::Refused::Unknown) => {
            return Err(session_refused(
                trace,
                first_id.as_deref(),
                false,
                "the query's session id is not one this caller was given",
            ));
        }
    };

    let learn = parsed
        .as_ref()
        .ok()
        .is_some_and(|m| m.iter().any(|m| m.method.as_deref() == Some("tools/list")));
    let Some(target) = &server.target else {
        return Err(rpc_error(
            StatusCode::SERVICE_UNAVAILABLE,
            first_id.as_deref(),
            -32002,
            "this server has no upstream deployed",
        ));
    };
    server.counters.add_bytes(body.len());
    let inflight = target.enter();
    let upstream = match &target.kind {
        TargetKind::Url(u) => u,
        TargetKind::Process(p) => {
            p.touch();
            if let Err(e) = p.ready(state.config.deploy.health_timeout.0, false).await {
                tracing::warn!(server = %server.slug, error = %e, "supervised MCP server unavailable");
                return Err(rpc_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    first_id.as_deref(),
                    -32002,
                    "the MCP server is starting or restarting; retry shortly",
                ));
            }
            &p.url
        }
        TargetKind::Stdio(pool) => {
            let res = pool.handle(req.method(), session, &body).await;
            let res = if req.method() == Method::POST {
                // The bridge's answers to POSTs are whole bodies: learn from them, count them.
                let (res, body) = res.into_parts();
                let body = actix_web::body::to_bytes(body).await.unwrap_or_default();
                if learn && res.status().is_success() {
                    learn_tools(state, server, &body, false);
                }
                server.counters.add_bytes(body.len());
                res.set_body(body).map_into_boxed_body()
            } else {
                res
            };
            let mut res = res;
            seal_session(state, server, &mut res, owner);
            drop(inflight);
            return Ok(res);
        }
    };
    forward(
        req,
        state,
        server,
        upstream,
        &rest,
        &query,
        body,
        &verified,
        first_id.as_deref(),
        session,
        learn,
        inflight,
        match &target.kind {
            TargetKind::Process(p) => Some(p),
            _ => None,
        },
    )
    .await
    .map(|mut res| {
        seal_session(state, server, &mut res, owner);
        res
    })
}

/// Seals the session id an answer sets for the token's owner (see [`crate::services::gateway::sessions`]). An id
/// that is empty or not text is not one to hand out, and never goes out as the upstream's own.
fn seal_session(state: &AppState, server: &ServerEntry, res: &mut HttpResponse, owner: &str) {
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

async fn read_body(
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

/// `Authorization: Bearer <token>`: `Ok(None)` without one (or with another scheme: RFC 6750
/// §3.1 answers an unsupported method like a missing one), `Err` when malformed.
fn bearer(req: &HttpRequest) -> Result<Option<&str>, ()> {
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

fn origin_allowed(state: &AppState, server: &ServerEntry, origin: &str) -> bool {
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

fn cors_headers(h: &mut HeaderMap, origin: &str) {
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

fn invalid_token(server: &ServerEntry, scope: &str, desc: &str) -> HttpResponse {
    let mut res = plain_error(StatusCode::UNAUTHORIZED, "invalid_token", desc);
    set_challenge(&mut res, server, Some(("invalid_token", desc)), Some(scope));
    res
}

/// 429 with `Retry-After`.
fn too_many(rpc_id: Option<&str>, retry_after: Duration) -> HttpResponse {
    let secs = crate::shared::rate_limit::retry_secs(retry_after);
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

fn plain_error(status: StatusCode, code: &str, desc: &str) -> HttpResponse {
    HttpResponse::build(status).json(json!({ "error": code, "error_description": desc }))
}

/// A request's session refused, the reason kept for the access log: `400` (`-32600`) when it
/// is malformed, else `404` "session not found" (`-32001`; MCP clients then start anew).
fn session_refused(
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

/// Whether a path below the server could reach above the upstream's base path once the
/// upstream resolves it: a `.` or `..` segment (also percent-encoded), an encoded slash or
/// backslash, or a backslash (which some servers read as a slash).
fn leaves_base(rest: &str) -> bool {
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

#[allow(clippy::too_many_arguments)]
async fn forward(
    req: &HttpRequest,
    state: &web::Data<AppState>,
    server: &Arc<ServerEntry>,
    upstream: &Endpoint,
    rest: &str,
    query: &str,
    body: Bytes,
    who: &Verified,
    rpc_id: Option<&str>,
    session: Option<&str>,
    learn: bool,
    inflight: InFlight,
    supervised: Option<&Supervisor>,
) -> Result<HttpResponse, HttpResponse> {
    let bad_gateway = |message: &str| rpc_error(StatusCode::BAD_GATEWAY, rpc_id, -32004, message);
    let timed_out = || {
        rpc_error(
            StatusCode::GATEWAY_TIMEOUT,
            rpc_id,
            -32003,
            "the MCP server did not answer in time",
        )
    };
    if leaves_base(rest) {
        return Err(plain_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the request path must not hold dot segments or encoded slashes",
        ));
    }
    let mut target =
        String::with_capacity(upstream.base_path().len() + rest.len() + query.len() + 2);
    target.push_str(upstream.base_path());
    target.push_str(rest);
    if target.is_empty() {
        target.push('/');
    }
    if !query.is_empty() {
        target.push('?');
        target.push_str(query);
    }
    let uri = http::Uri::try_from(target).map_err(|_| {
        plain_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the request path is not valid",
        )
    })?;
    let method = http::Method::from_bytes(req.method().as_str().as_bytes()).map_err(|_| {
        plain_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request",
            "unsupported method",
        )
    })?;
    let assertion = state
        .gateway
        .assertions
        .header(&state.keys, server, who)
        .map_err(|e| {
            tracing::error!(server = %server.slug, error = %e, "no assertion for the upstream");
            bad_gateway("the front door cannot sign its request")
        })?;
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
        if state.public_url.starts_with("https") {
            "https"
        } else {
            "http"
        },
    );
    if let Some(host) = super::request_host(req.head()) {
        set(&upstream_headers::FORWARDED_HOST, host);
    }
    set(&upstream_headers::SUBJECT, &who.subject);
    if let Some(c) = &who.client_id {
        set(&upstream_headers::CLIENT_ID, c);
    }
    set(&upstream_headers::SCOPES, &who.scope_header);
    // The upstream's own session id, unsealed.
    if let Some(s) = session {
        set(&upstream_headers::SESSION_ID, s);
    }
    // The identity again, signed for this server alone (a recent one reused: no signing per
    // request); a client's own `X-Ezforge-*` headers were dropped above.
    headers.insert(
        crate::services::gateway::assertion::HEADER.clone(),
        assertion,
    );

    let Some(client) = req.app_data::<web::Data<UpstreamClient>>() else {
        return Err(bad_gateway("the MCP server is unavailable"));
    };
    let build = |method: http::Method, uri: http::Uri, headers: http::HeaderMap, body: Bytes| {
        let mut r = http::Request::new(Full::new(body));
        *r.method_mut() = method;
        *r.uri_mut() = uri;
        *r.headers_mut() = headers;
        r
    };
    // Only a supervised process may be sent the request twice (see below); it is never sent
    // over a pooled connection, so that a refused connection means "not delivered".
    let retry = supervised.map(|p| {
        (
            p,
            method.clone(),
            uri.clone(),
            headers.clone(),
            body.clone(),
        )
    });
    let timeout = state.config.gateway.upstream_timeout.0;
    let send = client.send(
        upstream,
        build(method, uri, headers, body),
        supervised.is_none(),
    );
    let mut sent = tokio::time::timeout(timeout, send).await;
    // A supervised process that just crashed refuses the connection before its supervisor has
    // noticed: wait for the restart and send once more.
    if let Ok(Err(SendError::Connect(_))) = &sent
        && let Some((p, method, uri, headers, body)) = retry
        && p.recover(state.config.deploy.health_timeout.0)
            .await
            .is_ok()
    {
        let again = client.send(upstream, build(method, uri, headers, body), false);
        sent = tokio::time::timeout(timeout, again).await;
    }
    let upstream_res = match sent {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            tracing::warn!(server = %server.slug, error = %e, "upstream request failed");
            return Err(match e {
                SendError::ConnectTimedOut => timed_out(),
                SendError::Refused(r) => {
                    // The server's owners see why; its clients only that it is refused.
                    let why = format!("request not sent: the upstream's address is refused: {r}");
                    state
                        .deployer
                        .hub
                        .write(&server.id, "error", "gateway", why);
                    bad_gateway("the MCP server's address is refused by this ezforge")
                }
                _ => bad_gateway("the MCP server is unavailable"),
            });
        }
        Err(_) => return Err(timed_out()),
    };

    let (parts, upstream_body) = upstream_res.into_parts();
    if parts.status == http::StatusCode::UNAUTHORIZED {
        // The client's token was good here; the upstream wants credentials of its own.
        tracing::warn!(server = %server.slug, "the upstream answered 401 to the front door");
        return Err(bad_gateway(
            "the MCP server refused the front door's request (401)",
        ));
    }
    let status = StatusCode::from_u16(parts.status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut res = HttpResponse::build(status);
    let mut is_sse = false;
    for (name, value) in &parts.headers {
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
    if is_sse {
        // Tell intermediaries not to buffer the stream.
        res.insert_header(("x-accel-buffering", "no"));
        res.insert_header((header::CACHE_CONTROL, "no-cache"));
    }
    // A small answer of known length (the usual JSON-RPC response) goes out as one body;
    // anything else, SSE above all, streams as it arrives.
    let small = upstream_body
        .exact_len()
        .is_some_and(|n| n <= SMALL_BODY as u64);
    if small && !is_sse {
        let body = match tokio::time::timeout(timeout, collect(upstream_body)).await {
            Ok(Ok(b)) => b,
            Ok(Err(_)) => return Err(bad_gateway("the MCP server's answer broke off")),
            Err(_) => return Err(timed_out()),
        };
        if learn {
            learn_tools(state, server, &body, false);
        }
        server.counters.add_bytes(body.len());
        return Ok(res.body(body));
    }
    let stream =
        upstream_body.map(|r| r.map_err(|e| actix_web::error::ErrorBadGateway(e.to_string())));
    // The older SSE transport announces where to POST in an `endpoint` event, as a path on the
    // upstream; clients resolve it against our URL, so it must name our path for this server,
    // and its session id is sealed for this caller.
    let seal: Box<dyn Fn(&str) -> String> = if is_sse {
        let (st, id, owner) = (state.clone(), server.id.clone(), who.owner.clone());
        Box::new(move |session| st.gateway.sessions.seal(&id, &owner, session))
    } else {
        Box::new(str::to_owned)
    };
    let stream = EndpointRewrite {
        inner: Box::pin(stream),
        pending: if is_sse { Some(BytesMut::new()) } else { None },
        from: upstream.base_path().to_owned(),
        to: front_door_prefix(state, server),
        seal,
    };
    let stream = Heartbeat {
        inner: Box::pin(stream),
        every: if is_sse {
            Some(state.config.gateway.sse_keepalive.0)
        } else {
            None
        },
        timer: None,
        at_boundary: true,
        counters: server.counters.clone(),
        _inflight: inflight,
    };
    if learn {
        let st = state.clone();
        let entry = server.clone();
        let learner = Learn {
            inner: Box::pin(stream),
            buf: Vec::new(),
            done: Some(Box::new(move |body: &[u8]| {
                learn_tools(&st, &entry, body, is_sse)
            })),
        };
        Ok(res.streaming(learner))
    } else {
        Ok(res.streaming(stream))
    }
}

/// A whole upstream body (one chunk is passed on without copying).
async fn collect(mut body: PooledBody) -> Result<Bytes, hyper::Error> {
    let Some(first) = body.next().await.transpose()? else {
        return Ok(Bytes::new());
    };
    let Some(second) = body.next().await.transpose()? else {
        return Ok(first);
    };
    let mut buf = BytesMut::with_capacity(first.len() + second.len());
    buf.extend_from_slice(&first);
    buf.extend_from_slice(&second);
    while let Some(chunk) = body.next().await.transpose()? {
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// Passes a stream through; for SSE, while the upstream is quiet between events, emits a
/// comment every `every`. Actix notices a departed client only when it writes, so without this
/// an idle stream (and its upstream connection) would outlive its client forever.
struct Heartbeat<S> {
    inner: Pin<Box<S>>,
    every: Option<Duration>,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    /// The last chunk ended an event, so a comment cannot split one.
    at_boundary: bool,
    /// Bytes sent are counted for the server's usage.
    counters: Arc<ServerCounters>,
    /// Keeps the target from being stopped while the stream runs.
    _inflight: InFlight,
}

impl<S: Stream<Item = Result<Bytes, actix_web::Error>>> Stream for Heartbeat<S> {
    type Item = Result<Bytes, actix_web::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        match this.inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                this.counters.add_bytes(chunk.len());
                if !chunk.is_empty() {
                    this.at_boundary = ends_at_blank_line(&chunk);
                }
                this.timer = None;
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Pending => {
                let Some(every) = this.every else {
                    return Poll::Pending;
                };
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(every)));
                if timer.as_mut().poll(cx).is_ready() {
                    this.timer = None;
                    if this.at_boundary {
                        return Poll::Ready(Some(Ok(Bytes::from_static(b": keepalive\n\n"))));
                    }
                    // Mid-event: wait for the upstream, and check again later.
                    let mut next = Box::pin(tokio::time::sleep(every));
                    let _ = next.as_mut().poll(cx);
                    this.timer = Some(next);
                }
                Poll::Pending
            }
            other => other,
        }
    }
}

/// The path under which a client reaches this server: `/mcp/{slug}`, or nothing on its own host.
fn front_door_prefix(state: &AppState, server: &ServerEntry) -> String {
    match state.config.gateway.routing {
        crate::config::Routing::Host => String::new(),
        crate::config::Routing::Path => format!("/mcp/{}", server.slug),
    }
}

/// Rewrites the first SSE event if it is `event: endpoint` with a path under the upstream's
/// base (`from`), so it names the same place under the front door (`to`) with its session
/// sealed; then passes the stream through untouched. At most 16 KiB is held back while waiting
/// for that first event.
struct EndpointRewrite<S> {
    inner: Pin<Box<S>>,
    /// Bytes of the first event, until it is complete; `None` once passed on.
    pending: Option<BytesMut>,
    from: String,
    to: String,
    /// Seals the upstream's session id for the caller.
    seal: Box<dyn Fn(&str) -> String>,
}

/// SSE lines with their ends: CRLF, LF or a lone CR, mixed as they come (WHATWG SSE).
fn sse_lines(text: &str) -> impl Iterator<Item = (&str, &str)> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let (line, end) = match rest.find(['\r', '\n']) {
            None => (rest, ""),
            Some(i) if rest[i..].starts_with("\r\n") => (&rest[..i], &rest[i..i + 2]),
            Some(i) => (&rest[..i], &rest[i..=i]),
        };
        rest = &rest[line.len() + end.len()..];
        Some((line, end))
    })
}

/// Where the first SSE event ends: just past the blank line that closes it, if it has come.
/// Blank lines before any field end nothing (an empty event is not dispatched).
fn first_event_end(buf: &[u8]) -> Option<usize> {
    let mut at_line_start = true;
    let mut seen_field = false;
    let mut i = 0;
    while i < buf.len() {
        let end = match buf[i] {
            b'\r' if buf.get(i + 1) == Some(&b'\n') => 2,
            b'\r' | b'\n' => 1,
            _ => {
                at_line_start = false;
                seen_field = true;
                i += 1;
                continue;
            }
        };
        i += end;
        if at_line_start && seen_field {
            return Some(i);
        }
        at_line_start = true;
    }
    None
}

/// Whether `chunk` ends with a blank line, the end of an SSE event (lines end in CRLF, LF or
/// CR, mixed as they come).
fn ends_at_blank_line(chunk: &[u8]) -> bool {
    let rest = chunk
        .strip_suffix(b"\r\n")
        .or_else(|| chunk.strip_suffix(b"\n"))
        .or_else(|| chunk.strip_suffix(b"\r"));
    rest.is_some_and(|r| r.ends_with(b"\n") || r.ends_with(b"\r"))
}

fn rewrite_endpoint_event(
    event: &str,
    from: &str,
    to: &str,
    seal: &dyn Fn(&str) -> String,
) -> Option<String> {
    if !sse_lines(event).any(|(l, _)| l == "event: endpoint" || l == "event:endpoint") {
        return None;
    }
    let mut out = String::with_capacity(event.len() + to.len());
    for (line, end) in sse_lines(event) {
        let rewritten = line.strip_prefix("data:").and_then(|value| {
            let value = value.strip_prefix(' ').unwrap_or(value);
            let rest = value.strip_prefix(from)?;
            (value.starts_with('/')
                && (rest.is_empty() || rest.starts_with('/') || rest.starts_with('?')))
            .then(|| match rest.split_once('?') {
                Some((path, query)) => {
                    format!("data: {to}{path}?{}", legacy::seal_query(query, seal))
                }
                None => format!("data: {to}{rest}"),
            })
        });
        out.push_str(rewritten.as_deref().unwrap_or(line));
        out.push_str(end);
    }
    Some(out)
}

impl<S: Stream<Item = Result<Bytes, actix_web::Error>>> Stream for EndpointRewrite<S> {
    type Item = Result<Bytes, actix_web::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            let Some(pending) = this.pending.as_mut() else {
                return this.inner.as_mut().poll_next(cx);
            };
            match this.inner.as_mut().poll_next(cx) {
                Poll::Ready(Some(Ok(chunk))) => {
                    pending.extend_from_slice(&chunk);
                    let end = first_event_end(pending);
                    if end.is_none() && pending.len() < 16 * 1024 {
                        continue;
                    }
                    let mut held = this.pending.take().unwrap_or_default();
                    let Some(end) = end else {
                        return Poll::Ready(Some(Ok(held.freeze())));
                    };
                    let rest = held.split_off(end);
                    let first = String::from_utf8_lossy(&held).into_owned();
                    let rewritten =
                        rewrite_endpoint_event(&first, &this.from, &this.to, &this.seal)
                            .map_or(held.freeze(), Bytes::from);
                    let mut out = BytesMut::from(&rewritten[..]);
                    out.extend_from_slice(&rest);
                    return Poll::Ready(Some(Ok(out.freeze())));
                }
                Poll::Ready(None) => {
                    let held = this.pending.take().unwrap_or_default();
                    if held.is_empty() {
                        return Poll::Ready(None);
                    }
                    return Poll::Ready(Some(Ok(held.freeze())));
                }
                other => return other,
            }
        }
    }
}

type OnDone = Box<dyn FnOnce(&[u8])>;

/// Passes a response through unchanged while keeping a copy (up to `LEARN_CAP`) for `done`.
struct Learn<S> {
    inner: Pin<Box<S>>,
    buf: Vec<u8>,
    done: Option<OnDone>,
}

impl<S: Stream<Item = Result<Bytes, actix_web::Error>>> Stream for Learn<S> {
    type Item = Result<Bytes, actix_web::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        match this.inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                if this.done.is_some() {
                    if this.buf.len() + chunk.len() <= LEARN_CAP {
                        this.buf.extend_from_slice(&chunk);
                    } else {
                        this.done = None;
                        this.buf = Vec::new();
                    }
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(None) => {
                if let Some(done) = this.done.take() {
                    done(&this.buf);
                }
                Poll::Ready(None)
            }
            other => other,
        }
    }
}

/// Reads tool annotations from a `tools/list` answer, JSON or SSE, unless the server has
/// another upstream by now (what this one says must not outlive it).
fn learn_tools(state: &AppState, server: &ServerEntry, body: &[u8], is_sse: bool) {
    let still_current = || {
        state
            .gateway
            .registry
            .get(&server.slug)
            .is_some_and(|now| crate::services::gateway::registry::same_upstream(&now, server))
    };
    let learn_value = |v: &serde_json::Value| {
        let items: Vec<&serde_json::Value> = match v {
            serde_json::Value::Array(a) => a.iter().collect(),
            other => vec![other],
        };
        for item in items {
            if let Some(result) = item.get("result") {
                state.gateway.tools.learn(&server.id, result, still_current);
            }
        }
    };
    if is_sse {
        let text = String::from_utf8_lossy(body);
        let mut data: Vec<&str> = Vec::new();
        let dispatch = |data: &mut Vec<&str>| {
            if !data.is_empty() {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&data.join("\n")) {
                    learn_value(&v);
                }
                data.clear();
            }
        };
        for (line, _) in sse_lines(&text) {
            if line.is_empty() {
                dispatch(&mut data);
            } else if let Some(d) = line.strip_prefix("data:") {
                data.push(d.strip_prefix(' ').unwrap_or(d));
            }
        }
        dispatch(&mut data);
    } else if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
        learn_value(&v);
    }
}

#[cfg(test)]
mod tests {
    use super::{
        ends_at_blank_line, first_event_end, is_dropped_request_header, is_dropped_response_header,
        leaves_base, rewrite_endpoint_event,
    };

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

    #[test]
    fn an_sse_event_ends_at_its_blank_line_whatever_the_line_ends() {
        assert_eq!(first_event_end(b"data: a\n\nnext"), Some(9));
        assert_eq!(first_event_end(b"data: a\r\n\r\nnext"), Some(11));
        assert_eq!(first_event_end(b"data: a\r\rnext"), Some(9));
        assert_eq!(first_event_end(b"data: a\r\n\nx"), Some(10));
        assert_eq!(
            first_event_end(b"\r\ndata: a\n\n"),
            Some(11),
            "leading blank lines"
        );
        assert_eq!(first_event_end(b"data: a\r\ndata: b\r\n"), None);
        assert_eq!(first_event_end(b"data: a"), None);
        for end in [
            &b"x\n\n"[..],
            b"x\r\n\r\n",
            b"x\r\r",
            b"x\n\r\n",
            b"x\r\n\n",
        ] {
            assert!(ends_at_blank_line(end), "{end:?}");
        }
        for not in [&b"x\n"[..], b"x\r\n", b"x", b"\n"] {
            assert!(!ends_at_blank_line(not), "{not:?}");
        }
    }

    #[test]
    fn endpoint_events_are_rewritten_under_the_front_door() {
        let seal = |id: &str| format!("{id}.sealed");
        let e = "event: endpoint\ndata: /messages?sessionId=1\n\n";
        assert_eq!(
            rewrite_endpoint_event(e, "", "/mcp/w", &seal).as_deref(),
            Some("event: endpoint\ndata: /mcp/w/messages?sessionId=1.sealed\n\n")
        );
        let e = "event: endpoint\r\ndata: /base/messages?x=1\r\n\r\n";
        assert_eq!(
            rewrite_endpoint_event(e, "/base", "/mcp/w", &seal).as_deref(),
            Some("event: endpoint\r\ndata: /mcp/w/messages?x=1\r\n\r\n")
        );
        // Not under the base, or not an endpoint event: untouched.
        assert_eq!(
            rewrite_endpoint_event(
                "event: endpoint\ndata: /other/m?sessionId=1\n\n",
                "/base",
                "/mcp/w",
                &seal
            )
            .as_deref(),
            Some("event: endpoint\ndata: /other/m?sessionId=1\n\n")
        );
        assert_eq!(
            rewrite_endpoint_event("event: message\ndata: /x\n\n", "", "/mcp/w", &seal),
            None
        );
        // Lone CRs end lines too.
        assert_eq!(
            rewrite_endpoint_event("event: endpoint\rdata: /m?s=1\r\r", "", "/mcp/w", &seal)
                .as_deref(),
            Some("event: endpoint\rdata: /mcp/w/m?s=1\r\r")
        );
    }
}
