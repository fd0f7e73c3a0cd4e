//! Sending the request upstream and its answer back: to a URL or a supervised process over
//! the worker's pooled connections (a process that just crashed is waited for and sent the
//! request once more), or to a stdio bridge.

use std::sync::Arc;

use actix_web::http::header;
use actix_web::http::{Method, StatusCode};
use actix_web::{HttpResponse, web};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use http_body_util::Full;

use super::admission::leaves_base;
use super::headers::{self, seal_session};
use super::sse::{self, LEARN_CAP, learn_tools};
use super::{Env, Outbound};
use crate::deploy::process::Supervisor;
use crate::deploy::stdio::StdioPool;
use crate::deploy::{InFlight, TargetKind};
use crate::domain::endpoint::Endpoint;
use crate::gateway::error::GatewayError;
use crate::services::gateway::registry::ServerEntry;
use crate::shared::upstream::{PooledBody, SendError, UpstreamClient};

/// Upstream answers up to this size with a Content-Length are forwarded as one body.
const SMALL_BODY: usize = 256 * 1024;

/// Sends the request to the server's deployed target; the session id of the answer is sealed
/// for the caller.
pub(super) async fn dispatch(
    env: Env<'_>,
    out: Outbound<'_>,
) -> Result<HttpResponse, GatewayError> {
    let (server, owner) = (out.server, out.who.owner.as_str());
    let Some(target) = &server.target else {
        return Err(GatewayError::NoUpstream);
    };
    server.counters.add_bytes(out.body.len());
    let inflight = target.enter();
    let mut res = match &target.kind {
        TargetKind::Url(u) => forward(env, out, u, inflight, None).await?,
        TargetKind::Process(p) => {
            p.touch();
            if let Err(e) = p.ready(env.health_timeout, false).await {
                tracing::warn!(server = %server.slug, error = %e, "supervised MCP server unavailable");
                return Err(GatewayError::UpstreamStarting);
            }
            forward(env, out, &p.url, inflight, Some(p)).await?
        }
        TargetKind::Stdio(pool) => {
            let mut res = bridge(env, &out, pool).await;
            seal_session(&env.gateway.sessions, server, &mut res, owner);
            drop(inflight);
            return Ok(res);
        }
    };
    seal_session(&env.gateway.sessions, server, &mut res, owner);
    Ok(res)
}

/// Through a stdio bridge, whose answers to POSTs are whole bodies: learned from, counted.
async fn bridge(env: Env<'_>, out: &Outbound<'_>, pool: &Arc<StdioPool>) -> HttpResponse {
    let method = out.req.method();
    if method != Method::POST {
        return pool.handle(method, out.session, &out.body).await;
    }
    match pool.handle_post(out.session, &out.body).await {
        Ok(answered) => {
            let body = answered.body();
            // Learned from only within the cap the HTTP path keeps a copy to.
            if out.learn && body.len() <= LEARN_CAP {
                learn_tools(&env.gateway, out.server, body, false);
            }
            out.server.counters.add_bytes(body.len());
            answered.into_response(pool.patience())
        }
        Err(refused) => refused,
    }
}

/// Over HTTP, to a URL or a supervised process (`supervised`).
async fn forward(
    env: Env<'_>,
    mut out: Outbound<'_>,
    upstream: &Endpoint,
    inflight: InFlight,
    supervised: Option<&Supervisor>,
) -> Result<HttpResponse, GatewayError> {
    let server = out.server;
    let uri = upstream_uri(upstream, out.rest, out.query)?;
    let method = http::Method::from_bytes(out.req.method().as_str().as_bytes())
        .map_err(|_| GatewayError::MethodUnsupported)?;
    let assertion = env
        .gateway
        .assertions
        .header(env.keys, server, out.who)
        .map_err(|e| {
            tracing::error!(server = %server.slug, error = %e, "no assertion for the upstream");
            GatewayError::Unreachable("the front door cannot sign its request")
        })?;
    let headers = headers::upstream_request(
        out.req,
        upstream,
        env.public_url,
        out.who,
        out.session,
        assertion,
    );
    let Some(client) = out.req.app_data::<web::Data<UpstreamClient>>() else {
        return Err(GatewayError::Unreachable("the MCP server is unavailable"));
    };
    let request = Request {
        method,
        uri,
        headers,
        body: std::mem::take(&mut out.body),
    };
    let sent = send(env, client, upstream, server, request, supervised).await?;
    answer(env, &out, upstream, sent, inflight).await
}

/// Where on the upstream: its base path, the path below the server's, the query.
fn upstream_uri(upstream: &Endpoint, rest: &str, query: &str) -> Result<http::Uri, GatewayError> {
    if leaves_base(rest) {
        return Err(GatewayError::PathLeavesBase);
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
    http::Uri::try_from(target).map_err(|_| GatewayError::PathInvalid)
}

/// The request as the upstream client sends it (kept apart to send it again).
#[derive(Clone)]
struct Request {
    method: http::Method,
    uri: http::Uri,
    headers: http::HeaderMap,
    body: Bytes,
}

impl Request {
    fn build(self) -> http::Request<Full<Bytes>> {
        let mut r = http::Request::new(Full::new(self.body));
        *r.method_mut() = self.method;
        *r.uri_mut() = self.uri;
        *r.headers_mut() = self.headers;
        r
    }
}

/// Sends within `gateway.upstream_timeout`, to the answer's headers.
async fn send(
    env: Env<'_>,
    client: &UpstreamClient,
    upstream: &Endpoint,
    server: &ServerEntry,
    request: Request,
    supervised: Option<&Supervisor>,
) -> Result<http::Response<PooledBody>, GatewayError> {
    // Only a supervised process may be sent the request twice (see below); it is never sent
    // over a pooled connection, so that a refused connection means "not delivered".
    let retry = supervised.map(|p| (p, request.clone()));
    let timeout = env.config.upstream_timeout.0;
    let send = client.send(upstream, request.build(), supervised.is_none());
    let mut sent = tokio::time::timeout(timeout, send).await;
    // A supervised process that just crashed refuses the connection before its supervisor has
    // noticed: wait for the restart and send once more.
    if let Ok(Err(SendError::Connect(_))) = &sent
        && let Some((p, request)) = retry
        && p.recover(env.health_timeout).await.is_ok()
    {
        let again = client.send(upstream, request.build(), false);
        sent = tokio::time::timeout(timeout, again).await;
    }
    match sent {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(e)) => {
            tracing::warn!(server = %server.slug, error = %e, "upstream request failed");
            Err(match e {
                SendError::ConnectTimedOut => GatewayError::UpstreamTimeout,
                SendError::Refused(r) => {
                    // The server's owners see why; its clients only that it is refused.
                    let why = format!("request not sent: the upstream's address is refused: {r}");
                    env.hub.write(&server.id, "error", "gateway", why);
                    GatewayError::Unreachable("the MCP server's address is refused by this ezforge")
                }
                _ => GatewayError::Unreachable("the MCP server is unavailable"),
            })
        }
        Err(_) => Err(GatewayError::UpstreamTimeout),
    }
}

/// The upstream's answer, to the client: a small one of known length (the usual JSON-RPC
/// response) as one body; anything else, SSE above all, streamed as it arrives.
async fn answer(
    env: Env<'_>,
    out: &Outbound<'_>,
    upstream: &Endpoint,
    sent: http::Response<PooledBody>,
    inflight: InFlight,
) -> Result<HttpResponse, GatewayError> {
    let server = out.server;
    let (parts, upstream_body) = sent.into_parts();
    if parts.status == http::StatusCode::UNAUTHORIZED {
        // The client's token was good here; the upstream wants credentials of its own.
        tracing::warn!(server = %server.slug, "the upstream answered 401 to the front door");
        return Err(GatewayError::Unreachable(
            "the MCP server refused the front door's request (401)",
        ));
    }
    let status = StatusCode::from_u16(parts.status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut res = HttpResponse::build(status);
    let is_sse = headers::copy_response(&parts.headers, &mut res);
    if is_sse {
        // Tell intermediaries not to buffer the stream.
        res.insert_header(("x-accel-buffering", "no"));
        res.insert_header((header::CACHE_CONTROL, "no-cache"));
    }
    let small = upstream_body
        .exact_len()
        .is_some_and(|n| n <= SMALL_BODY as u64);
    if !small || is_sse {
        return Ok(sse::stream(
            env,
            out,
            upstream,
            upstream_body,
            is_sse,
            inflight,
            res,
        ));
    }
    let timeout = env.config.upstream_timeout.0;
    let body = match tokio::time::timeout(timeout, collect(upstream_body)).await {
        Ok(Ok(b)) => b,
        Ok(Err(_)) => {
            return Err(GatewayError::Unreachable(
                "the MCP server's answer broke off",
            ));
        }
        Err(_) => return Err(GatewayError::UpstreamTimeout),
    };
    if out.learn {
        learn_tools(&env.gateway, server, &body, false);
    }
    server.counters.add_bytes(body.len());
    Ok(res.body(body))
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
