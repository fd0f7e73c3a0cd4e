//! How a deployment reads in the terminal: its `key  value` lines, one-line summary, target and
//! the server's process.

use serde_json::Value;

use super::super::output::{cell, clean, text};
use super::shell_words::quote_arg;

/// The target column of `rollback --list` is cut to this many characters.
const TARGET_WIDTH: usize = 48;

/// The deployment's pipeline failed. (`rolled_back` is not a failure: it marks the deployment
/// that a rollback replaced.)
pub(super) fn is_failure(d: &Value) -> bool {
    d.get("status").and_then(Value::as_str) == Some("failed")
}

/// `key  value` lines describing one deployment.
pub(super) fn deployment_items(d: &Value) -> Vec<(&'static str, String)> {
    let mut items = vec![
        ("id", cell(d, "id")),
        ("version", cell(d, "version")),
        ("label", cell(d, "label")),
        ("type", cell(d, "type")),
        ("status", cell(d, "status")),
        ("active", cell(d, "active")),
        (
            "target",
            target_long(d.get("target").unwrap_or(&Value::Null)),
        ),
        ("created", cell(d, "createdAt")),
        ("finished", cell(d, "finishedAt")),
    ];
    if d.get("errorMessage").is_some_and(|e| !e.is_null()) {
        items.push(("error", cell(d, "errorMessage")));
    }
    items
}

/// `v3 (v1.2, deploy) http://…, since …`.
pub(super) fn deployment_short(d: &Value) -> String {
    let mut out = format!("v{}", cell(d, "version"));
    let label = cell(d, "label");
    if label != "-" {
        out.push_str(&format!(" ({label}, {})", cell(d, "type")));
    } else {
        out.push_str(&format!(" ({})", cell(d, "type")));
    }
    out.push_str(&format!(
        " {}",
        target_long(d.get("target").unwrap_or(&Value::Null))
    ));
    let since = d
        .get("finishedAt")
        .filter(|v| !v.is_null())
        .or_else(|| d.get("createdAt"));
    if let Some(t) = since.filter(|v| !v.is_null()) {
        out.push_str(&format!(", since {}", text(t)));
    }
    out
}

/// The server object's `process`: `running, pid 4242, 1 restart, since …, 3 sessions`.
pub(super) fn process_line(p: &Value) -> String {
    if !p.is_object() {
        return "-".to_owned();
    }
    let mut parts = vec![cell(p, "state")];
    if let Some(pid) = p.get("pid").filter(|v| !v.is_null()) {
        parts.push(format!("pid {}", text(pid)));
    }
    if let Some(n) = p.get("restarts").and_then(Value::as_u64) {
        parts.push(format!("{n} restart{}", if n == 1 { "" } else { "s" }));
    }
    if let Some(t) = p.get("startedAt").filter(|v| !v.is_null()) {
        parts.push(format!("since {}", text(t)));
    }
    if let Some(n) = p.get("sessions").and_then(Value::as_u64) {
        parts.push(format!("{n} session{}", if n == 1 { "" } else { "s" }));
    }
    parts.join(", ")
}

/// A deployment target in full: the upstream URL, or `stdio: prog args` / `http :port: prog …`.
fn target_long(t: &Value) -> String {
    if let Some(url) = t.get("upstreamUrl").filter(|v| !v.is_null()) {
        return text(url);
    }
    let Some(argv) = t.get("command").and_then(Value::as_array) else {
        return text(t);
    };
    let command = argv
        .iter()
        .map(|a| quote_arg(&text(a)))
        .collect::<Vec<_>>()
        .join(" ");
    let transport = t.get("transport").and_then(Value::as_str).unwrap_or("http");
    match t.get("port").and_then(Value::as_u64) {
        Some(port) => format!("{} :{port}: {command}", clean(transport)),
        None => format!("{}: {command}", clean(transport)),
    }
}

/// `target_long` cut to the table's width.
pub(super) fn target_short(t: &Value) -> String {
    let long = target_long(t);
    if long.chars().count() <= TARGET_WIDTH {
        return long;
    }
    let mut cut: String = long.chars().take(TARGET_WIDTH - 1).collect();
    cut.push('…');
    cut
}

pub(super) fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn targets_are_shown_short_and_long() {
        assert_eq!(
            target_long(&json!({"upstreamUrl": "http://127.0.0.1:3001/mcp"})),
            "http://127.0.0.1:3001/mcp"
        );
        assert_eq!(
            target_long(
                &json!({"command": ["python3", "my srv.py"], "transport": "stdio", "port": null})
            ),
            "stdio: python3 'my srv.py'"
        );
        assert_eq!(
            target_long(&json!({"command": ["node", "s.js"], "transport": "http", "port": 3001})),
            "http :3001: node s.js"
        );
        let long = json!({"command": ["npx", "-y", "@modelcontextprotocol/server-filesystem", "/srv/data"], "transport": "stdio"});
        let short = target_short(&long);
        assert_eq!(short.chars().count(), TARGET_WIDTH);
        assert!(short.starts_with("stdio: npx -y @modelcontextprotocol/"));
        assert!(short.ends_with('…'));
    }

    #[test]
    fn process_and_failures_read_the_server_object() {
        assert_eq!(process_line(&Value::Null), "-");
        assert_eq!(
            process_line(&json!({"state": "running", "pid": 4242, "restarts": 1,
                "startedAt": "2026-01-15T10:00:00Z", "sessions": 3})),
            "running, pid 4242, 1 restart, since 2026-01-15T10:00:00Z, 3 sessions"
        );
        assert_eq!(
            process_line(&json!({"state": "backoff", "pid": null, "restarts": 5,
                "startedAt": null, "sessions": null})),
            "backoff, 5 restarts"
        );
        assert!(is_failure(&json!({"status": "failed"})));
        assert!(!is_failure(&json!({"status": "rolled_back"})));
        assert!(!is_failure(&json!({"status": "running"})));
    }
}
