//! One request through the front door: route, CORS and Origin, body limit, bearer token,
//! rate limit, session binding, scope policy, then a streaming proxy to the upstream.

mod admission;
mod challenges;
mod forward;
mod headers;
mod sse;

use std::sync::Arc;
use std::time::Instant;

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::Bytes;

use self::admission::{
    bearer, cors_headers, origin_allowed, preflight, read_body, restated_mismatch,
};
use self::challenges::{
    invalid_token, plain_error, rpc_error, session_refused, set_challenge, too_many,
};
use self::forward::forward;
use self::headers::{MCP_SESSION_ID, seal_session};
use self::sse::learn_tools;
use super::legacy;
use super::policy::{self, ParseError};
use super::registry::ServerEntry;
use super::verify::VerifyError;
use crate::app::AppState;
use crate::control::rate_limit::Decision;
use crate::deploy::TargetKind;
use crate::store::request_log::RequestLogRow;

/// Longest method or tool name written to the access log (longer ones are cut).
const LOG_FIELD_MAX: usize = 128;
/// Longest refusal reason written to the access log.
const REFUSAL_MAX: usize = 256;

/// JSON-RPC error for headers that contradict the body (MCP 2026-07-28, SEP-2243).
const HEADER_MISMATCH: i64 = -32020;

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
pub(super) struct Trace {
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
    pub(super) fn refuse(&mut self, code: &str, detail: &str) {
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
pub(super) fn cut(s: &str, max: usize) -> String {
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
            crate::control::rate_limit::address_bucket(req.peer_addr())
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
