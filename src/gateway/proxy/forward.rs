//! Sending the request upstream and streaming its answer back; a supervised process that
//! just crashed is waited for and sent the request once more.

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use http_body_util::Full;

use super::admission::leaves_base;
use super::challenges::{plain_error, rpc_error};
use super::headers::{
    MCP_SESSION_ID, is_dropped_request_header, is_dropped_response_header, upstream_headers,
};
use super::sse::{EndpointRewrite, Heartbeat, Learn, front_door_prefix, learn_tools};
use crate::app::AppState;
use crate::deploy::InFlight;
use crate::deploy::process::Supervisor;
use crate::gateway::registry::ServerEntry;
use crate::gateway::upstream::{Endpoint, PooledBody, SendError, UpstreamClient};
use crate::gateway::verify::Verified;

/// Upstream answers up to this size with a Content-Length are forwarded as one body.
const SMALL_BODY: usize = 256 * 1024;

#[allow(clippy::too_many_arguments)]
pub(super) async fn forward(
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
    if let Some(host) = crate::gateway::request_host(req.head()) {
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
    headers.insert(crate::gateway::assertion::HEADER.clone(), assertion);

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
pub(super) async fn collect(mut body: PooledBody) -> Result<Bytes, hyper::Error> {
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
