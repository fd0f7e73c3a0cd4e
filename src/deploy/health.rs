//! Health checks of an HTTP target: `GET {healthCheckPath}` answering 200, or else an MCP
//! `initialize` followed by `ping` (the session is then closed). They go through the front
//! door's own upstream client, so the same destination checks apply (a name that now resolves
//! to a refused address fails the check); redirects are not followed.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::Full;
use serde_json::{Value, json};

use crate::domain::endpoint::Endpoint;
use crate::shared::upstream::{PooledBody, SendError, UpstreamClient};

/// Checks `ep` until it passes, fails for a reason that retrying will not change, or
/// `timeout` runs out. Connection failures are retried (a process may still be starting).
pub async fn check(
    client: &UpstreamClient,
    ep: &Endpoint,
    path: Option<&str>,
    timeout: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let attempt = tokio::time::timeout(left, once(client, ep, path)).await;
        match attempt {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(Failure::Final(m))) => return Err(m),
            Ok(Err(Failure::Retry(m)))
                if Instant::now() + Duration::from_millis(200) >= deadline =>
            {
                return Err(m);
            }
            Ok(Err(Failure::Retry(_))) => tokio::time::sleep(Duration::from_millis(200)).await,
            Err(_) => {
                return Err(format!(
                    "no healthy answer within {}",
                    humantime::format_duration(timeout)
                ));
            }
        }
    }
}

enum Failure {
    Retry(String),
    Final(String),
}

fn sent(e: SendError, what: &str) -> Failure {
    match e {
        SendError::Connect(_) | SendError::ConnectTimedOut => {
            Failure::Retry(format!("{what}: cannot connect ({e})"))
        }
        _ => Failure::Final(format!("{what}: {e}")),
    }
}

/// The endpoint's URL as an origin-form request target (path and query).
fn origin_form(ep: &Endpoint) -> String {
    let url = ep.url();
    match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    }
}

/// Sends one request on a connection of its own.
async fn send(
    client: &UpstreamClient,
    ep: &Endpoint,
    method: http::Method,
    target: &str,
    session: Option<&str>,
    body: Option<&Value>,
) -> Result<http::Response<PooledBody>, SendError> {
    let mut req = http::Request::new(Full::new(
        body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string())),
    ));
    *req.method_mut() = method;
    *req.uri_mut() = http::Uri::try_from(target)
        .map_err(|e| SendError::Failed(format!("bad request target {target:?}: {e}")))?;
    let h = req.headers_mut();
    h.insert(http::header::HOST, ep.host_header().clone());
    if body.is_some() {
        h.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        h.insert(
            http::header::ACCEPT,
            http::HeaderValue::from_static("application/json, text/event-stream"),
        );
        h.insert(
            "mcp-protocol-version",
            http::HeaderValue::from_static("2025-06-18"),
        );
    }
    if let Some(s) = session.and_then(|s| http::HeaderValue::from_str(s).ok()) {
        h.insert("mcp-session-id", s);
    }
    client.send(ep, req, false).await
}

async fn once(client: &UpstreamClient, ep: &Endpoint, path: Option<&str>) -> Result<(), Failure> {
    if let Some(path) = path {
        let res = send(client, ep, http::Method::GET, path, None, None)
            .await
            .map_err(|e| sent(e, &format!("GET {path}")))?;
        return if res.status() == http::StatusCode::OK {
            Ok(())
        } else {
            Err(Failure::Final(format!(
                "GET {path} answered {} (200 expected)",
                res.status().as_u16()
            )))
        };
    }
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "ezforge-health-check", "version": env!("CARGO_PKG_VERSION")}}});
    let (session, answer) = rpc(client, ep, None, &init)
        .await
        .map_err(|f| prefix(f, "initialize"))?;
    if let Some(e) = answer.as_ref().and_then(|a| a.get("error")) {
        return Err(Failure::Final(format!("initialize answered an error: {e}")));
    }
    let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let _ = rpc(client, ep, session.as_deref(), &note).await;
    let ping = json!({"jsonrpc": "2.0", "id": 2, "method": "ping"});
    let (_, answer) = rpc(client, ep, session.as_deref(), &ping)
        .await
        .map_err(|f| prefix(f, "ping"))?;
    if let Some(s) = &session {
        let _ = send(
            client,
            ep,
            http::Method::DELETE,
            &origin_form(ep),
            Some(s),
            None,
        )
        .await;
    }
    match answer {
        Some(a) if a.get("result").is_some() => Ok(()),
        _ => Err(Failure::Final("ping was not answered with a result".into())),
    }
}

fn prefix(f: Failure, what: &str) -> Failure {
    match f {
        Failure::Retry(m) => Failure::Retry(format!("{what}: {m}")),
        Failure::Final(m) => Failure::Final(format!("{what}: {m}")),
    }
}

/// The most of an answer the check reads.
const MAX_ANSWER: usize = 1 << 20;

/// One JSON-RPC message; the answer is the JSON body, or the first SSE `data:` that is a
/// response. Returns the session id the server set, if any.
async fn rpc(
    client: &UpstreamClient,
    ep: &Endpoint,
    session: Option<&str>,
    msg: &Value,
) -> Result<(Option<String>, Option<Value>), Failure> {
    let res = send(
        client,
        ep,
        http::Method::POST,
        &origin_form(ep),
        session,
        Some(msg),
    )
    .await
    .map_err(|e| sent(e, "POST"))?;
    let status = res.status();
    let session = res
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if !status.is_success() {
        return Err(Failure::Final(format!("HTTP {}", status.as_u16())));
    }
    let sse = res
        .headers()
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    if msg.get("id").is_none() {
        return Ok((session, None));
    }
    let stream = res.into_body();
    let answer = if sse {
        sse_answer(stream, msg.get("id")).await
    } else {
        json_answer(stream).await?
    };
    match answer {
        Some(a) => Ok((session, Some(a))),
        None => Err(Failure::Final(
            "the answer is not a JSON-RPC response".into(),
        )),
    }
}

/// Reads events until the response with `id` arrives (the stream may stay open afterwards),
/// at most `MAX_ANSWER` bytes.
async fn sse_answer(mut stream: PooledBody, id: Option<&Value>) -> Option<Value> {
    let answer_in = |line: &[u8]| {
        let line = String::from_utf8_lossy(line);
        let data = line.trim_end_matches('\r').strip_prefix("data:")?;
        serde_json::from_str::<Value>(data.trim())
            .ok()
            .filter(|v| v.get("id") == id)
    };
    let mut buf = Vec::new();
    // Each line is read once: `buf[..scanned]` holds whole lines already looked at.
    let mut scanned = 0;
    let mut found = None;
    while let Some(Ok(chunk)) = stream.next().await {
        buf.extend_from_slice(&chunk);
        while found.is_none()
            && let Some(end) = buf[scanned..].iter().position(|b| *b == b'\n')
        {
            found = answer_in(&buf[scanned..scanned + end]);
            scanned += end + 1;
        }
        if found.is_some() || buf.len() > MAX_ANSWER {
            break;
        }
    }
    // A last line the stream ended without closing.
    found.or_else(|| answer_in(&buf[scanned..]))
}

/// Reads a JSON body: as much as a JSON-RPC answer to initialize or ping can need, and no
/// more.
async fn json_answer(mut stream: PooledBody) -> Result<Option<Value>, Failure> {
    let mut buf = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| Failure::Final(format!("reading the answer: {e}")))?;
        buf.extend_from_slice(&chunk);
        if buf.len() > MAX_ANSWER {
            return Err(Failure::Final(format!(
                "the answer is larger than {} KiB",
                MAX_ANSWER >> 10
            )));
        }
    }
    Ok(serde_json::from_slice(&buf).ok())
}
