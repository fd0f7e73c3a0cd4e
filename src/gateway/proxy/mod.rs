//! One request through the front door, in stages: admission (route, Origin, body, strict
//! parse), authentication and rate limits, the scope policy, session binding, then a
//! streaming proxy to the upstream. Each stage returns a [`GatewayError`] when it refuses;
//! [`handle`] turns it into the answer (`challenges.rs`) and writes the access-log row.

mod admission;
mod auth;
mod challenges;
mod forward;
mod headers;
mod sse;

use std::ops::Deref;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::Bytes;

use super::error::GatewayError;
use crate::config::GatewayConfig;
use crate::services::gateway::Gateway;
use crate::services::gateway::registry::ServerEntry;
use crate::services::gateway::verify::Verified;
use crate::services::keys::Keyring;
use crate::shared::logs::LogHub;
use crate::store::request_log::RequestLogRow;

/// Longest method or tool name written to the access log (longer ones are cut).
const LOG_FIELD_MAX: usize = 128;
/// Longest refusal reason written to the access log.
const REFUSAL_MAX: usize = 256;

/// `/mcp/{slug}[/rest]`.
pub async fn path_routed(
    req: HttpRequest,
    payload: web::Payload,
    gateway: web::Data<Gateway>,
) -> HttpResponse {
    let Some(after) = req.path().strip_prefix("/mcp/") else {
        return GatewayError::UnknownServer.response(None, None);
    };
    let (slug, rest) = after.split_at(after.find('/').unwrap_or(after.len()));
    if slug.is_empty() {
        return GatewayError::UnknownServer.response(None, None);
    }
    let (slug, rest) = (slug.to_owned(), rest.to_owned());
    handle(req, payload, Env::new(&gateway), &slug, rest).await
}

/// `https://{slug}.{server_domain}/[rest]` under host routing.
pub async fn host_routed(
    req: HttpRequest,
    payload: web::Payload,
    gateway: web::Data<Gateway>,
) -> HttpResponse {
    let Some(slug) = gateway.urls.slug_from_host(super::request_host(req.head())) else {
        return GatewayError::UnknownServer.response(None, None);
    };
    let rest = match req.path() {
        "/" => String::new(),
        p => p.to_owned(),
    };
    handle(req, payload, Env::new(&gateway), &slug, rest).await
}

/// What the stages read from the gateway service, borrowed once per request (no copies, no
/// lookups).
#[derive(Clone, Copy)]
struct Env<'a> {
    gateway: GatewayRef<'a>,
    config: &'a GatewayConfig,
    /// How long a supervised process may take to become ready.
    health_timeout: Duration,
    public_url: &'a str,
    /// Signs `X-Ezforge-Assertion`.
    keys: &'a Keyring,
    /// The server log, and the access rows its followers watch.
    hub: &'a LogHub,
}

impl<'a> Env<'a> {
    fn new(gateway: &'a web::Data<Gateway>) -> Self {
        Env {
            gateway: GatewayRef(gateway),
            config: &gateway.config,
            health_timeout: gateway.health_timeout,
            public_url: gateway.urls.public_url(),
            keys: &gateway.keys,
            hub: &gateway.hub,
        }
    }
}

/// The gateway, borrowed for a request; [`GatewayRef::shared`] gives a handle on it that
/// outlives the request (one reference count), for streamed answers.
#[derive(Clone, Copy)]
struct GatewayRef<'a>(&'a web::Data<Gateway>);

impl GatewayRef<'_> {
    fn shared(&self) -> SharedGateway {
        SharedGateway(self.0.clone())
    }
}

impl Deref for GatewayRef<'_> {
    type Target = Gateway;

    fn deref(&self) -> &Gateway {
        self.0
    }
}

/// The gateway, held by what outlives a request.
struct SharedGateway(web::Data<Gateway>);

impl Deref for SharedGateway {
    type Target = Gateway;

    fn deref(&self) -> &Gateway {
        &self.0
    }
}

/// A request let through, as it goes to the upstream.
pub(super) struct Outbound<'r> {
    pub(super) req: &'r HttpRequest,
    pub(super) server: &'r Arc<ServerEntry>,
    pub(super) who: &'r Verified,
    /// The path below the server's own.
    pub(super) rest: &'r str,
    /// The query, its session opened.
    pub(super) query: &'r str,
    pub(super) body: Bytes,
    /// The upstream's own session id, unsealed.
    pub(super) session: Option<&'r str>,
    /// A `tools/list` call: its answer is teed to learn tool annotations.
    pub(super) learn: bool,
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
    /// The id (raw JSON) of a body's single message, once read: error answers carry it.
    rpc_id: Option<String>,
}

impl Trace {
    fn new(server: &ServerEntry) -> Self {
        Trace {
            start: Instant::now(),
            server_id: server.id.clone(),
            subject: None,
            client_id: None,
            method: None,
            tool: None,
            auth_failure: None,
            refusal: None,
            rpc_id: None,
        }
    }

    fn refuse(&mut self, code: &str, detail: &str) {
        self.refusal = Some(cut(&format!("{code}: {detail}"), REFUSAL_MAX));
    }
}

async fn handle(
    req: HttpRequest,
    payload: web::Payload,
    env: Env<'_>,
    slug: &str,
    rest: String,
) -> HttpResponse {
    let Some(server) = env.gateway.registry.get(slug) else {
        return GatewayError::UnknownServer.response(None, None);
    };
    let mut trace = Trace::new(&server);
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .map(str::to_owned);
    let process = process(
        &req,
        payload,
        env,
        &server,
        rest,
        origin.as_deref(),
        &mut trace,
    );
    let mut response = match process.await {
        Ok(r) => r,
        Err(e) => e.response(Some(&server), trace.rpc_id.as_deref()),
    };
    if let Some(o) = origin.filter(|o| admission::origin_allowed(env, &server, o)) {
        admission::cors_headers(response.headers_mut(), &o);
    }
    record(env, &server, &req, trace, response.status());
    response
}

/// The stages, in order.
async fn process(
    req: &HttpRequest,
    payload: web::Payload,
    env: Env<'_>,
    server: &Arc<ServerEntry>,
    rest: String,
    origin: Option<&str>,
    trace: &mut Trace,
) -> Result<HttpResponse, GatewayError> {
    if let Some(preflight) = admission::screen(req, env, server, origin)? {
        return Ok(preflight);
    }
    // Requests without a token (and refused tokens, below) are limited by the caller's address
    // (a good token by its subject and client), those without one before their body is read.
    let limiter = server.limiter.as_deref().unwrap_or(&env.gateway.limiter);
    let presented = auth::bearer(req);
    if !matches!(presented, Ok(Some(_))) {
        auth::charge_address(limiter, server, req).inspect_err(|_| {
            trace.auth_failure = Some("throttled");
        })?;
    }
    let body = admission::read(req, payload, env.config).await?;
    let call = admission::parse(req, &body, server, &env.gateway.tools, trace);
    let who = auth::authenticate(env, server, presented, &call.needed, limiter, req, trace).await?;
    auth::charge_owner(limiter, server, &who)?;
    // Only now is a malformed body worth an answer: after authentication.
    let messages = admission::admit(req, call.messages, trace)?;
    auth::authorize(&who, &call.needed)?;
    let owner = who.owner.as_str();
    let (session, query) = admission::bind_session(req, env, server, owner, trace)?;
    let learn = messages
        .iter()
        .any(|m| m.method.as_deref() == Some("tools/list"));
    let out = Outbound {
        req,
        server,
        who: &who,
        rest: &rest,
        query: &query,
        body,
        session,
        learn,
    };
    forward::dispatch(env, out).await
}

/// One access-log row, queued for the batch writer and shown to the server log's followers.
fn record(env: Env<'_>, server: &ServerEntry, req: &HttpRequest, trace: Trace, status: StatusCode) {
    let status = status.as_u16();
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
            .get(&crate::shared::request_id::REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        refusal: trace.refusal,
    };
    env.hub.access(&row);
    env.gateway.log.record(row);
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
