//! `ezforge deploy`, `ezforge rollback` and `ezforge servers status`: a server's deployments.

use anyhow::{Context, bail};
use reqwest::StatusCode;
use serde_json::{Map, Value, json};
use std::io::IsTerminal;

use super::api::{ApiError, seg};
use super::args::{DeployArgs, RollbackArgs};
use super::ctx::Ctx;
use super::output::{cell, clean, clean_lines, pairs, print_json, table, text};

/// The target column of `rollback --list` is cut to this many characters.
const TARGET_WIDTH: usize = 48;

pub async fn deploy(ctx: &Ctx, args: &DeployArgs) -> anyhow::Result<()> {
    let body = deploy_body(args)?;
    let api = ctx.api()?;
    if !ctx.json && std::io::stderr().is_terminal() {
        eprintln!("Deploying to {}…", clean(&args.server));
    }
    let path = format!("/servers/{}/deployments", seg(&args.server));
    let d = with_progress(ctx, &args.server, api.post_slow(&path, &body)).await?;
    finish(ctx, &args.server, &d, "Deployed")
}

/// Runs `job` (a deploy or rollback) while printing, on stderr, each step of the pipeline as
/// the server's log stream tells it. Without the stream (a key without `logs:read`), the job
/// runs all the same.
async fn with_progress(
    ctx: &Ctx,
    server: &str,
    job: impl std::future::Future<Output = anyhow::Result<Value>>,
) -> anyhow::Result<Value> {
    use futures_util::StreamExt;
    if ctx.json {
        return job.await;
    }
    let api = ctx.api()?;
    let path = format!("/servers/{}/logs/stream", seg(server));
    let Ok(res) = api.stream(&path, &[]).await else {
        return job.await;
    };
    let mut body = res.bytes_stream();
    let mut sse = super::logs::SseParser::default();
    tokio::pin!(job);
    loop {
        tokio::select! {
            done = &mut job => return done,
            chunk = body.next() => {
                let Some(Ok(chunk)) = chunk else {
                    return job.await;
                };
                for frame in sse.push(&chunk).unwrap_or_default() {
                    if let super::logs::Frame::Event(e) = frame
                        && let Ok(entry) = serde_json::from_str::<Value>(&e.data)
                        && matches!(entry["source"].as_str(), Some("deploy" | "process"))
                    {
                        let message = clean_lines(entry["message"].as_str().unwrap_or_default());
                        eprintln!("  {}", message.replace('\n', "\n    "));
                    }
                }
            }
        }
    }
}

pub async fn rollback(ctx: &Ctx, args: &RollbackArgs) -> anyhow::Result<()> {
    let Some(body) = rollback_body(args)? else {
        return list(ctx, &args.server).await;
    };
    let api = ctx.api()?;
    if !ctx.json && std::io::stderr().is_terminal() {
        eprintln!("Rolling back {}…", clean(&args.server));
    }
    let path = format!("/servers/{}/rollback", seg(&args.server));
    let d = with_progress(ctx, &args.server, api.post_slow(&path, &body)).await?;
    finish(ctx, &args.server, &d, "Rolled back")
}

/// Prints the deployment a deploy or rollback answered with; a failed one is an error, so that
/// the exit status says whether the new version passed its health check.
fn finish(ctx: &Ctx, server: &str, d: &Value, done: &str) -> anyhow::Result<()> {
    let failed = is_failure(d);
    if ctx.json {
        print_json(d)?;
    } else {
        if !failed {
            println!(
                "{done} server {}: version {} is {}.",
                clean(server),
                cell(d, "version"),
                cell(d, "status")
            );
        }
        print!("{}", pairs(&deployment_items(d)));
    }
    if failed {
        let why = d
            .get("errorMessage")
            .and_then(Value::as_str)
            .map(clean_lines)
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| "no reason given".to_owned());
        // With rollback off the failed version takes the traffic anyway.
        let serving = if d.get("active").and_then(Value::as_bool) == Some(true) {
            " (it serves anyway: rollback was off)"
        } else {
            ""
        };
        bail!(
            "deployment version {} of {} failed: {why}{serving}",
            cell(d, "version"),
            clean(server),
        );
    }
    Ok(())
}

/// The deployment's pipeline failed. (`rolled_back` is not a failure: it marks the deployment
/// that a rollback replaced.)
fn is_failure(d: &Value) -> bool {
    d.get("status").and_then(Value::as_str) == Some("failed")
}

/// `key  value` lines describing one deployment.
fn deployment_items(d: &Value) -> Vec<(&'static str, String)> {
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

/// The `POST …/deployments` body the flags describe.
fn deploy_body(args: &DeployArgs) -> anyhow::Result<Value> {
    let mut body = Map::new();
    match (&args.upstream, &args.command) {
        (Some(url), None) => {
            body.insert("upstreamUrl".into(), json!(url));
        }
        (None, Some(command)) => {
            let argv = split_command(command).context("--command")?;
            if argv.is_empty() {
                bail!("--command is empty: name the program to run");
            }
            body.insert("command".into(), json!(argv));
            let transport = if args.stdio { "stdio" } else { "http" };
            body.insert("transport".into(), json!(transport));
            if let Some(port) = args.port {
                body.insert("port".into(), json!(port));
            }
        }
        // clap's `target` group makes these unreachable from the command line.
        (Some(_), Some(_)) => bail!("pass either --upstream or --command, not both"),
        (None, None) => bail!("pass --upstream URL or --command \"PROGRAM ARGS…\""),
    }
    if let Some(label) = &args.label {
        body.insert("version".into(), json!(label));
    }
    if args.no_rollback {
        body.insert("rollbackOnHealthCheckFailure".into(), json!(false));
    }
    Ok(Value::Object(body))
}

/// The `POST …/rollback` body, or `None` for `--list`.
fn rollback_body(args: &RollbackArgs) -> anyhow::Result<Option<Value>> {
    match (args.list, args.version, &args.deployment) {
        (true, None, None) => Ok(None),
        (false, Some(v), None) => Ok(Some(json!({ "version": v }))),
        (false, None, Some(id)) => Ok(Some(json!({ "deploymentId": id }))),
        _ => bail!("pass one of --list, --version N or --deployment dep_…"),
    }
}

/// `rollback --list`: the server's deployments, newest first.
async fn list(ctx: &Ctx, server: &str) -> anyhow::Result<()> {
    let api = ctx.api()?;
    let deployments = api
        .list(&format!("/servers/{}/deployments", seg(server)))
        .await?;
    if ctx.json {
        return print_json(&Value::Array(deployments));
    }
    if deployments.is_empty() {
        println!(
            "No deployments for server {}. Deploy with `ezforge deploy {} --upstream URL`.",
            clean(server),
            clean(server)
        );
        return Ok(());
    }
    let rows: Vec<Vec<String>> = deployments
        .iter()
        .map(|d| {
            let active = if d.get("active").and_then(Value::as_bool) == Some(true) {
                "*".to_owned()
            } else {
                String::new()
            };
            vec![
                cell(d, "version"),
                cell(d, "label"),
                cell(d, "type"),
                cell(d, "status"),
                active,
                cell(d, "createdAt"),
                target_short(d.get("target").unwrap_or(&Value::Null)),
                first_line(&cell(d, "errorMessage")),
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &[
                "VERSION", "LABEL", "TYPE", "STATUS", "ACTIVE", "CREATED", "TARGET", "ERROR"
            ],
            &rows
        )
    );
    Ok(())
}

/// `servers status`: the server, the deployment serving it, its process, and the latest
/// deployment when that one failed.
pub async fn status(ctx: &Ctx, server: &str) -> anyhow::Result<()> {
    let api = ctx.api()?;
    let s = api.get(&format!("/servers/{}", seg(server))).await?;
    // Address the deployments by id: the slug the caller typed could be renamed in between.
    let key = s
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or(server)
        .to_owned();
    // An API key with servers:read but not deployments:read still gets the server's state.
    let deployments = match api
        .list(&format!("/servers/{}/deployments", seg(&key)))
        .await
    {
        Ok(d) => Ok(d),
        Err(e)
            if e.downcast_ref::<ApiError>()
                .is_some_and(|a| a.status == StatusCode::FORBIDDEN) =>
        {
            Err(format!("{e:#}"))
        }
        Err(e) => return Err(e),
    };
    let active_id = s.get("activeDeploymentId").and_then(Value::as_str);
    let (active, latest_failed) = match &deployments {
        Ok(list) => (
            list.iter()
                .find(|d| d.get("active").and_then(Value::as_bool) == Some(true))
                .or_else(|| {
                    active_id.and_then(|id| {
                        list.iter()
                            .find(|d| d.get("id").and_then(Value::as_str) == Some(id))
                    })
                }),
            // Newest first: the latest is the first.
            list.first().filter(|d| is_failure(d)),
        ),
        Err(_) => (None, None),
    };
    if ctx.json {
        return print_json(&json!({
            "server": s,
            "activeDeployment": active,
            "latestFailedDeployment": latest_failed,
        }));
    }
    println!("Server {} ({})", cell(&s, "name"), cell(&s, "slug"));
    let deployment = match (&deployments, active) {
        (Err(why), _) => format!("unknown: {}", first_line(why)),
        (Ok(_), Some(d)) => deployment_short(d),
        (Ok(_), None) => match active_id {
            Some(id) => clean(id),
            None => "none".to_owned(),
        },
    };
    print!(
        "{}",
        pairs(&[
            ("status", cell(&s, "status")),
            ("url", cell(&s, "url")),
            ("deployment", deployment),
            (
                "process",
                process_line(s.get("process").unwrap_or(&Value::Null))
            ),
        ])
    );
    if let Some(d) = latest_failed {
        println!("The latest deployment failed:");
        print!("{}", pairs(&deployment_items(d)));
    }
    Ok(())
}

/// `v3 (v1.2, deploy) http://…, since …`.
fn deployment_short(d: &Value) -> String {
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
fn process_line(p: &Value) -> String {
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
fn target_short(t: &Value) -> String {
    let long = target_long(t);
    if long.chars().count() <= TARGET_WIDTH {
        return long;
    }
    let mut cut: String = long.chars().take(TARGET_WIDTH - 1).collect();
    cut.push('…');
    cut
}

/// An argument as `split_command` would read it back: quoted when it holds blanks or quotes.
fn quote_arg(a: &str) -> String {
    if !a.is_empty()
        && !a
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '\'' | '"' | '\\'))
    {
        return a.to_owned();
    }
    format!("'{}'", a.replace('\'', r"'\''"))
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").to_owned()
}

/// Splits a command line into arguments the way a POSIX shell's quoting does, without any
/// expansion: blanks separate arguments; `'…'` keeps everything literally; `"…"` keeps
/// everything but `\"`, `\\`, `` \` `` and `\$`, which lose their backslash; outside quotes a
/// backslash makes the next character literal. `""` is an empty argument.
pub fn split_command(line: &str) -> anyhow::Result<Vec<String>> {
    let mut args = Vec::new();
    let mut current = String::new();
    // Whether an argument has begun: `''` makes an empty one, blanks alone none.
    let mut started = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if started {
                    args.push(std::mem::take(&mut current));
                    started = false;
                }
            }
            '\'' => {
                started = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => current.push(c),
                        None => bail!("unbalanced single quote in {line:?}"),
                    }
                }
            }
            '"' => {
                started = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '`' | '$')) => current.push(c),
                            // A backslash-newline inside double quotes continues the line.
                            Some('\n') => {}
                            Some(c) => {
                                current.push('\\');
                                current.push(c);
                            }
                            None => bail!("unbalanced double quote in {line:?}"),
                        },
                        Some(c) => current.push(c),
                        None => bail!("unbalanced double quote in {line:?}"),
                    }
                }
            }
            '\\' => match chars.next() {
                // A backslash-newline is a line continuation: it vanishes.
                Some('\n') => {}
                Some(c) => {
                    started = true;
                    current.push(c);
                }
                None => bail!("trailing backslash in {line:?}: escape it as \\\\"),
            },
            c => {
                started = true;
                current.push(c);
            }
        }
    }
    if started {
        args.push(current);
    }
    Ok(args)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(s: &str) -> Vec<String> {
        split_command(s).expect("splits")
    }

    #[test]
    fn blanks_separate_arguments() {
        assert_eq!(split("python3 srv.py"), ["python3", "srv.py"]);
        assert_eq!(
            split("  node\tserver.js \n --port  3001 "),
            ["node", "server.js", "--port", "3001"]
        );
        assert!(split("").is_empty());
        assert!(split("   ").is_empty());
    }

    #[test]
    fn quotes_keep_blanks_and_join_with_their_neighbours() {
        assert_eq!(split("echo 'a b' \"c d\""), ["echo", "a b", "c d"]);
        assert_eq!(split("--name='my server'x"), ["--name=my serverx"]);
        assert_eq!(split(r#"a"b"'c'd"#), ["abcd"]);
        assert_eq!(
            split("sh -c 'echo \"$HOME\" | wc'"),
            ["sh", "-c", "echo \"$HOME\" | wc"]
        );
        assert_eq!(split(r#"it"'"s"#), ["it's"]);
    }

    #[test]
    fn empty_quotes_are_empty_arguments() {
        assert_eq!(split("prog '' \"\""), ["prog", "", ""]);
        assert_eq!(split("''"), [""]);
    }

    #[test]
    fn backslashes_escape() {
        assert_eq!(split(r"a\ b c"), ["a b", "c"]);
        assert_eq!(split(r"\'x\' \\"), ["'x'", "\\"]);
        // Inside double quotes only " \ ` $ are escapable; other backslashes stay.
        assert_eq!(split(r#""a\"b" "c\\d" "e\nf""#), ["a\"b", "c\\d", "e\\nf"]);
        // Inside single quotes nothing is.
        assert_eq!(split(r"'a\b'"), ["a\\b"]);
        assert_eq!(split("a\\\nb"), ["ab"]);
    }

    #[test]
    fn no_expansion_happens() {
        assert_eq!(
            split("ls $HOME *.py > out"),
            ["ls", "$HOME", "*.py", ">", "out"]
        );
    }

    #[test]
    fn unbalanced_quotes_and_a_trailing_backslash_are_errors() {
        let err = |s: &str| split_command(s).expect_err(s).to_string();
        assert!(err("echo 'a b").starts_with("unbalanced single quote"));
        assert!(err("echo \"a b").starts_with("unbalanced double quote"));
        assert!(err(r#"echo "a\"#).starts_with("unbalanced double quote"));
        assert!(err("echo a\\").starts_with("trailing backslash"));
    }

    #[test]
    fn quoted_arguments_split_back_to_themselves() {
        let argv = ["prog", "a b", "it's", "", "x\"y", r"c:\dir", "plain"];
        let line = argv
            .iter()
            .map(|a| quote_arg(a))
            .collect::<Vec<_>>()
            .join(" ");
        assert_eq!(split(&line), argv);
    }

    fn deploy_args(upstream: Option<&str>, command: Option<&str>) -> DeployArgs {
        DeployArgs {
            server: "weather".into(),
            upstream: upstream.map(str::to_owned),
            command: command.map(str::to_owned),
            stdio: false,
            port: None,
            label: None,
            no_rollback: false,
        }
    }

    #[test]
    fn an_upstream_deploy_sends_the_url() {
        let mut a = deploy_args(Some("http://127.0.0.1:3001/mcp"), None);
        a.label = Some("v1.2".into());
        assert_eq!(
            deploy_body(&a).expect("body"),
            json!({"upstreamUrl": "http://127.0.0.1:3001/mcp", "version": "v1.2"})
        );
    }

    #[test]
    fn a_command_deploy_sends_argv_transport_and_port() {
        let mut a = deploy_args(None, Some("node 'my server.js'"));
        a.port = Some(3001);
        a.no_rollback = true;
        assert_eq!(
            deploy_body(&a).expect("body"),
            json!({
                "command": ["node", "my server.js"],
                "transport": "http",
                "port": 3001,
                "rollbackOnHealthCheckFailure": false,
            })
        );
        let mut a = deploy_args(None, Some("python3 srv.py"));
        a.stdio = true;
        assert_eq!(
            deploy_body(&a).expect("body"),
            json!({"command": ["python3", "srv.py"], "transport": "stdio"})
        );
    }

    #[test]
    fn a_bad_command_is_refused_before_sending() {
        let e = deploy_body(&deploy_args(None, Some("  ")))
            .expect_err("empty")
            .to_string();
        assert_eq!(e, "--command is empty: name the program to run");
        let e = deploy_body(&deploy_args(None, Some("echo 'x"))).expect_err("unbalanced");
        assert!(format!("{e:#}").starts_with("--command: unbalanced single quote"));
        assert!(deploy_body(&deploy_args(None, None)).is_err());
        assert!(deploy_body(&deploy_args(Some("http://h"), Some("x"))).is_err());
    }

    #[test]
    fn rollback_bodies() {
        let args = |list, version, deployment: Option<&str>| RollbackArgs {
            server: "s".into(),
            list,
            version,
            deployment: deployment.map(str::to_owned),
        };
        assert_eq!(rollback_body(&args(true, None, None)).expect("ok"), None);
        assert_eq!(
            rollback_body(&args(false, Some(2), None)).expect("ok"),
            Some(json!({"version": 2}))
        );
        assert_eq!(
            rollback_body(&args(false, None, Some("dep_1"))).expect("ok"),
            Some(json!({"deploymentId": "dep_1"}))
        );
        assert!(rollback_body(&args(false, None, None)).is_err());
        assert!(rollback_body(&args(true, Some(2), None)).is_err());
    }

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
