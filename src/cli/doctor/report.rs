//! What a doctor run found: one [`Check`] per line (`ok`, `warn` or `fail`, the reason, and for
//! what is not ok the fix), as text for people or JSON for scripts.

use std::fmt::Write;
use std::process::ExitCode;

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

impl Status {
    fn word(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "fail",
        }
    }
}

/// One check's verdict. `id` is stable (scripts match on it); `message` says what was seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub id: String,
    pub status: Status,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    pub fn ok(id: impl Into<String>, message: impl Into<String>) -> Check {
        Check {
            id: id.into(),
            status: Status::Ok,
            message: message.into(),
            fix: None,
        }
    }

    pub fn warn(
        id: impl Into<String>,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Check {
        Check::with_fix(id.into(), Status::Warn, message.into(), fix.into())
    }

    pub fn fail(
        id: impl Into<String>,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Check {
        Check::with_fix(id.into(), Status::Fail, message.into(), fix.into())
    }

    fn with_fix(id: String, status: Status, message: String, fix: String) -> Check {
        Check {
            id,
            status,
            message,
            fix: Some(fix),
        }
    }
}

/// Everything one run checked, about one target (a data directory, or an MCP server's URL).
#[derive(Debug, Serialize)]
pub struct Report {
    pub target: String,
    pub checks: Vec<Check>,
}

impl Report {
    pub fn new(target: impl Into<String>) -> Report {
        Report {
            target: target.into(),
            checks: Vec::new(),
        }
    }

    pub fn push(&mut self, check: Check) {
        self.checks.push(check);
    }

    pub fn count(&self, status: Status) -> usize {
        self.checks.iter().filter(|c| c.status == status).count()
    }

    /// 0 when nothing failed (warnings included), 1 otherwise.
    pub fn exit_code(&self) -> ExitCode {
        if self.count(Status::Fail) == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    }

    /// `ok    id  message`, `fail  id  message; fix: …`, aligned, then a count. What a remote
    /// server said is shown with its control characters escaped: it cannot move the cursor,
    /// clear the screen or fake a line of the report.
    pub fn text(&self) -> String {
        let width = self.checks.iter().map(|c| c.id.len()).max().unwrap_or(0);
        let mut out = format!("ezforge doctor: {}\n", printable(&self.target));
        for c in &self.checks {
            let _ = write!(
                out,
                "{:<4}  {:<width$}  {}",
                c.status.word(),
                printable(&c.id),
                printable(&c.message)
            );
            if let Some(fix) = &c.fix {
                let _ = write!(out, "; fix: {}", printable(fix));
            }
            out.push('\n');
        }
        let _ = writeln!(
            out,
            "{} ok, {} warn, {} fail",
            self.count(Status::Ok),
            self.count(Status::Warn),
            self.count(Status::Fail)
        );
        out
    }

    /// `{"target", "ok", "warn", "fail", "checks": [{"id", "status", "message", "fix"?}]}`.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "target": self.target,
            "ok": self.count(Status::Ok),
            "warn": self.count(Status::Warn),
            "fail": self.count(Status::Fail),
            "checks": self.checks,
        })
    }

    /// Prints the report (text or JSON) and gives the exit status.
    pub fn finish(&self, json: bool) -> ExitCode {
        if json {
            println!(
                "{}",
                serde_json::to_string_pretty(&self.json()).unwrap_or_default()
            );
        } else {
            print!("{}", self.text());
        }
        self.exit_code()
    }
}

/// `s` with control characters (escape sequences, new lines) escaped.
fn printable(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Report {
        let mut r = Report::new("https://mcp.example.com/mcp");
        r.push(Check::ok("url", "https"));
        r.push(Check::warn(
            "challenge.scope",
            "no scope",
            "add scope=\"…\"",
        ));
        r.push(Check::fail("as.pkce", "no S256", "advertise S256"));
        r
    }

    #[test]
    fn text_is_one_aligned_line_per_check_with_its_fix() {
        let text = sample().text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "ezforge doctor: https://mcp.example.com/mcp");
        assert_eq!(lines[1], "ok    url              https");
        assert_eq!(
            lines[2],
            "warn  challenge.scope  no scope; fix: add scope=\"…\""
        );
        assert_eq!(
            lines[3],
            "fail  as.pkce          no S256; fix: advertise S256"
        );
        assert_eq!(lines[4], "1 ok, 1 warn, 1 fail");
    }

    #[test]
    fn what_a_server_said_cannot_forge_lines_or_drive_the_terminal() {
        let mut r = Report::new("x");
        r.push(Check::fail(
            "as.issuer",
            "says \u{1b}[2K\rok    as.issuer\nfine",
            "f",
        ));
        let text = r.text();
        assert_eq!(text.lines().count(), 3, "{text}");
        assert!(!text.contains('\u{1b}') && !text.contains('\r'), "{text}");
        assert!(
            text.contains("says \\u{1b}[2K\\rok    as.issuer\\nfine"),
            "{text}"
        );
    }

    #[test]
    fn json_counts_and_lists_checks_and_a_fail_is_exit_status_1() {
        let r = sample();
        let v = r.json();
        assert_eq!(v["fail"], 1);
        assert_eq!(v["checks"][2]["status"], "fail");
        assert_eq!(v["checks"][2]["fix"], "advertise S256");
        assert!(v["checks"][0].get("fix").is_none());
        assert_eq!(r.exit_code(), ExitCode::FAILURE);
        let mut fine = Report::new("x");
        fine.push(Check::warn("a", "b", "c"));
        assert_eq!(fine.exit_code(), ExitCode::SUCCESS);
    }
}
