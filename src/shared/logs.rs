//! The per-server log the control API serves: the front door's access log, the output of
//! supervised processes and deployment events. Process output and events are written in
//! batches (like the access log); every entry is also offered to live tails
//! (`GET /v1/servers/:id/logs/stream`), at no cost while nobody listens.

use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::broadcast;

use crate::shared::log_queue::LogQueue;

use crate::store::request_log::RequestLogRow;
use crate::store::server_log::{LogEntry, ServerLogRow};

const QUEUE: usize = 8192;
const LIVE: usize = 1024;

/// `debug` < `info` < `warn` < `error`.
pub fn level_rank(level: &str) -> Option<i64> {
    match level {
        "debug" => Some(0),
        "info" => Some(1),
        "warn" => Some(2),
        "error" => Some(3),
        _ => None,
    }
}

/// An entry as a live tail receives it.
pub struct LiveEntry {
    pub server_id: String,
    pub rank: i64,
    pub message: String,
    pub json: Value,
}

#[derive(Clone)]
pub struct LogHub {
    queue: Arc<LogQueue<ServerLogRow>>,
    live: broadcast::Sender<Arc<LiveEntry>>,
}

impl Default for LogHub {
    fn default() -> Self {
        let (live, _) = broadcast::channel(LIVE);
        Self {
            queue: Arc::new(LogQueue::new(QUEUE)),
            live,
        }
    }
}

impl LogHub {
    /// The queue [`crate::shared::log_queue::run_writer`] stores.
    pub fn queue(&self) -> Arc<LogQueue<ServerLogRow>> {
        self.queue.clone()
    }

    /// Records a process line or a deployment event.
    pub fn write(
        &self,
        server_id: &str,
        level: &'static str,
        source: &'static str,
        message: String,
    ) {
        let row = ServerLogRow {
            at_ms: crate::domain::now_ms(),
            server_id: server_id.to_owned(),
            level,
            source,
            message,
        };
        if self.live.receiver_count() > 0 {
            let entry = LogEntry {
                at_ms: row.at_ms,
                key: String::new(),
                level: level.to_owned(),
                source: source.to_owned(),
                message: row.message.clone(),
                method: None,
                tool: None,
                status: None,
                latency_ms: None,
                request_id: None,
            };
            self.offer(&row.server_id, &entry);
        }
        self.queue.record(row);
    }

    /// Offers an access-log entry to live tails (it is stored by the access log itself).
    pub fn access(&self, row: &RequestLogRow) {
        if self.live.receiver_count() == 0 {
            return;
        }
        let entry = LogEntry {
            at_ms: row.at_ms,
            key: String::new(),
            level: access_level(row.status).to_owned(),
            source: "access".into(),
            message: access_message(row),
            method: row.method.clone(),
            tool: row.tool.clone(),
            status: Some(i64::from(row.status)),
            latency_ms: Some(row.latency_ms),
            request_id: row.request_id.clone(),
        };
        self.offer(&row.server_id, &entry);
    }

    fn offer(&self, server_id: &str, entry: &LogEntry) {
        let _ = self.live.send(Arc::new(LiveEntry {
            server_id: server_id.to_owned(),
            rank: level_rank(&entry.level).unwrap_or(1),
            message: entry.message.clone(),
            json: entry_json(entry),
        }));
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<LiveEntry>> {
        self.live.subscribe()
    }
}

/// The level an access-log entry gets: the same rule as the stored log's query.
fn access_level(status: u16) -> &'static str {
    match status {
        500.. => "error",
        400..=499 => "warn",
        _ => "info",
    }
}

/// The same text the stored log's query builds in SQL.
fn access_message(r: &RequestLogRow) -> String {
    let mut m = r.method.clone().unwrap_or_else(|| "request".into());
    if let Some(t) = &r.tool {
        m.push(' ');
        m.push_str(t);
    }
    m.push_str(&format!(" -> {}", r.status));
    if let Some(f) = r.auth_failure {
        m.push_str(&format!(" ({f})"));
    }
    if let Some(f) = &r.refusal {
        m.push_str(&format!(" ({f})"));
    }
    m.push_str(&format!(" {:.1} ms", r.latency_ms));
    m
}

/// An entry as the API shows it.
pub fn entry_json(e: &LogEntry) -> Value {
    let mut v = json!({
        "id": if e.key.is_empty() { Value::Null } else { Value::from(e.key.clone()) },
        "timestamp": crate::domain::rfc3339_ms(e.at_ms),
        "level": e.level,
        "source": e.source,
        "message": e.message,
    });
    if e.source == "access" {
        v["method"] = json!(e.method);
        v["tool"] = json!(e.tool);
        v["status"] = json!(e.status);
        v["latencyMs"] = json!(e.latency_ms.map(|l| (l * 100.0).round() / 100.0));
        v["requestId"] = json!(e.request_id);
    }
    v
}
