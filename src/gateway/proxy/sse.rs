//! Server-sent events on the way back: the 2024 transport's `endpoint` event rewritten under
//! the front door (its session sealed), keepalive comments while the upstream is quiet, and
//! `tools/list` answers teed to learn tool annotations.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::{HttpResponse, HttpResponseBuilder};
use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};

use super::{Env, Outbound};
use crate::config::Routing;
use crate::deploy::InFlight;
use crate::domain::endpoint::Endpoint;
use crate::gateway::legacy;
use crate::services::gateway::Gateway;
use crate::services::gateway::counters::ServerCounters;
use crate::services::gateway::registry::ServerEntry;
use crate::shared::upstream::PooledBody;

/// `tools/list` responses larger than this are passed on without learning from them.
pub(super) const LEARN_CAP: usize = 4 * 1024 * 1024;

/// Streams an upstream's answer to the client as it arrives: for SSE, the `endpoint` event
/// rewritten and keepalives while it is quiet; bytes counted; a `tools/list` answer teed to
/// learn from. `inflight` keeps the target running until the stream ends.
pub(super) fn stream(
    env: Env<'_>,
    out: &Outbound<'_>,
    upstream: &Endpoint,
    body: PooledBody,
    is_sse: bool,
    inflight: InFlight,
    mut res: HttpResponseBuilder,
) -> HttpResponse {
    let (server, who) = (out.server, out.who);
    let stream = body.map(|r| r.map_err(|e| actix_web::error::ErrorBadGateway(e.to_string())));
    // The older SSE transport announces where to POST in an `endpoint` event, as a path on the
    // upstream; clients resolve it against our URL, so it must name our path for this server,
    // and its session id is sealed for this caller.
    let seal: Box<dyn Fn(&str) -> String> = if is_sse {
        let (gateway, id, owner) = (env.gateway.shared(), server.id.clone(), who.owner.clone());
        Box::new(move |session| gateway.sessions.seal(&id, &owner, session))
    } else {
        Box::new(str::to_owned)
    };
    let stream = EndpointRewrite {
        inner: Box::pin(stream),
        pending: if is_sse { Some(BytesMut::new()) } else { None },
        from: upstream.base_path().to_owned(),
        to: front_door_prefix(env.config.routing, server),
        seal,
    };
    let stream = Heartbeat {
        inner: Box::pin(stream),
        every: if is_sse {
            Some(env.config.sse_keepalive.0)
        } else {
            None
        },
        timer: None,
        at_boundary: true,
        counters: server.counters.clone(),
        _inflight: inflight,
    };
    if !out.learn {
        return res.streaming(stream);
    }
    let (gateway, entry) = (env.gateway.shared(), server.clone());
    res.streaming(Learn {
        inner: Box::pin(stream),
        buf: Vec::new(),
        done: Some(Box::new(move |body: &[u8]| {
            learn_tools(&gateway, &entry, body, is_sse)
        })),
    })
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
fn front_door_prefix(routing: Routing, server: &ServerEntry) -> String {
    match routing {
        Routing::Host => String::new(),
        Routing::Path => format!("/mcp/{}", server.slug),
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
pub(super) fn learn_tools(gateway: &Gateway, server: &ServerEntry, body: &[u8], is_sse: bool) {
    let still_current = || {
        gateway
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
                gateway.tools.learn(&server.id, result, still_current);
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
    use super::{ends_at_blank_line, first_event_end, rewrite_endpoint_event};

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
