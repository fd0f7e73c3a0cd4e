//! Health checks of an HTTP target: `GET {healthCheckPath}` answering 200, or else an MCP
//! `initialize` followed by `ping` (the session is then closed).

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use url::Url;

/// Checks `url` until it passes, fails for a reason that retrying will not change, or
/// `timeout` runs out. Connection failures are retried (a process may still be starting).
pub async fn check(
    client: &reqwest::Client,
    url: &Url,
    path: Option<&str>,
    timeout: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let attempt = tokio::time::timeout(left, once(client, url, path)).await;
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

fn sent(e: reqwest::Error, what: &str) -> Failure {
    if e.is_connect() {
        Failure::Retry(format!("{what}: cannot connect ({e})"))
    } else {
        Failure::Final(format!("{what}: {e}"))
    }
}

async fn once(client: &reqwest::Client, url: &Url, path: Option<&str>) -> Result<(), Failure> {
    if let Some(path) = path {
        let mut target = url.clone();
        target.set_query(None);
        target.set_path(path);
        let res = client
            .get(target.as_str())
            .send()
            .await
            .map_err(|e| sent(e, &format!("GET {path}")))?;
        return if res.status() == reqwest::StatusCode::OK {
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
    let (session, answer) = rpc(client, url, None, &init)
        .await
        .map_err(|f| prefix(f, "initialize"))?;
    if let Some(e) = answer.as_ref().and_then(|a| a.get("error")) {
        return Err(Failure::Final(format!("initialize answered an error: {e}")));
    }
    let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let _ = rpc(client, url, session.as_deref(), &note).await;
    let ping = json!({"jsonrpc": "2.0", "id": 2, "method": "ping"});
    let (_, answer) = rpc(client, url, session.as_deref(), &ping)
        .await
        .map_err(|f| prefix(f, "ping"))?;
    if let Some(s) = &session {
        let _ = client
            .delete(url.as_str())
            .header("mcp-session-id", s)
            .send()
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
    client: &reqwest::Client,
    url: &Url,
    session: Option<&str>,
    msg: &Value,
) -> Result<(Option<String>, Option<Value>), Failure> {
    let mut req = client
        .post(url.as_str())
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-06-18")
        .json(msg);
    if let Some(s) = session {
        req = req.header("mcp-session-id", s);
    }
    let res = req.send().await.map_err(|e| sent(e, "POST"))?;
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
    let answer = if sse {
        // Read events until the response arrives (the stream may stay open afterwards).
        use futures_util::StreamExt;
        let mut stream = res.bytes_stream();
        let answer_in = |line: &[u8]| {
            let line = String::from_utf8_lossy(line);
            let data = line.trim_end_matches('\r').strip_prefix("data:")?;
            serde_json::from_str::<Value>(data.trim())
                .ok()
                .filter(|v| v.get("id") == msg.get("id"))
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
    } else {
        // As much as a JSON-RPC answer to initialize or ping can need, and no more.
        use futures_util::StreamExt;
        let mut stream = res.bytes_stream();
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
        serde_json::from_slice(&buf).ok()
    };
    match answer {
        Some(a) => Ok((session, Some(a))),
        None => Err(Failure::Final(
            "the answer is not a JSON-RPC response".into(),
        )),
    }
}
