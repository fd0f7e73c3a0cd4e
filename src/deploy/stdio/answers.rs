//! What a stdio process writes, sorted and held: a response (kept as the bytes it wrote, for
//! the request waiting for it) or anything else (for the session's GET stream). Only the
//! envelope is read; the rest is checked to be JSON and passed on as written, as an HTTP
//! upstream's body is. The responses a server's requests wait for share a budget of bytes:
//! a process cannot make ezforge hold more than `MAX_HELD` of its answers at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use actix_web::HttpResponse;
use actix_web::web::Bytes;
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::Value;
use serde_json::value::RawValue;

/// The most bytes of one server's answers held at once, waiting for their requests.
pub const MAX_HELD: usize = 32 * 1024 * 1024;

/// The longest id a response is matched by (a request's id is small).
const MAX_ID: usize = 1024;

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
    let key = env
        .id
        .filter(|id| id.get().len() <= MAX_ID)
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

/// A response as the process wrote it, counted against its server's budget until dropped.
pub struct Answer {
    raw: Bytes,
    budget: Arc<AtomicUsize>,
}

impl Drop for Answer {
    fn drop(&mut self) {
        self.budget.fetch_sub(self.raw.len(), Relaxed);
    }
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
            budget: budget.clone(),
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
            "id": serde_json::from_str::<Value>(id_key).unwrap_or(Value::Null),
            "error": {
                "code": -32603,
                "message": format!("the MCP server's answer ({size} bytes) was dropped: its answers waiting for their requests passed {MAX_HELD} bytes"),
            },
        });
        let raw = error.to_string();
        budget.fetch_add(raw.len(), Relaxed);
        Answer {
            raw: Bytes::from(raw),
            budget: budget.clone(),
        }
    }
}

/// A POST's answer: 202 when nothing was asked, else the response (an array for a batch);
/// `new_session`: the id of the session it started (its header).
pub fn respond(
    answers: Vec<Answer>,
    batch: bool,
    new_session: Option<(&str, &str)>,
) -> HttpResponse {
    let mut res = if answers.is_empty() {
        HttpResponse::Accepted()
    } else {
        HttpResponse::Ok()
    };
    if let Some(header) = new_session {
        res.insert_header(header);
    }
    if answers.is_empty() {
        return res.finish();
    }
    res.content_type("application/json");
    if answers.len() == 1 && !batch {
        return res.body(answers[0].raw.clone());
    }
    let len = answers.iter().map(|a| a.raw.len() + 1).sum::<usize>() + 1;
    let mut body = Vec::with_capacity(len);
    body.push(b'[');
    for (i, a) in answers.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(&a.raw);
    }
    body.push(b']');
    res.body(body)
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
        assert!(matches!(classify("starting up"), Message::NotJson));
        // Keys twice are not a response to be matched.
        let twice = r#"{"jsonrpc":"2.0","id":1,"id":2,"result":{}}"#;
        assert!(!matches!(classify(twice), Message::Response(_)));
    }

    #[test]
    fn the_budget_holds_no_more_than_its_limit_and_is_given_back() {
        let budget = Arc::new(AtomicUsize::new(0));
        let big = "x".repeat(MAX_HELD / 2);
        let a = Answer::hold(&big, &budget).expect("fits");
        let b = Answer::hold(&big, &budget).expect("fits");
        assert!(Answer::hold("y", &budget).is_none());
        let stand_in = Answer::too_large("7", 3, &budget);
        assert!(String::from_utf8_lossy(&stand_in.raw).contains("\"id\":7"));
        drop((a, b, stand_in));
        assert_eq!(budget.load(Relaxed), 0);
    }
}
