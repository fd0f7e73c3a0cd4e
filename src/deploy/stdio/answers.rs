//! What a stdio process writes, sorted and held: a response (kept as the bytes it wrote, for
//! the request waiting for it) or anything else (for the session's GET stream). Only the
//! envelope is read; the rest is checked to be JSON and passed on as written, as an HTTP
//! upstream's body is. A server's answers share a budget of bytes until their clients have read
//! them: neither the process nor clients that do not read can make ezforge hold more than
//! `MAX_HELD` of them at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use actix_web::HttpResponse;
use actix_web::web::Bytes;
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::Value;
use serde_json::value::RawValue;

use super::{MAX_QUEUED, Session};
use crate::deploy::process::{Launch, OutputLimit};

/// The most bytes of one server's answers held at once, waiting for their requests.
pub const MAX_HELD: usize = 32 * 1024 * 1024;

/// A message's envelope: the fields that say what it is.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(default)]
    method: Present,
    #[serde(default)]
    result: Present,
    #[serde(default)]
    error: Present,
}

/// Whether a field is there at all (`null` included: `"result": null` is a response).
#[derive(Default)]
struct Present(bool);

impl<'de> Deserialize<'de> for Present {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        IgnoredAny::deserialize(d).map(|_| Present(true))
    }
}

/// What one line of a process's output is.
pub enum Message {
    /// A response, with the key of the id it answers.
    Response(String),
    /// Anything else that is JSON: a notification, a request to the client, a response to
    /// nothing.
    Other,
    /// Not JSON (a log line on stdout).
    NotJson,
}

/// Sorts one line (trimmed, not empty).
pub fn classify(text: &str) -> Message {
    let Ok(env) = serde_json::from_str::<Envelope<'_>>(text) else {
        // An array, or a malformed object: JSON all the same, or not.
        return match serde_json::from_str::<IgnoredAny>(text) {
            Ok(_) => Message::Other,
            Err(_) => Message::NotJson,
        };
    };
    // An id is a string or a number (read whole: the line is bounded); nothing else is the id
    // of a request.
    let key = env
        .id
        .filter(|id| matches!(id.get().as_bytes().first(), Some(b'"' | b'-' | b'0'..=b'9')))
        .and_then(|id| serde_json::from_str::<Value>(id.get()).ok())
        .map(|id| id_key(&id));
    match key {
        Some(key) if !env.method.0 && (env.result.0 || env.error.0) => Message::Response(key),
        _ => Message::Other,
    }
}

/// The key a JSON-RPC id is matched by.
pub fn id_key(id: &Value) -> String {
    id.to_string()
}

/// Bytes counted against a server's budget until dropped.
struct Held {
    n: usize,
    budget: Arc<AtomicUsize>,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.budget.fetch_sub(self.n, Relaxed);
    }
}

/// A response as the process wrote it, counted against its server's budget until it has been
/// sent (or dropped).
pub struct Answer {
    raw: Bytes,
    held: Held,
}

impl Answer {
    /// `raw`, if the budget has room for it.
    pub fn hold(raw: &str, budget: &Arc<AtomicUsize>) -> Option<Answer> {
        let n = raw.len();
        if budget.fetch_add(n, Relaxed) + n > MAX_HELD {
            budget.fetch_sub(n, Relaxed);
            return None;
        }
        Some(Answer {
            raw: Bytes::copy_from_slice(raw.as_bytes()),
            held: Held {
                n,
                budget: budget.clone(),
            },
        })
    }

    /// The answer read whole (for the health check's few small ones).
    pub fn value(&self) -> Value {
        serde_json::from_slice(&self.raw).unwrap_or(Value::Null)
    }

    /// In place of an answer the budget had no room for: an error for the same id.
    pub fn too_large(id_key: &str, size: usize, budget: &Arc<AtomicUsize>) -> Answer {
        let error = serde_json::json!({
            "jsonrpc": "2.0",
            // Not repeated when long: the stand-in stays small.
            "id": (id_key.len() <= 1024)
                .then(|| serde_json::from_str::<Value>(id_key).ok())
                .flatten()
                .unwrap_or(Value::Null),
            "error": {
                "code": -32603,
                "message": format!("the MCP server's answer ({size} bytes) was dropped: its answers waiting for their requests or their clients passed {MAX_HELD} bytes"),
            },
        });
        let raw = error.to_string();
        budget.fetch_add(raw.len(), Relaxed);
        Answer {
            held: Held {
                n: raw.len(),
                budget: budget.clone(),
            },
            raw: Bytes::from(raw),
        }
    }
}

/// A POST's answer, ready to send: 202 when nothing was asked, else the responses (an array for
/// a batch). Its bytes stay counted against the budget until the client has taken them (or gone
/// away): a client that does not read cannot make ezforge hold more than the budget either.
pub struct Answered {
    session: Option<(&'static str, String)>,
    body: Option<Bytes>,
    held: Vec<Held>,
}

impl Answered {
    /// `new_session`: the header naming the session this POST started.
    pub fn new(
        answers: Vec<Answer>,
        batch: bool,
        new_session: Option<(&'static str, String)>,
    ) -> Self {
        let (body, held) = match answers.len() {
            0 => (None, Vec::new()),
            1 if !batch => {
                let Some(Answer { raw, held }) = answers.into_iter().next() else {
                    return Self::new(Vec::new(), batch, new_session);
                };
                (Some(raw), vec![held])
            }
            _ => {
                let len = answers.iter().map(|a| a.raw.len() + 1).sum::<usize>() + 1;
                let mut body = Vec::with_capacity(len);
                let mut held = Vec::with_capacity(answers.len());
                body.push(b'[');
                for (i, a) in answers.into_iter().enumerate() {
                    if i > 0 {
                        body.push(b',');
                    }
                    body.extend_from_slice(&a.raw);
                    held.push(a.held);
                }
                body.push(b']');
                (Some(Bytes::from(body)), held)
            }
        };
        Answered {
            session: new_session,
            body,
            held,
        }
    }

    /// The body (empty for a 202).
    pub fn body(&self) -> &[u8] {
        self.body.as_deref().unwrap_or_default()
    }

    /// The response. Its client has `patience`, and then a second per 64 KiB, to take the
    /// body: past that the rest is dropped with its count and the connection closed, so a
    /// client that stops reading holds the budget no longer than that.
    pub fn into_response(self, patience: Duration) -> HttpResponse {
        let mut res = match self.body {
            Some(_) => HttpResponse::Ok(),
            None => HttpResponse::Accepted(),
        };
        if let Some(header) = self.session {
            res.insert_header(header);
        }
        let Some(rest) = self.body else {
            return res.finish();
        };
        let size = rest.len();
        let deadline =
            tokio::time::Instant::now() + patience + Duration::from_secs((size / PIECE) as u64);
        // Handed over a piece at a time as the connection takes them (capacity 1).
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(1);
        tokio::spawn(feed(rest, self.held, tx, deadline));
        let stream = futures_util::stream::unfold((rx, 0), move |(mut rx, sent)| async move {
            match rx.recv().await {
                Some(piece) => {
                    let sent = sent + piece.len();
                    Some((Ok(piece), (rx, sent)))
                }
                // Cut short: an error, so that the connection is closed, not left waiting.
                None if sent < size => Some((
                    Err(std::io::Error::other(
                        "the client took too long to read its answer",
                    )),
                    (rx, size),
                )),
                None => None,
            }
        });
        res.content_type("application/json")
            .no_chunking(size as u64)
            .streaming(stream)
    }
}

/// The pieces a body is handed out in.
const PIECE: usize = 64 * 1024;

/// Hands `rest` to the connection a piece at a time until `deadline`; its count (`held`) goes
/// with the last piece, or with the rest once the deadline passes or the client has gone.
async fn feed(
    mut rest: Bytes,
    held: Vec<Held>,
    tx: tokio::sync::mpsc::Sender<Bytes>,
    deadline: tokio::time::Instant,
) {
    while !rest.is_empty() {
        let piece = rest.split_to(rest.len().min(PIECE));
        match tokio::time::timeout_at(deadline, tx.send(piece)).await {
            Ok(Ok(())) => {}
            _ => break,
        }
    }
    drop(held);
}

/// One line from the process: a response goes to the request waiting for it; anything else
/// to the session's GET stream, if open. Lines that are not JSON are logged as output.
pub(super) fn route(session: &Session, launch: &Launch, line: &[u8], junk: &mut OutputLimit) {
    let text = String::from_utf8_lossy(line);
    let text = text.trim();
    if text.is_empty() {
        return;
    }
    let key = match classify(text) {
        Message::Response(key) => Some(key),
        Message::Other => None,
        Message::NotJson => {
            if let Some(n) = junk.take_report() {
                launch.log(
                    "warn",
                    format!("{n} lines of stdout that were not JSON-RPC dropped"),
                );
            }
            if !junk.allow() {
                return;
            }
            let mut shown = text.to_owned();
            shown.truncate(shown.floor_char_boundary(1024));
            launch.log("warn", format!("stdout (not JSON-RPC): {shown}"));
            return;
        }
    };
    if let Some(key) = key
        && let Some(tx) = session.lock_pending().remove(&key)
    {
        let answer = Answer::hold(text, &session.held).unwrap_or_else(|| {
            launch.log(
                "warn",
                format!(
                    "an answer of {} bytes was dropped: this server's answers waiting for their requests passed {} bytes",
                    text.len(),
                    MAX_HELD
                ),
            );
            Answer::too_large(&key, text.len(), &session.held)
        });
        let _ = tx.send(answer);
        return;
    }
    let events = session
        .events
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    if let Some((tx, queued)) = events {
        // A reader slower than the process loses messages rather than holding them without
        // bound: at most MAX_QUEUED bytes wait for it (and 256 messages).
        let frame = format!("event: message\ndata: {text}\n\n");
        let len = frame.len();
        if queued.fetch_add(len, Relaxed) + len > MAX_QUEUED
            || tx.try_send(Bytes::from(frame)).is_err()
        {
            queued.fetch_sub(len, Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_envelope_decides() {
        for (line, want) in [
            (r#"{"jsonrpc":"2.0","id":1,"result":{}}"#, Some("1")),
            (r#"{"jsonrpc":"2.0","id":"a","result":null}"#, Some("\"a\"")),
            (
                r#"{"jsonrpc":"2.0","id":1.0,"error":{"code":1,"message":"x"}}"#,
                Some("1.0"),
            ),
            (r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#, None),
            (r#"{"jsonrpc":"2.0","method":"notifications/x"}"#, None),
            (r#"{"jsonrpc":"2.0","result":{}}"#, None),
        ] {
            match (classify(line), want) {
                (Message::Response(k), Some(w)) => assert_eq!(k, w, "{line}"),
                (Message::Other, None) => {}
                _ => panic!("{line}"),
            }
        }
        assert!(matches!(classify("[1,2]"), Message::Other));
        let object_id = r#"{"jsonrpc":"2.0","id":{"a":1},"result":{}}"#;
        assert!(matches!(classify(object_id), Message::Other));
        let long = format!(
            r#"{{"jsonrpc":"2.0","id":"{}","result":{{}}}}"#,
            "i".repeat(4096)
        );
        assert!(matches!(classify(&long), Message::Response(_)));
        assert!(matches!(classify("starting up"), Message::NotJson));
        // Keys twice are not a response to be matched.
        let twice = r#"{"jsonrpc":"2.0","id":1,"id":2,"result":{}}"#;
        assert!(!matches!(classify(twice), Message::Response(_)));
    }

    #[tokio::test]
    async fn the_budget_holds_no_more_than_its_limit_and_is_given_back() {
        let budget = Arc::new(AtomicUsize::new(0));
        let big = "x".repeat(MAX_HELD / 2);
        let a = Answer::hold(&big, &budget).expect("fits");
        let b = Answer::hold(&big, &budget).expect("fits");
        assert!(Answer::hold("y", &budget).is_none());
        let stand_in = Answer::too_large("7", 3, &budget);
        assert!(String::from_utf8_lossy(&stand_in.raw).contains("\"id\":7"));
        // Counted until the body made of them is gone.
        let answered = Answered::new(vec![a, b, stand_in], true, None);
        assert!(budget.load(Relaxed) > MAX_HELD);
        let res = answered.into_response(Duration::from_secs(60));
        assert!(budget.load(Relaxed) > MAX_HELD);
        drop(res);
        given_back(&budget).await;
    }

    /// Waits (a few scheduler turns) until the budget is all given back.
    async fn given_back(budget: &AtomicUsize) {
        for _ in 0..1000 {
            if budget.load(Relaxed) == 0 {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("{} bytes still counted", budget.load(Relaxed));
    }

    #[tokio::test]
    async fn a_body_nobody_reads_gives_its_count_back_after_its_time() {
        let budget = Arc::new(AtomicUsize::new(0));
        // Two pieces: the second waits for a reader that never comes.
        let big = "x".repeat(PIECE + 1);
        let a = Answer::hold(&big, &budget).expect("fits");
        let res = Answered::new(vec![a], false, None).into_response(Duration::ZERO);
        assert!(budget.load(Relaxed) > 0);
        // Its time: nothing waited for, plus a second for its one whole piece.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        given_back(&budget).await;
        drop(res);
    }
}
