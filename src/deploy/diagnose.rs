//! Why a deployment failed, in words an operator can act on: the reason, the program's last
//! lines of output, and a hint for the usual mistakes (a stdio server deployed as HTTP or the
//! other way round, the wrong port, a missing env var, a program the sandbox cannot see).

use super::spec::Transport;

/// Lines of a program's output kept for a failure's explanation.
pub const TAIL_LINES: usize = 12;

/// `failure`, with what the program printed last and the hints that fit.
pub fn explain(
    failure: &str,
    transport: Transport,
    port: Option<u16>,
    output: &[String],
) -> String {
    let mut text = failure.to_owned();
    if !output.is_empty() {
        text.push_str("\nits last output:");
        for line in output {
            text.push_str("\n  ");
            text.push_str(line);
        }
    }
    for h in hints(failure, transport, port, output) {
        text.push_str("\nhint: ");
        text.push_str(&h);
    }
    text
}

fn hints(failure: &str, transport: Transport, port: Option<u16>, output: &[String]) -> Vec<String> {
    let said = |words: &[&str]| {
        output.iter().any(|l| {
            let l = l.to_ascii_lowercase();
            words.iter().any(|w| l.contains(w))
        })
    };
    let mut out = Vec::new();
    let exited = failure.contains("exited") || failure.contains("ended before");
    match transport {
        Transport::Http => {
            if said(&["stdio", "standard input"]) && exited {
                out.push("its output speaks of stdio: a stdio MCP server is deployed with --stdio (\"transport\": \"stdio\")".into());
            } else if failure.contains("exited with status 0") {
                out.push("it exited without an error, as a stdio server does when its input closes: if it is one, deploy it with --stdio".into());
            }
            if failure.contains("did not accept connections") {
                let port = port.map_or("the port in $PORT".to_owned(), |p| format!("port {p}"));
                out.push(format!("it must listen on 127.0.0.1 at {port} (it is given PORT and HOST=127.0.0.1); a program that cannot be told its port is deployed with \"port\" set to the one it uses"));
            }
        }
        Transport::Stdio => {
            if exited && said(&["listening on", "listening at", "http://", "port"]) {
                out.push("its output speaks of a port: an HTTP MCP server is deployed without --stdio (it is then given PORT)".into());
            }
        }
    }
    if let Some(name) = missing_variable(output) {
        out.push(format!(
            "it may need the env var {name}: ezforge env set SERVER {name} --value-stdin"
        ));
    }
    if failure.contains("status 127") {
        out.push("the command was not found: it must be installed, on PATH, and readable by deployed programs (system paths, or deploy.sandbox.read_paths)".into());
    }
    if said(&[
        "permission denied",
        "operation not permitted",
        "eacces",
        "eperm",
    ]) {
        out.push("something was refused: deployed programs may read system paths and deploy.sandbox.read_paths, and write only their own directory ($HOME) and $TMPDIR".into());
    }
    out
}

/// An env var the output says is missing (`KeyError: 'API_KEY'`, `API_KEY is not set`,
/// `missing environment variable API_KEY`…).
fn missing_variable(output: &[String]) -> Option<String> {
    for line in output {
        let lower = line.to_ascii_lowercase();
        let about_env = lower.contains("environment variable")
            || lower.contains("env var")
            || lower.contains("keyerror")
            || lower.contains("not set")
            || lower.contains("is required")
            || lower.contains("missing");
        if !about_env {
            continue;
        }
        let name = line
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| {
                w.len() >= 3
                    && w.starts_with(|c: char| c.is_ascii_uppercase())
                    && w.chars()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
            })
            .find(|w| {
                !matches!(
                    *w,
                    "KEYERROR" | "ERROR" | "HTTP" | "MCP" | "JSON" | "PORT" | "HOST"
                )
            });
        if let Some(n) = name {
            return Some(n.to_owned());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(s: &[&str]) -> Vec<String> {
        s.iter().map(|l| (*l).to_owned()).collect()
    }

    #[test]
    fn a_stdio_server_deployed_as_http_is_named() {
        let out = lines(&["Secure MCP Filesystem Server running on stdio"]);
        let t = explain(
            "the process exited with status 0",
            Transport::Http,
            None,
            &out,
        );
        assert!(t.contains("its last output:\n  Secure MCP"), "{t}");
        assert!(t.contains("hint: its output speaks of stdio"), "{t}");
        let t = explain(
            "the process exited with status 0",
            Transport::Http,
            None,
            &[],
        );
        assert!(t.contains("deploy it with --stdio"), "{t}");
    }

    #[test]
    fn an_http_server_deployed_as_stdio_and_a_wrong_port_are_named() {
        let out = lines(&["Server listening on http://localhost:3001"]);
        let t = explain(
            "the process ended before answering initialize",
            Transport::Stdio,
            None,
            &out,
        );
        assert!(t.contains("deployed without --stdio"), "{t}");
        let out = lines(&["fixture-http: the PORT environment variable is required"]);
        let t = explain(
            "the process exited with status 2",
            Transport::Stdio,
            None,
            &out,
        );
        assert!(t.contains("deployed without --stdio"), "{t}");
        let t = explain(
            "the process did not accept connections on port 4100 within 30s",
            Transport::Http,
            Some(4100),
            &[],
        );
        assert!(t.contains("127.0.0.1 at port 4100"), "{t}");
    }

    #[test]
    fn a_missing_env_var_is_named() {
        for line in [
            "KeyError: 'WEATHER_API_KEY'",
            "Error: environment variable GITHUB_TOKEN is not set",
            "missing required env var OPENAI_API_KEY",
        ] {
            let t = explain(
                "the process exited with status 1",
                Transport::Http,
                None,
                &lines(&[line]),
            );
            let want = line
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .find(|w| w.ends_with("KEY") || w.ends_with("TOKEN"))
                .expect("a name");
            assert!(t.contains(&format!("env var {want}")), "{line}: {t}");
        }
        let t = explain(
            "the process exited with status 1",
            Transport::Http,
            None,
            &lines(&["all is well"]),
        );
        assert!(!t.contains("hint"), "{t}");
    }
}
