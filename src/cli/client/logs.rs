//! `ezforge logs`: the latest page of a server's log, then (`--follow`) its live stream.

use std::collections::HashSet;
use std::io::{ErrorKind, Write};

use anyhow::{Context, bail};
use futures_util::StreamExt;
use serde_json::Value;

use super::api::{Api, STREAM_IDLE_TIMEOUT, seg};
use super::args::LogsArgs;
use super::ctx::Ctx;
use super::output::{cell, clean};

/// A stream line longer than this is not an ezforge log stream.
const MAX_LINE: usize = 1024 * 1024;

pub async fn logs(ctx: &Ctx, args: &LogsArgs) -> anyhow::Result<()> {
    let api = ctx.api()?;
    let mut filter = Vec::new();
    if let Some(l) = &args.level {
        filter.push(("level", l.clone()));
    }
    if let Some(s) = &args.search {
        filter.push(("search", s.clone()));
    }
    // Subscribe before reading the page, so that nothing logged in between is missed; what the
    // page already shows is skipped when the stream repeats it. Live entries carry no id (only
    // stored ones do), so a repeat is recognised by its content.
    let stream = if args.follow {
        Some(
            api.stream(
                &format!("/servers/{}/logs/stream", seg(&args.server)),
                &filter,
            )
            .await?,
        )
    } else {
        None
    };
    let mut query = filter.clone();
    if let Some(n) = args.limit {
        query.push(("limit", n.to_string()));
    }
    let page = api
        .get_with(&format!("/servers/{}/logs", seg(&args.server)), &query)
        .await?;
    let Value::Array(entries) = page else {
        bail!("unexpected answer from the server: expected a list of log entries");
    };
    let mut out = std::io::stdout().lock();
    let Some(seen) = print_page(&mut out, ctx.json, &entries, stream.is_some())? else {
        return Ok(());
    };
    if entries.is_empty() && stream.is_none() && !ctx.json {
        writeln!(out, "No log entries for server {}.", clean(&args.server)).ok();
    }
    let Some(res) = stream else {
        return Ok(());
    };
    follow(&api, res, seen, &mut out, ctx.json).await
}

/// Prints the page oldest first (the API answers newest first). The entries printed, as
/// [`entry_key`]s when `following` (else none); `None` once stdout is closed.
fn print_page(
    out: &mut impl Write,
    json: bool,
    entries: &[Value],
    following: bool,
) -> anyhow::Result<Option<HashSet<String>>> {
    let mut seen = HashSet::new();
    for e in entries.iter().rev() {
        if following {
            seen.insert(entry_key(e));
        }
        if !emit(out, json, e)? {
            return Ok(None);
        }
    }
    Ok(Some(seen))
}

/// Prints the live stream's log events until it ends or stdout is closed, skipping those the
/// page already showed (`seen`) and warning of entries the server skipped.
async fn follow(
    api: &Api,
    res: reqwest::Response,
    mut seen: HashSet<String>,
    out: &mut impl Write,
    json: bool,
) -> anyhow::Result<()> {
    let mut body = res.bytes_stream();
    let mut sse = SseParser::default();
    while let Some(chunk) = body.next().await {
        let chunk = chunk
            .map_err(|e| api.transport(e, STREAM_IDLE_TIMEOUT))
            .context("the log stream broke off")?;
        for frame in sse.push(&chunk)? {
            let event = match frame {
                Frame::Event(e) if e.event == "log" => e,
                Frame::Event(_) => continue,
                // `: 12 entries skipped (the tail fell behind)`; keepalives say nothing.
                Frame::Comment(c) if c.contains("skipped") => {
                    eprintln!("warning: {}", clean(c.trim()));
                    continue;
                }
                Frame::Comment(_) => continue,
            };
            let Ok(e) = serde_json::from_str::<Value>(&event.data) else {
                eprintln!("warning: skipping a log event that is not JSON");
                continue;
            };
            if !seen.is_empty() && seen.remove(&entry_key(&e)) {
                continue;
            }
            if !emit(out, json, &e)? {
                return Ok(());
            }
        }
    }
    eprintln!("The log stream ended (the server closed it).");
    Ok(())
}

/// What makes an entry the same in the page (stored, with an id) and on the stream (live,
/// without one).
fn entry_key(e: &Value) -> String {
    ["timestamp", "level", "source", "message"]
        .iter()
        .map(|k| e.get(k).map(Value::to_string).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\u{0}")
}

/// Writes one entry; `Ok(false)` once stdout is closed (`ezforge logs -f | head`).
fn emit(out: &mut impl Write, json: bool, e: &Value) -> anyhow::Result<bool> {
    let line = if json { e.to_string() } else { log_line(e) };
    match writeln!(out, "{line}").and_then(|()| out.flush()) {
        Ok(()) => Ok(true),
        Err(err) if err.kind() == ErrorKind::BrokenPipe => Ok(false),
        Err(err) => Err(err).context("cannot write to stdout"),
    }
}

/// `2026-01-15T10:00:00.123Z  INFO  access   tools/call get_weather 200 12ms`: timestamp, level,
/// source, message; an access entry's method, tool, status and latency when the message does
/// not already say them.
fn log_line(e: &Value) -> String {
    let mut message = clean(e.get("message").and_then(Value::as_str).unwrap_or_default());
    if e.get("source").and_then(Value::as_str) == Some("access") && message.is_empty() {
        let parts: Vec<String> = ["method", "tool", "status"]
            .iter()
            .map(|k| cell(e, k))
            .filter(|v| v != "-")
            .chain(
                e.get("latencyMs")
                    .filter(|v| v.is_number())
                    .map(|v| format!("{v}ms")),
            )
            .collect();
        message = parts.join(" ");
    }
    format!(
        "{}  {:<5}  {:<7}  {}",
        cell(e, "timestamp"),
        cell(e, "level").to_uppercase(),
        cell(e, "source"),
        message
    )
}

/// What a stream of server-sent events carries.
#[derive(Debug, PartialEq)]
pub enum Frame {
    Event(SseEvent),
    /// A `:` line, without the colon.
    Comment(String),
}

/// One server-sent event.
#[derive(Debug, PartialEq)]
pub struct SseEvent {
    /// The `event:` field; `message` when there was none.
    pub event: String,
    /// The `data:` lines, joined by `\n`.
    pub data: String,
}

/// Reads `text/event-stream` as it arrives in chunks of any size (a line, or a UTF-8
/// character, may be cut between two chunks).
#[derive(Default)]
pub struct SseParser {
    line: Vec<u8>,
    event: String,
    data: Option<String>,
}

impl SseParser {
    /// The events (and comments) the chunk completes.
    pub fn push(&mut self, chunk: &[u8]) -> anyhow::Result<Vec<Frame>> {
        let mut frames = Vec::new();
        for &b in chunk {
            if b != b'\n' {
                if self.line.len() >= MAX_LINE {
                    bail!("a line of the event stream is longer than {MAX_LINE} bytes");
                }
                self.line.push(b);
                continue;
            }
            let mut line = std::mem::take(&mut self.line);
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let line = String::from_utf8_lossy(&line);
            if let Some(f) = self.field(&line) {
                frames.push(f);
            }
        }
        Ok(frames)
    }

    /// Takes one line; a blank line dispatches the event gathered so far.
    fn field(&mut self, line: &str) -> Option<Frame> {
        if line.is_empty() {
            let event = std::mem::take(&mut self.event);
            let data = self.data.take()?;
            return Some(Frame::Event(SseEvent {
                event: if event.is_empty() {
                    "message".to_owned()
                } else {
                    event
                },
                data,
            }));
        }
        if let Some(comment) = line.strip_prefix(':') {
            return Some(Frame::Comment(comment.to_owned()));
        }
        let (name, value) = match line.split_once(':') {
            Some((n, v)) => (n, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match name {
            "event" => self.event = value.to_owned(),
            "data" => match &mut self.data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => self.data = Some(value.to_owned()),
            },
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ev(event: &str, data: &str) -> Frame {
        Frame::Event(SseEvent {
            event: event.into(),
            data: data.into(),
        })
    }

    fn comment(c: &str) -> Frame {
        Frame::Comment(c.into())
    }

    #[test]
    fn events_are_read_across_chunk_boundaries() {
        let stream = "event: log\ndata: {\"id\":\"1\"}\n\n: keepalive\n\nevent: log\r\ndata: {\"id\":\"2\"}\r\n\r\n";
        let whole = SseParser::default()
            .push(stream.as_bytes())
            .expect("parses");
        assert_eq!(
            whole,
            [
                ev("log", r#"{"id":"1"}"#),
                comment(" keepalive"),
                ev("log", r#"{"id":"2"}"#)
            ]
        );
        // Byte by byte: the same events.
        let mut p = SseParser::default();
        let mut bytewise = Vec::new();
        for b in stream.as_bytes() {
            bytewise.extend(p.push(&[*b]).expect("parses"));
        }
        assert_eq!(bytewise, whole);
    }

    #[test]
    fn a_character_cut_between_chunks_survives() {
        let bytes = "event: log\ndata: café\n\n".as_bytes();
        let cut = bytes.len() - 4; // inside the two bytes of 'é'
        let mut p = SseParser::default();
        let mut events = p.push(&bytes[..cut]).expect("parses");
        assert!(events.is_empty());
        events.extend(p.push(&bytes[cut..]).expect("parses"));
        assert_eq!(events, [ev("log", "café")]);
    }

    #[test]
    fn data_lines_join_and_defaults_apply() {
        let events = SseParser::default()
            .push(b"data:a\ndata: b\n\nevent: log\n\nevent: other\ndata\n\n")
            .expect("parses");
        // No data: no event. `data` without a colon is an empty data line.
        assert_eq!(events, [ev("message", "a\nb"), ev("other", "")]);
    }

    #[test]
    fn an_endless_line_is_refused() {
        let mut p = SseParser::default();
        let chunk = vec![b'x'; MAX_LINE];
        assert!(p.push(&chunk).expect("at the limit").is_empty());
        assert!(p.push(b"x").is_err());
    }

    #[test]
    fn log_lines_show_time_level_source_and_message() {
        let e = json!({"id": "1", "timestamp": "2026-01-15T10:00:00.123Z", "level": "warn",
            "source": "process", "message": "restarting\u{1b}[2J"});
        assert_eq!(
            log_line(&e),
            "2026-01-15T10:00:00.123Z  WARN   process  restarting?[2J"
        );
        let e = json!({"timestamp": "t", "level": "info", "source": "access", "message": "",
            "method": "tools/call", "tool": "get_weather", "status": 200, "latencyMs": 12});
        assert_eq!(
            log_line(&e),
            "t  INFO   access   tools/call get_weather 200 12ms"
        );
    }

    #[test]
    fn a_stored_entry_and_its_live_copy_have_the_same_key() {
        let stored = json!({"id": "log_1", "timestamp": "2026-01-15T10:00:00.123Z",
            "level": "info", "source": "process", "message": "listening"});
        let live = json!({"id": null, "timestamp": "2026-01-15T10:00:00.123Z",
            "level": "info", "source": "process", "message": "listening"});
        assert_eq!(entry_key(&stored), entry_key(&live));
        let later = json!({"id": null, "timestamp": "2026-01-15T10:00:00.124Z",
            "level": "info", "source": "process", "message": "listening"});
        assert_ne!(entry_key(&stored), entry_key(&later));
    }

    #[test]
    fn a_closed_stdout_ends_the_output_quietly() {
        struct Closed;
        impl Write for Closed {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        assert!(!emit(&mut Closed, true, &json!({"id": "1"})).expect("no error"));
        let mut buf = Vec::new();
        assert!(emit(&mut buf, true, &json!({"id": "1"})).expect("written"));
        assert_eq!(buf, b"{\"id\":\"1\"}\n");
    }
}
