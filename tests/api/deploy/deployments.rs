//! Issue 8: deployments, supervised processes, the stdio bridge, env vars, logs, metrics,
//! Prometheus and usage. Upstreams are the fake of `fakes.rs` and the two tiny MCP servers of
//! `tests/fixtures/` (Python standard library only), started by ezforge itself.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::fakes::FakeUpstream;
use crate::helpers::{
    ApiResponse, TestApp, admin_token, contains_bytes, create_key, create_key_data, create_project,
    create_server, db_bytes, delete_as, get_as, patch_as, post_as, put_as,
};

pub(crate) fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
        .display()
        .to_string()
}

/// The HTTP fixture as a supervised command (it listens on $PORT).
fn http_command(extra: &[&str]) -> Value {
    let mut argv = vec!["python3".to_owned(), fixture("http_mcp.py")];
    argv.extend(extra.iter().map(|s| (*s).to_owned()));
    json!({ "command": argv, "transport": "http" })
}

fn stdio_command(extra: &[&str]) -> Value {
    let mut argv = vec!["python3".to_owned(), fixture("stdio_mcp.py")];
    argv.extend(extra.iter().map(|s| (*s).to_owned()));
    json!({ "command": argv, "transport": "stdio" })
}

/// An app, an admin session, and one server `slug` (no deployment yet).
async fn world(slug: &str) -> (TestApp, String, Value) {
    world_with(slug, |_| {}).await
}

pub(crate) async fn world_with(
    slug: &str,
    f: impl FnOnce(&mut ezforge::Config),
) -> (TestApp, String, Value) {
    let app = TestApp::builder().config(f).spawn().await;
    let admin = admin_token(&app).await;
    let project = create_project(&app, &admin, &format!("p-{slug}")).await;
    let server = create_server(&app, &admin, project["id"].as_str().expect("id"), slug).await;
    (app, admin, server)
}

pub(crate) async fn deploy(app: &TestApp, token: &str, slug: &str, body: Value) -> ApiResponse {
    post_as(app, token, &format!("/v1/servers/{slug}/deployments"), body).await
}

/// A managed access token for `slug`.
pub(crate) fn token(app: &TestApp, slug: &str, scope: &str) -> String {
    crate::gateway::front_door::managed_token(app, slug, scope, json!({}))
}

/// One JSON-RPC message through the front door.
pub(crate) async fn mcp(
    app: &TestApp,
    slug: &str,
    token: Option<&str>,
    session: Option<&str>,
    body: Value,
) -> reqwest::Response {
    let mut req = app
        .client
        .post(format!("{}/mcp/{slug}", app.address))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body.to_string());
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(s) = session {
        req = req.header("mcp-session-id", s);
    }
    req.send().await.expect("request")
}

fn tool_call(name: &str, args: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {"name": name, "arguments": args}})
}

/// The text of a tools/call result.
async fn tool_text(res: reqwest::Response) -> String {
    let status = res.status();
    let body: Value = res.json().await.expect("json");
    assert_eq!(status, 200, "{body}");
    body["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no text in {body}"))
        .to_owned()
}

/// Polls `check` until it returns Some (the condition holds), at most 15 s.
pub(crate) async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `GET path` until `done` makes something of the answer (at most 15 s).
pub(crate) async fn poll_get<T>(
    app: &TestApp,
    token: &str,
    path: &str,
    what: &str,
    done: impl Fn(ApiResponse) -> Option<T>,
) -> T {
    let done = &done;
    eventually(
        what,
        move || async move { done(get_as(app, token, path).await) },
    )
    .await
}

/// A tool's text answer, through the front door (`session`: an MCP session id).
pub(crate) async fn call_tool(
    app: &TestApp,
    slug: &str,
    token: &str,
    session: Option<&str>,
    name: &str,
    args: Value,
) -> String {
    tool_text(mcp(app, slug, Some(token), session, tool_call(name, args)).await).await
}

/// A deployment that ran its pipeline and failed, saying `why`.
#[track_caller]
pub(crate) fn assert_failed(r: &ApiResponse, why: &str) {
    let d = &r.expect(201)["data"];
    assert_eq!(d["status"], "failed", "{d}");
    let message = d["errorMessage"].as_str().unwrap_or_default();
    assert!(message.contains(why), "{why:?} in {d}");
}

fn versions(list: &Value) -> Vec<i64> {
    list["data"]
        .as_array()
        .expect("array")
        .iter()
        .map(|d| d["version"].as_i64().expect("version"))
        .collect()
}

#[tokio::test]
async fn deploy_swap_failed_health_check_rollback_and_retention() {
    let (app, admin, server) = world("weather").await;
    assert_eq!(server["status"], "stopped");
    let one = FakeUpstream::start().await;
    let two = FakeUpstream::start().await;
    let t = token(&app, "weather", "mcp:read");
    let list = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"});

    let v1 = deploy(&app, &admin, "weather", json!({ "upstreamUrl": one.url })).await;
    let v1 = v1.expect(201)["data"].clone();
    assert_eq!(v1["version"], 1);
    assert_eq!(v1["status"], "running");
    assert_eq!(v1["active"], true);
    assert_eq!(v1["type"], "deploy");
    assert_eq!(v1["target"]["upstreamUrl"], one.url.as_str());
    assert!(v1["finishedAt"].is_string());
    let s = get_as(&app, &admin, "/v1/servers/weather").await;
    assert_eq!(s.expect(200)["data"]["status"], "running");
    assert_eq!(s.body["data"]["activeDeploymentId"], v1["id"]);
    assert_eq!(
        mcp(&app, "weather", Some(&t), None, list.clone())
            .await
            .status(),
        200
    );
    // The health check's initialize and ping, then the request.
    let one_seen = one.requests();
    assert!(one_seen >= 3, "{one_seen}");

    // A deployment failing its health check: failed, and v1 keeps serving.
    let v2 = deploy(&app, &admin, "weather", http_command(&["--fail-health"])).await;
    assert_failed(&v2, "health check failed");
    let v2 = v2.body["data"].clone();
    assert_eq!(v2["active"], false);
    assert_eq!(
        mcp(&app, "weather", Some(&t), None, list.clone())
            .await
            .status(),
        200
    );
    assert_eq!(one.requests(), one_seen + 1);
    let s = get_as(&app, &admin, "/v1/servers/weather").await;
    assert_eq!(s.body["data"]["status"], "running");
    assert_eq!(s.body["data"]["activeDeploymentId"], v1["id"]);
    // Rolling back to a deployment that failed is refused.
    let r = post_as(
        &app,
        &admin,
        "/v1/servers/weather/rollback",
        json!({ "version": 2 }),
    )
    .await;
    assert_eq!(r.status, 409, "{}", r.text);

    // v3 with a label takes the traffic.
    let v3 = deploy(
        &app,
        &admin,
        "weather",
        json!({ "upstreamUrl": two.url, "version": "blue" }),
    )
    .await;
    let v3 = v3.expect(201)["data"].clone();
    assert_eq!(
        (v3["version"].as_i64(), v3["label"].as_str()),
        (Some(3), Some("blue"))
    );
    assert_eq!(
        mcp(&app, "weather", Some(&t), None, list.clone())
            .await
            .status(),
        200
    );
    assert_eq!(one.requests(), one_seen + 1);
    assert!(two.requests() >= 3);

    // Roll back to v1: a new deployment of type rollback; v3 is marked rolled back.
    let r = post_as(
        &app,
        &admin,
        "/v1/servers/weather/rollback",
        json!({ "version": 1 }),
    )
    .await;
    let v4 = r.expect(201)["data"].clone();
    assert_eq!(
        (v4["version"].as_i64(), v4["type"].as_str()),
        (Some(4), Some("rollback"))
    );
    assert_eq!(v4["target"]["upstreamUrl"], one.url.as_str());
    let before = one.requests();
    assert_eq!(
        mcp(&app, "weather", Some(&t), None, list.clone())
            .await
            .status(),
        200
    );
    assert_eq!(one.requests(), before + 1);
    let r = post_as(
        &app,
        &admin,
        "/v1/servers/weather/rollback",
        json!({ "deploymentId": v4["id"] }),
    )
    .await;
    assert_eq!(r.status, 409, "the active one: {}", r.text);
    let r = post_as(
        &app,
        &admin,
        "/v1/servers/weather/rollback",
        json!({ "version": 99 }),
    )
    .await;
    assert_eq!(r.status, 404, "{}", r.text);
    let r = post_as(&app, &admin, "/v1/servers/weather/rollback", json!({})).await;
    r.assert_invalid("version");

    // Newest first, paginated.
    let page = get_as(&app, &admin, "/v1/servers/weather/deployments?limit=3").await;
    let page = page.expect(200).clone();
    assert_eq!(versions(&page), [4, 3, 2]);
    assert_eq!(page["meta"]["total"], 4);
    assert_eq!(page["data"][1]["status"], "rolled_back");
    assert_eq!(page["data"][0]["active"], true);
    let cursor = page["meta"]["cursor"].as_str().expect("cursor");
    let rest = get_as(
        &app,
        &admin,
        &format!("/v1/servers/weather/deployments?limit=3&cursor={cursor}"),
    )
    .await;
    assert_eq!(versions(rest.expect(200)), [1]);
    assert_eq!(rest.body["meta"]["hasMore"], false);
    // A cursor this API did not return is refused, not taken as "from the start".
    for forged in ["bm90LWEtbnVtYmVy", "MA", "LTU"] {
        let r = get_as(
            &app,
            &admin,
            &format!("/v1/servers/weather/deployments?cursor={forged}"),
        )
        .await;
        assert_eq!(r.status, 400, "{forged}: {}", r.text);
    }

    // Retention: only the newest two are kept (the active one always).
    patch_as(
        &app,
        &admin,
        "/v1/servers/weather",
        json!({ "deploymentRetentionCount": 2 }),
    )
    .await
    .expect(200);
    deploy(&app, &admin, "weather", json!({ "upstreamUrl": two.url }))
        .await
        .expect(201);
    let all = get_as(&app, &admin, "/v1/servers/weather/deployments").await;
    assert_eq!(versions(all.expect(200)), [5, 4]);
    let r = post_as(
        &app,
        &admin,
        "/v1/servers/weather/rollback",
        json!({ "version": 1 }),
    )
    .await;
    assert_eq!(r.status, 404, "pruned: {}", r.text);
}

#[tokio::test]
async fn deployment_scopes_and_bad_input() {
    let (app, admin, server) = world("tools").await;
    let project = server["projectId"].as_str().expect("project");
    let reader = create_key(&app, &admin, project, &["deployments:read"]).await;
    let writer = create_key(&app, &admin, project, &["deployments:write"]).await;
    let up = FakeUpstream::start().await;

    let r = deploy(&app, &reader, "tools", json!({ "upstreamUrl": up.url })).await;
    assert_eq!(r.status, 403, "{}", r.text);
    assert_eq!(
        r.body["error"]["details"]["requiredScope"],
        "deployments:write"
    );
    // Scope before validation: an empty body from a reader is a 403, not a 422.
    for (path, body) in [
        ("/v1/servers/tools/deployments", json!({})),
        ("/v1/servers/tools/rollback", json!({})),
    ] {
        let r = post_as(&app, &reader, path, body).await;
        assert_eq!(r.status, 403, "{path}: {}", r.text);
    }
    // Repointing a server's traffic through PATCH is a deployment too.
    let server_writer = create_key(&app, &admin, project, &["servers:write"]).await;
    let r = patch_as(
        &app,
        &server_writer,
        "/v1/servers/tools",
        json!({ "upstreamUrl": up.url }),
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.text);
    assert_eq!(
        r.body["error"]["details"]["requiredScope"],
        "deployments:write"
    );
    patch_as(
        &app,
        &server_writer,
        "/v1/servers/tools",
        json!({ "healthCheckPath": "/healthz" }),
    )
    .await
    .expect(200);
    deploy(&app, &writer, "tools", json!({ "upstreamUrl": up.url }))
        .await
        .expect(201);
    get_as(&app, &reader, "/v1/servers/tools/deployments")
        .await
        .expect(200);
    assert_eq!(
        get_as(&app, &writer, "/v1/servers/tools/deployments")
            .await
            .status,
        403
    );
    for (body, field) in [
        (
            json!({ "upstreamUrl": "ftp://example.com/mcp" }),
            "upstreamUrl",
        ),
        (json!({ "upstreamUrl": "not a url" }), "upstreamUrl"),
        (json!({}), "upstreamUrl"),
        (
            json!({ "upstreamUrl": up.url, "command": ["x"] }),
            "command",
        ),
        (json!({ "command": "python3 server.py" }), "command"),
        (json!({ "command": [] }), "command"),
        (json!({ "command": ["ok", 3] }), "command"),
        (json!({ "command": [""] }), "command"),
        (
            json!({ "command": ["x"], "transport": "grpc" }),
            "transport",
        ),
        (
            json!({ "command": ["x"], "transport": "stdio", "port": 9000 }),
            "port",
        ),
        (json!({ "command": ["x"], "port": 80 }), "port"),
        (
            json!({ "upstreamUrl": up.url, "transport": "http" }),
            "transport",
        ),
        (
            json!({ "upstreamUrl": up.url, "version": {"a": 1} }),
            "version",
        ),
    ] {
        deploy(&app, &admin, "tools", body.clone())
            .await
            .assert_invalid(field);
    }
    let r = deploy(
        &app,
        &admin,
        "tools",
        json!({ "upstreamUrl": up.url, "extra": 1 }),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text);
    let r = deploy(&app, &admin, "nope", json!({ "upstreamUrl": up.url })).await;
    assert_eq!(r.status, 404, "{}", r.text);
    // A site may allow upstream URLs only.
    let (app2, admin2, _) = world_with("urls-only", |c| c.deploy.allow_commands = false).await;
    let r = deploy(&app2, &admin2, "urls-only", stdio_command(&[])).await;
    assert_eq!(r.status, 403, "{}", r.text);
    assert!(r.text.contains("allow_commands"), "{}", r.text);
    drop(app2);
    let r = deploy(&app, &admin, "nope", json!({ "upstreamUrl": up.url })).await;
    assert_eq!(r.status, 404, "{}", r.text);
    // Nothing half-made: still one deployment, still serving.
    let all = get_as(&app, &admin, "/v1/servers/tools/deployments").await;
    assert_eq!(versions(all.expect(200)), [1]);
}

#[tokio::test]
async fn commands_that_cannot_start_or_exit_at_once_fail_cleanly() {
    let (app, admin, _) = world_with("broken", |c| {
        c.deploy.health_timeout = ezforge::config::Duration::secs(10);
    })
    .await;
    let missing = json!({ "command": ["/nonexistent/mcp-server"], "transport": "http" });
    let r = deploy(&app, &admin, "broken", missing).await;
    assert_failed(&r, "command not found");

    let r = deploy(&app, &admin, "broken", http_command(&["--exit-at-once"])).await;
    assert_failed(&r, "exited with status 1");

    let r = deploy(&app, &admin, "broken", stdio_command(&["--exit-at-once"])).await;
    assert_failed(&r, "ended before answering");
    let r = deploy(&app, &admin, "broken", stdio_command(&["--fail-init"])).await;
    assert_failed(&r, "initialize");

    // Nothing ever served: the server says so, and the front door answers 503.
    let s = get_as(&app, &admin, "/v1/servers/broken").await;
    assert_eq!(s.expect(200)["data"]["status"], "error");
    let t = token(&app, "broken", "mcp:read");
    let res = mcp(
        &app,
        "broken",
        Some(&t),
        None,
        json!({"jsonrpc":"2.0","id":1,"method":"ping"}),
    )
    .await;
    assert_eq!(res.status(), 503);

    // Why it failed is in the server's log: the process's own words.
    let logs = get_as(&app, &admin, "/v1/servers/broken/logs?limit=200").await;
    let text = logs.expect(200).to_string();
    assert!(text.contains("exiting"), "{text}");
}

#[tokio::test]
async fn a_flooding_process_is_rate_limited_in_the_log_and_still_serves() {
    let (app, admin, _) = world("noisy").await;
    let r = deploy(&app, &admin, "noisy", http_command(&["--stdout-flood"])).await;
    assert_eq!(r.expect(201)["data"]["status"], "running", "{}", r.text);
    let t = token(&app, "noisy", "mcp:read mcp:write mcp:execute");
    let res = call_tool(
        &app,
        "noisy",
        &t,
        None,
        "echo",
        json!({"text": "still here"}),
    )
    .await;
    assert_eq!(res, "still here");
    let dropped = poll_get(
        &app,
        &admin,
        "/v1/servers/noisy/logs?search=dropped&limit=5",
        "the dropped-lines note",
        |logs| {
            let n = logs.body["data"].as_array().map_or(0, Vec::len);
            (n > 0).then_some(logs.body.clone())
        },
    )
    .await;
    assert!(
        dropped.to_string().contains("lines of output dropped"),
        "{dropped}"
    );
    let all = get_as(&app, &admin, "/v1/servers/noisy/logs?limit=200").await;
    let stored = all.body["data"].as_array().map_or(0, Vec::len);
    assert!(stored < 200, "the flood was stored: {stored} entries");
}

#[tokio::test]
async fn a_supervised_process_gets_env_vars_restarts_after_a_crash_and_keeps_secrets_out() {
    let (mut app, admin, _) = world("super").await;
    let secret = "s3cr3t-value-never-shown";
    post_as(
        &app,
        &admin,
        "/v1/servers/super/env",
        json!({ "name": "API_TOKEN", "value": secret }),
    )
    .await
    .expect(201);
    let d = deploy(&app, &admin, "super", http_command(&[])).await;
    assert_eq!(d.expect(201)["data"]["status"], "running", "{}", d.text);
    let s = get_as(&app, &admin, "/v1/servers/super").await;
    let process = s.expect(200)["data"]["process"].clone();
    assert_eq!(process["state"], "running", "{process}");
    let pid = process["pid"].as_u64().expect("pid");

    let t = token(&app, "super", "mcp:read mcp:write mcp:execute");
    let env =
        async |name: &str| call_tool(&app, "super", &t, None, "env", json!({ "name": name })).await;
    assert_eq!(env("API_TOKEN").await, secret);
    assert_ne!(env("PATH").await, "null");
    // Nothing of ezforge's own environment beyond the harmless basics.
    assert_eq!(env("CARGO_MANIFEST_DIR").await, "null");

    // A change applies at the next deployment, not before.
    put_as(
        &app,
        &admin,
        "/v1/servers/super/env/API_TOKEN",
        json!({ "value": "second-value" }),
    )
    .await
    .expect(200);
    assert_eq!(env("API_TOKEN").await, secret);

    // A crash: the request in flight fails; requests are served again after the restart.
    let res = mcp(&app, "super", Some(&t), None, tool_call("crash", json!({}))).await;
    assert_eq!(res.status(), 502);
    // (A request racing the exit itself may still get a 502: the old process's socket can
    // accept a connection while it dies. Refused connections wait for the restart.)
    let again = eventually("a restarted process", || async {
        let res = mcp(&app, "super", Some(&t), None, tool_call("pid", json!({}))).await;
        if res.status() == 502 {
            return None;
        }
        Some(tool_text(res).await)
    })
    .await;
    assert_ne!(again, pid.to_string(), "a new process");
    let s = get_as(&app, &admin, "/v1/servers/super").await;
    assert!(
        s.body["data"]["process"]["restarts"].as_u64() >= Some(1),
        "{}",
        s.text
    );
    let logs = poll_get(
        &app,
        &admin,
        "/v1/servers/super/logs?level=error",
        "the crash in the log",
        |l| l.text.contains("exited with status 3").then_some(l.text),
    )
    .await;
    assert!(!logs.contains(secret));

    // No API answer ever shows the value.
    for path in [
        "/v1/servers/super",
        "/v1/servers/super/env",
        "/v1/servers/super/deployments",
        "/v1/servers/super/logs?limit=200",
    ] {
        let r = get_as(&app, &admin, path).await;
        assert!(
            !r.text.contains(secret) && !r.text.contains("second-value"),
            "{path}: {}",
            r.text
        );
    }
    let tmp = app.take_tempdir().expect("tmp");
    let dir = app.data_dir.clone();
    app.stop().await;
    let db = db_bytes(&dir);
    assert!(!contains_bytes(&db, secret) && !contains_bytes(&db, "second-value"));
    drop(tmp);
}

/// Whether process `pid` is still running (a zombie waiting to be reaped is not).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let state = stat.rsplit_once(") ")?.1.chars().next()?;
            Some(state != 'Z' && state != 'X')
        })
        .unwrap_or(false)
}

/// A command whose process group holds a `sleep` besides the leader; the sleep's pid goes to
/// `pid_file`. With `then`, the leader becomes that command; without, it exits 1.
/// `pid_file`: a name in the server's own directory (the only place it may write).
fn with_orphan(pid_file: &str, then: Option<&str>) -> Value {
    let tail = then.map_or_else(|| "exit 1".to_owned(), |c| format!("exec {c}"));
    let script = format!("sleep 300 & echo $! > '{pid_file}'; {tail}");
    json!({ "command": ["sh", "-c", script], "transport": "http" })
}

async fn orphan_pid(pid_file: &std::path::Path) -> u32 {
    eventually("the sleep's pid", || async {
        std::fs::read_to_string(pid_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
    })
    .await
}

#[tokio::test]
async fn nothing_of_a_process_group_outlives_its_leader_or_the_server() {
    let (app, admin, server) = world_with("group", |c| {
        c.deploy.health_timeout = ezforge::config::Duration::secs(10);
    })
    .await;
    let dir = app
        .data_dir
        .join("servers")
        .join(server["id"].as_str().expect("id"));

    // The leader exits on its own: what it started is ended too.
    let first = dir.join("first.pid");
    let r = deploy(&app, &admin, "group", with_orphan("first.pid", None)).await;
    assert_failed(&r, "exited with status 1");
    let pid = orphan_pid(&first).await;
    eventually("the orphan ended", || async {
        (!running(pid)).then_some(())
    })
    .await;

    // A deployment made through the API, then the server stops: the whole group ends.
    let second = dir.join("second.pid");
    let fixture = format!("python3 '{}'", fixture("http_mcp.py"));
    let r = deploy(
        &app,
        &admin,
        "group",
        with_orphan("second.pid", Some(&fixture)),
    )
    .await;
    assert_eq!(r.expect(201)["data"]["status"], "running", "{}", r.text);
    let pid = orphan_pid(&second).await;
    assert!(running(pid), "the group's sleep runs while deployed");
    app.stop().await;
    eventually("the group ended at shutdown", || async {
        (!running(pid)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_stdio_process_that_stops_reading_ends_its_session_in_time() {
    let (app, admin, _) = world_with("deaf", |c| {
        c.gateway.upstream_timeout = ezforge::config::Duration::secs(2);
    })
    .await;
    let d = deploy(&app, &admin, "deaf", stdio_command(&[])).await;
    assert_eq!(d.expect(201)["data"]["status"], "running", "{}", d.text);
    let t = token(&app, "deaf", "mcp:read mcp:write mcp:execute");
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
    let res = mcp(&app, "deaf", Some(&t), None, init).await;
    assert_eq!(res.status(), 200);
    let sid = res.headers()["mcp-session-id"]
        .to_str()
        .expect("sid")
        .to_owned();
    // The process sleeps without reading: no answer within the timeout.
    let res = mcp(
        &app,
        "deaf",
        Some(&t),
        Some(&sid),
        tool_call("deaf", json!({})),
    )
    .await;
    assert_eq!(res.status(), 504);
    // A message larger than the pipe's buffer cannot be written: the write gives up in time
    // too, and the session ends rather than staying busy for ever.
    let big = tool_call("echo", json!({ "text": "x".repeat(1024 * 1024) }));
    let res = tokio::time::timeout(
        Duration::from_secs(20),
        mcp(&app, "deaf", Some(&t), Some(&sid), big),
    )
    .await
    .expect("an answer, not a hang");
    assert_eq!(res.status(), 504);
    eventually("the session ended", || async {
        let ping = json!({"jsonrpc":"2.0","id":3,"method":"ping"});
        let res = mcp(&app, "deaf", Some(&t), Some(&sid), ping).await;
        (res.status() == 404).then_some(())
    })
    .await;
}

#[tokio::test]
async fn idle_processes_stop_and_the_next_request_starts_them() {
    let (app, admin, _) = world("sleepy").await;
    patch_as(
        &app,
        &admin,
        "/v1/servers/sleepy",
        json!({ "autoStopSeconds": 1 }),
    )
    .await
    .expect(200);
    deploy(&app, &admin, "sleepy", http_command(&[]))
        .await
        .expect(201);
    let stopped = poll_get(&app, &admin, "/v1/servers/sleepy", "the idle stop", |s| {
        (s.body["data"]["process"]["state"] == "stopped").then_some(s.body)
    })
    .await;
    assert_eq!(stopped["data"]["status"], "stopped");
    let t = token(&app, "sleepy", "mcp:read mcp:write mcp:execute");
    let res = call_tool(&app, "sleepy", &t, None, "echo", json!({"text": "awake"})).await;
    assert_eq!(res, "awake");
    // An answer larger than the front door buffers (256 KiB) streams from the process whole,
    // over a connection used once.
    let big = "x".repeat(300 * 1024);
    let echoed = call_tool(&app, "sleepy", &t, None, "echo", json!({ "text": big })).await;
    assert!(
        echoed == big,
        "{} of {} bytes came back",
        echoed.len(),
        big.len()
    );
    let s = get_as(&app, &admin, "/v1/servers/sleepy").await;
    assert_eq!(s.body["data"]["status"], "running", "{}", s.text);
}

#[tokio::test]
async fn a_stdio_server_is_bridged_one_process_per_session() {
    let (app, admin, _) = world_with("stdio", |c| c.deploy.max_stdio_sessions = 2).await;
    let d = deploy(&app, &admin, "stdio", stdio_command(&[])).await;
    assert_eq!(d.expect(201)["data"]["status"], "running", "{}", d.text);
    let t = token(&app, "stdio", "mcp:read mcp:write mcp:execute");
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});

    let open = || async {
        let res = mcp(&app, "stdio", Some(&t), None, init.clone()).await;
        assert_eq!(res.status(), 200);
        let sid = res.headers()["mcp-session-id"]
            .to_str()
            .expect("sid")
            .to_owned();
        let body: Value = res.json().await.expect("json");
        assert_eq!(
            body["result"]["serverInfo"]["name"], "fixture-stdio",
            "{body}"
        );
        let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        assert_eq!(
            mcp(&app, "stdio", Some(&t), Some(&sid), note)
                .await
                .status(),
            202
        );
        sid
    };
    let a = open().await;
    let b = open().await;
    assert_ne!(a, b);
    let list = mcp(
        &app,
        "stdio",
        Some(&t),
        Some(&a),
        json!({"jsonrpc":"2.0","id":2,"method":"tools/list"}),
    )
    .await;
    let list: Value = list.json().await.expect("json");
    assert!(
        list["result"]["tools"]
            .as_array()
            .is_some_and(|t| t.len() >= 5),
        "{list}"
    );
    let echo = call_tool(
        &app,
        "stdio",
        &t,
        Some(&a),
        "echo",
        json!({"text": "over stdio"}),
    )
    .await;
    assert_eq!(echo, "over stdio");
    let pid_a = call_tool(&app, "stdio", &t, Some(&a), "pid", json!({})).await;
    let pid_b = call_tool(&app, "stdio", &t, Some(&b), "pid", json!({})).await;
    assert_ne!(pid_a, pid_b, "one process per session");

    // The cap: a third session waits for one to end.
    let third = mcp(&app, "stdio", Some(&t), None, init.clone()).await;
    assert_eq!(third.status(), 503);
    let s = get_as(&app, &admin, "/v1/servers/stdio").await;
    assert_eq!(s.body["data"]["process"]["sessions"], 2, "{}", s.text);

    // DELETE ends a session (and its process); its id is then unknown.
    let del = app
        .client
        .delete(format!("{}/mcp/stdio", app.address))
        .bearer_auth(&t)
        .header("mcp-session-id", &a)
        .send()
        .await
        .expect("delete");
    assert_eq!(del.status(), 200);
    let gone = mcp(
        &app,
        "stdio",
        Some(&t),
        Some(&a),
        json!({"jsonrpc":"2.0","id":3,"method":"ping"}),
    )
    .await;
    assert_eq!(gone.status(), 404);
    let c = open().await;
    assert_ne!(c, a);
    // Requests without a session other than initialize are refused.
    let r = mcp(
        &app,
        "stdio",
        Some(&t),
        None,
        json!({"jsonrpc":"2.0","id":4,"method":"ping"}),
    )
    .await;
    assert_eq!(r.status(), 400);
    // And without a token, nothing reaches the bridge.
    assert_eq!(mcp(&app, "stdio", None, None, init).await.status(), 401);
}

#[tokio::test]
async fn racing_deployments_never_half_swap() {
    let (app, admin, _) = world_with("race", |c| {
        c.deploy.health_timeout = ezforge::config::Duration::secs(2);
    })
    .await;
    // A process that never listens: each deployment holds the server for the whole timeout.
    let slow = json!({ "command": ["sleep", "30"], "transport": "http" });
    let (a, b) = tokio::join!(
        deploy(&app, &admin, "race", slow.clone()),
        deploy(&app, &admin, "race", slow.clone())
    );
    let mut statuses = [a.status, b.status];
    statuses.sort_unstable();
    assert_eq!(statuses, [201, 409], "{} / {}", a.text, b.text);
    let done = if a.status == 201 { &a } else { &b };
    assert_eq!(done.body["data"]["status"], "failed");
    let all = get_as(&app, &admin, "/v1/servers/race/deployments").await;
    assert_eq!(versions(all.expect(200)), [1]);
}

/// 5 tools/list, 2 tools/call get_weather, 3 refused tokens, through a fake upstream.
async fn burst(app: &TestApp, slug: &str) {
    let t = token(app, slug, "mcp:read mcp:write mcp:execute");
    for _ in 0..5 {
        let r = mcp(
            app,
            slug,
            Some(&t),
            None,
            json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}),
        )
        .await;
        assert_eq!(r.status(), 200);
    }
    for _ in 0..2 {
        let r = mcp(
            app,
            slug,
            Some(&t),
            None,
            tool_call("get_weather", json!({})),
        )
        .await;
        assert_eq!(r.status(), 200);
    }
    for _ in 0..3 {
        let r = mcp(
            app,
            slug,
            Some("not-a-token"),
            None,
            json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}),
        )
        .await;
        assert_eq!(r.status(), 401);
    }
}

#[tokio::test]
async fn access_log_rows_are_bounded_and_carry_the_answered_request_id() {
    let (app, admin, _) = world("bounded").await;
    let up = FakeUpstream::start().await;
    deploy(&app, &admin, "bounded", json!({ "upstreamUrl": up.url }))
        .await
        .expect(201);
    // No token, a 100 KiB method name and an X-Request-Id too long to be used.
    let long_method = "m".repeat(100 * 1024);
    let res = app
        .client
        .post(format!("{}/mcp/bounded", app.address))
        .header("content-type", "application/json")
        .header("x-request-id", "r".repeat(300))
        .body(json!({"jsonrpc":"2.0","id":1,"method": long_method}).to_string())
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 401);
    let answered = res.headers()["x-request-id"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert_eq!(answered.len(), 24, "a new id: {answered}");
    let entry = poll_get(
        &app,
        &admin,
        "/v1/servers/bounded/logs?level=warn",
        "the refused request in the log",
        |r| r.body["data"].as_array().and_then(|a| a.first().cloned()),
    )
    .await;
    assert_eq!(entry["status"], 401);
    assert_eq!(entry["requestId"], answered.as_str());
    let method = entry["method"].as_str().expect("method");
    assert_eq!(method, "m".repeat(128), "cut to 128 bytes");
}

#[tokio::test]
async fn metrics_and_logs_describe_a_known_burst() {
    let (app, admin, server) = world("burst").await;
    let up = FakeUpstream::start().await;
    deploy(&app, &admin, "burst", json!({ "upstreamUrl": up.url }))
        .await
        .expect(201);
    burst(&app, "burst").await;

    let m = poll_get(
        &app,
        &admin,
        "/v1/servers/burst/metrics?window=1h",
        "ten requests in the metrics",
        |m| (m.body["data"]["requests"] == 10).then_some(m.body["data"].clone()),
    )
    .await;
    assert_eq!(m["window"], "1h");
    // The three refused tokens are challenges, not errors.
    assert_eq!(m["errors"], json!({"4xx": 0, "5xx": 0}));
    assert_eq!(m["errorRate"], 0.0);
    assert_eq!(m["challenges"], json!({"401": 3, "403": 0}));
    assert_eq!(m["challengeRate"], 0.3);
    assert_eq!(m["methods"]["tools/list"], 8);
    assert_eq!(m["methods"]["tools/call"], 2);
    assert_eq!(m["tools"], json!({"get_weather": 2}));
    assert_eq!(
        m["authFailures"]
            .as_object()
            .map(|o| o.values().filter_map(Value::as_i64).sum::<i64>()),
        Some(3)
    );
    for p in ["p50", "p95", "p99"] {
        assert!(m["latencyMs"][p].as_f64().is_some_and(|v| v >= 0.0), "{m}");
    }
    assert!(m["latencyMs"]["p50"].as_f64() <= m["latencyMs"]["p99"].as_f64());
    assert_eq!(m["upstream"]["status"], "healthy");
    for w in ["24h", "7d"] {
        let r = get_as(
            &app,
            &admin,
            &format!("/v1/servers/burst/metrics?window={w}"),
        )
        .await;
        assert_eq!(r.expect(200)["data"]["requests"], 10);
    }
    assert_eq!(
        get_as(&app, &admin, "/v1/servers/burst/metrics?window=2h")
            .await
            .status,
        400
    );

    // Logs: newest first, filtered by level and text, paged by cursor.
    let warn = get_as(&app, &admin, "/v1/servers/burst/logs?level=warn").await;
    let warn = warn.expect(200)["data"].as_array().expect("array").clone();
    assert_eq!(warn.len(), 3, "{warn:?}");
    assert!(
        warn.iter()
            .all(|e| e["status"] == 401 && e["source"] == "access")
    );
    let weather = get_as(&app, &admin, "/v1/servers/burst/logs?search=get_weather").await;
    assert_eq!(
        weather.expect(200)["data"].as_array().map(Vec::len),
        Some(2)
    );
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/servers/burst/logs?limit=4&before={c}"),
            None => "/v1/servers/burst/logs?limit=4".into(),
        };
        let page = get_as(&app, &admin, &path).await;
        let page = page.expect(200).clone();
        seen.extend(page["data"].as_array().expect("array").iter().cloned());
        match page["meta"]["cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let access: Vec<&Value> = seen.iter().filter(|e| e["source"] == "access").collect();
    assert_eq!(access.len(), 10);
    let times: Vec<&str> = seen
        .iter()
        .map(|e| e["timestamp"].as_str().expect("ts"))
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {times:?}"
    );
    let ids: std::collections::HashSet<&str> =
        seen.iter().map(|e| e["id"].as_str().expect("id")).collect();
    assert_eq!(ids.len(), seen.len(), "no entry twice across pages");
    assert!(
        seen.iter().any(|e| e["source"] == "deploy"),
        "deployment events are logged"
    );
    for bad in [
        "limit=0",
        "limit=201",
        "level=loud",
        "before=%%%",
        "before=bm90LWEtY3Vyc29y",
        "search=",
    ] {
        let r = get_as(&app, &admin, &format!("/v1/servers/burst/logs?{bad}")).await;
        if bad == "search=" {
            assert_eq!(r.status, 200);
        } else {
            assert_eq!(r.status, 400, "{bad}: {}", r.text);
        }
    }

    // Scopes: logs with logs:read or servers:read; metrics with metrics:read.
    let project = server["projectId"].as_str().expect("project");
    let logs_key = create_key(&app, &admin, project, &["logs:read"]).await;
    let servers_key = create_key(&app, &admin, project, &["servers:read"]).await;
    let metrics_key = create_key(&app, &admin, project, &["metrics:read"]).await;
    for (key, path, want) in [
        (&logs_key, "/v1/servers/burst/logs", 200),
        (&servers_key, "/v1/servers/burst/logs", 200),
        (&metrics_key, "/v1/servers/burst/logs", 403),
        (&metrics_key, "/v1/servers/burst/metrics", 200),
        (&logs_key, "/v1/servers/burst/metrics", 403),
        (&servers_key, "/v1/servers/burst/logs/stream", 403),
    ] {
        assert_eq!(get_as(&app, key, path).await.status, want, "{path}");
    }

    // Usage: this month's requests, counted once each.
    let billing_key = create_key(&app, &admin, project, &["billing:read"]).await;
    let b = get_as(&app, &billing_key, "/v1/billing").await;
    let b = b.expect(200)["data"].clone();
    assert_eq!(b["plan"], "self_hosted");
    assert_eq!(b["usage"]["requestCount"], 10, "{b}");
    assert!(b["usage"]["bandwidthBytes"].as_i64() > Some(0), "{b}");
    assert!(b["limits"]["requestsPerMonth"].is_null());
    assert_eq!(get_as(&app, &logs_key, "/v1/billing").await.status, 403);
}

#[tokio::test]
async fn the_log_stream_tails_new_entries() {
    let (app, admin, _) = world("tail").await;
    let up = FakeUpstream::start().await;
    deploy(&app, &admin, "tail", json!({ "upstreamUrl": up.url }))
        .await
        .expect(201);
    let res = crate::helpers::plain_client()
        .get(app.url("/v1/servers/tail/logs/stream?search=tools/list"))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("stream");
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .expect("ct")
            .starts_with("text/event-stream")
    );
    let mut body = res.bytes_stream();
    let opening = body.next().await.expect("chunk").expect("bytes");
    assert!(
        String::from_utf8_lossy(&opening).starts_with(':'),
        "opening comment"
    );
    // Now the stream is subscribed: a request shows up as an event.
    let t = token(&app, "tail", "mcp:read");
    let ping = mcp(
        &app,
        "tail",
        Some(&t),
        None,
        json!({"jsonrpc":"2.0","id":1,"method":"ping"}),
    )
    .await;
    assert_eq!(ping.status(), 200);
    let list = mcp(
        &app,
        "tail",
        Some(&t),
        None,
        json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}),
    )
    .await;
    assert_eq!(list.status(), 200);
    let mut text = String::new();
    while !text.contains("\n\n") || !text.contains("event: log") {
        let chunk = tokio::time::timeout(Duration::from_secs(10), body.next())
            .await
            .expect("an event within 10 s")
            .expect("chunk")
            .expect("bytes");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    let data = text
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .expect("data line");
    let entry: Value = serde_json::from_str(data).expect("entry json");
    assert_eq!(
        entry["method"], "tools/list",
        "the ping was filtered out: {entry}"
    );
    assert_eq!(entry["status"], 200);
}

/// Opens `/logs/stream` for `slug` as `token` and reads its opening comment.
async fn open_tail(
    app: &TestApp,
    token: &str,
    slug: &str,
) -> impl futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin {
    let res = crate::helpers::plain_client()
        .get(app.url(&format!("/v1/servers/{slug}/logs/stream")))
        .bearer_auth(token)
        .send()
        .await
        .expect("stream");
    assert_eq!(res.status(), 200);
    let mut body = res.bytes_stream();
    let opening = body.next().await.expect("chunk").expect("bytes");
    assert!(String::from_utf8_lossy(&opening).starts_with(':'));
    body
}

/// Reads until the stream ends (within 10 s).
async fn ends(mut body: impl futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(_)) = body.next().await {}
    })
    .await
    .expect("the stream ends");
}

#[tokio::test]
async fn a_log_stream_ends_when_its_caller_loses_access() {
    let (app, admin, server) = world("revoked").await;
    let project = server["projectId"].as_str().expect("project");
    let up = FakeUpstream::start().await;
    deploy(&app, &admin, "revoked", json!({ "upstreamUrl": up.url }))
        .await
        .expect(201);

    // A revoked API key.
    let key = create_key_data(&app, &admin, project, &["logs:read"]).await;
    let value = key["key"].as_str().expect("key");
    let tail = open_tail(&app, value, "revoked").await;
    let other = open_tail(&app, &admin, "revoked").await;
    let r = delete_as(
        &app,
        &admin,
        &format!("/v1/keys/{}", key["id"].as_str().expect("id")),
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.text);
    ends(tail).await;

    // A session that signs out.
    let session = admin_token(&app).await;
    let tail = open_tail(&app, &session, "revoked").await;
    let r = post_as(&app, &session, "/v1/auth/logout", json!({})).await;
    assert!(r.status < 300, "{}", r.text);
    ends(tail).await;

    // Meanwhile the admin's stream, checked again each time, goes on.
    let mut other = other;
    let t = token(&app, "revoked", "mcp:read");
    let list = json!({"jsonrpc":"2.0","id":1,"method":"tools/list"});
    assert_eq!(
        mcp(&app, "revoked", Some(&t), None, list).await.status(),
        200
    );
    let mut text = String::new();
    while !text.contains("event: log") {
        let chunk = tokio::time::timeout(Duration::from_secs(10), other.next())
            .await
            .expect("an event within 10 s")
            .expect("chunk")
            .expect("bytes");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }

    // The server is deleted.
    let r = delete_as(&app, &admin, "/v1/servers/revoked").await;
    assert_eq!(r.status, 204, "{}", r.text);
    ends(other).await;
}

#[tokio::test]
async fn prometheus_metrics_are_off_by_default_and_parse_when_on() {
    let app = TestApp::spawn().await;
    assert_eq!(app.get("/metrics").await.status(), 404);
    drop(app);

    let (app, admin, _) = world_with("prom", |c| {
        c.metrics.enabled = true;
        c.metrics.bearer_token = Some(ezforge::domain::Secret::new("scrape-token"));
    })
    .await;
    let up = FakeUpstream::start().await;
    deploy(&app, &admin, "prom", json!({ "upstreamUrl": up.url }))
        .await
        .expect(201);
    burst(&app, "prom").await;
    assert_eq!(app.get("/metrics").await.status(), 401);
    let res = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth("scrape-token")
        .send()
        .await
        .expect("metrics");
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .expect("ct")
            .starts_with("text/plain; version=0.0.4")
    );
    let text = res.text().await.expect("text");
    let mut samples = std::collections::HashMap::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix('#') {
            assert!(
                rest.starts_with(" HELP ") || rest.starts_with(" TYPE "),
                "comment: {line}"
            );
            continue;
        }
        // name{labels} value
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("sample: {line}"));
        let name_end = series.find('{').unwrap_or(series.len());
        let name = &series[..name_end];
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "metric name: {line}"
        );
        if name_end < series.len() {
            assert!(series.ends_with('}'), "labels: {line}");
        }
        let v: f64 = value.parse().unwrap_or_else(|_| panic!("value: {line}"));
        samples.insert(series.to_owned(), v);
    }
    assert_eq!(
        samples.get("ezforge_requests_total{server=\"prom\",class=\"2xx\"}"),
        Some(&7.0),
        "{text}"
    );
    assert_eq!(
        samples.get("ezforge_requests_total{server=\"prom\",class=\"4xx\"}"),
        Some(&3.0)
    );
    assert_eq!(
        samples.get("ezforge_challenges_total{server=\"prom\",status=\"401\"}"),
        Some(&3.0)
    );
    assert_eq!(
        samples.get("ezforge_request_errors_total{server=\"prom\",class=\"4xx\"}"),
        None,
        "challenges are not errors: {text}"
    );
    assert_eq!(
        samples.get("ezforge_request_duration_seconds_count{server=\"prom\"}"),
        Some(&10.0)
    );
    assert_eq!(
        samples.get("ezforge_request_duration_seconds_bucket{server=\"prom\",le=\"+Inf\"}"),
        Some(&10.0)
    );
    for name in [
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
        "process_start_time_seconds",
    ] {
        assert!(
            samples.get(name).is_some_and(|v| *v > 0.0),
            "{name} in {text}"
        );
    }
}

#[tokio::test]
async fn active_deployments_come_back_after_a_restart() {
    let (mut app, admin, _) = world("phoenix").await;
    let d = deploy(&app, &admin, "phoenix", stdio_command(&[])).await;
    assert_eq!(d.expect(201)["data"]["status"], "running");
    let tmp = app.take_tempdir().expect("tmp");
    let dir = app.data_dir.clone();
    app.stop().await;
    let app = TestApp::builder_in(&dir).spawn().await;
    let t = token(&app, "phoenix", "mcp:read mcp:write mcp:execute");
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
    let res = mcp(&app, "phoenix", Some(&t), None, init).await;
    assert_eq!(res.status(), 200);
    let admin = admin_token(&app).await;
    let s = get_as(&app, &admin, "/v1/servers/phoenix").await;
    assert_eq!(s.expect(200)["data"]["status"], "running");
    assert_eq!(s.body["data"]["process"]["sessions"], 1);
    // Commands turned off meanwhile: the command deployment is not started again.
    app.stop().await;
    let app = TestApp::builder_in(&dir)
        .config(|c| c.deploy.allow_commands = false)
        .spawn()
        .await;
    let t = token(&app, "phoenix", "mcp:read");
    let ping = json!({"jsonrpc":"2.0","id":1,"method":"ping"});
    assert_eq!(
        mcp(&app, "phoenix", Some(&t), None, ping).await.status(),
        503
    );
    let admin = admin_token(&app).await;
    let s = get_as(&app, &admin, "/v1/servers/phoenix").await;
    assert_eq!(
        s.expect(200)["data"]["status"],
        "error",
        "nothing serves it, so it does not read running"
    );
    // Commands allowed again: it serves, and says so.
    app.stop().await;
    let app = TestApp::builder_in(&dir).spawn().await;
    let admin = admin_token(&app).await;
    let s = get_as(&app, &admin, "/v1/servers/phoenix").await;
    assert_eq!(s.expect(200)["data"]["status"], "running");
    drop(app);
    drop(tmp);
}

#[tokio::test]
async fn a_first_deployment_cut_short_by_a_stop_leaves_no_server_provisioning() {
    let (mut app, admin, server) = world("cut").await;
    // As a stop in the middle of the server's first deployment leaves it.
    let id = server["id"].as_str().expect("id").to_owned();
    app.state
        .store
        .write(move |tx| ezforge::store::servers::set_status(tx, &id, "provisioning", None))
        .await
        .expect("status");
    let s = get_as(&app, &admin, "/v1/servers/cut").await;
    assert_eq!(s.expect(200)["data"]["status"], "provisioning");
    let tmp = app.take_tempdir().expect("tmp");
    let dir = app.data_dir.clone();
    app.stop().await;
    let app = TestApp::builder_in(&dir).spawn().await;
    let admin = admin_token(&app).await;
    let s = get_as(&app, &admin, "/v1/servers/cut").await;
    assert_eq!(s.expect(200)["data"]["status"], "error");
    drop(app);
    drop(tmp);
}

#[tokio::test]
async fn a_cleared_upstream_stays_cleared_after_a_restart() {
    let (mut app, admin, _) = world("cleared").await;
    let up = FakeUpstream::start().await;
    deploy(&app, &admin, "cleared", json!({ "upstreamUrl": up.url }))
        .await
        .expect(201);
    let cleared = patch_as(
        &app,
        &admin,
        "/v1/servers/cleared",
        json!({ "upstreamUrl": null }),
    )
    .await;
    assert_eq!(cleared.expect(200)["data"]["status"], "stopped");
    let tmp = app.take_tempdir().expect("tmp");
    let dir = app.data_dir.clone();
    app.stop().await;
    let app = TestApp::builder_in(&dir).spawn().await;
    let admin = admin_token(&app).await;
    let s = get_as(&app, &admin, "/v1/servers/cleared").await;
    assert!(s.expect(200)["data"]["upstreamUrl"].is_null());
    assert_eq!(s.body["data"]["status"], "stopped");
    let t = token(&app, "cleared", "mcp:read");
    let res = mcp(
        &app,
        "cleared",
        Some(&t),
        None,
        json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}),
    )
    .await;
    assert_eq!(res.status(), 503, "nothing serves the server any more");
    drop(app);
    drop(tmp);
}

#[tokio::test]
async fn a_health_check_reads_a_bounded_answer() {
    let (app, admin, _) = world("bloated").await;
    let up = FakeUpstream::start().await;
    let r = deploy(
        &app,
        &admin,
        "bloated",
        json!({ "upstreamUrl": format!("{}/bloated", up.url) }),
    )
    .await;
    assert_failed(&r, "larger than 1024 KiB");
}

#[tokio::test]
async fn a_health_check_reads_answers_sent_as_sse() {
    let (app, admin, _) = world("streamy").await;
    let up = FakeUpstream::start().await;
    let r = deploy(
        &app,
        &admin,
        "streamy",
        json!({ "upstreamUrl": format!("{}/sse", up.url) }),
    )
    .await;
    assert_eq!(r.expect(201)["data"]["status"], "running", "{}", r.text);
}

#[tokio::test]
async fn the_old_deployment_serves_while_a_new_one_is_checked() {
    let (app, admin, _) = world_with("steady", |c| {
        c.deploy.health_timeout = ezforge::config::Duration::secs(3);
    })
    .await;
    let up = FakeUpstream::start().await;
    deploy(&app, &admin, "steady", json!({ "upstreamUrl": up.url }))
        .await
        .expect(201);
    let t = token(&app, "steady", "mcp:read");
    // A process that never listens: its check runs until the timeout.
    let pending = {
        let (app, admin) = (&app, admin.clone());
        async move {
            let slow = json!({ "command": ["sleep", "30"], "transport": "http" });
            deploy(app, &admin, "steady", slow).await
        }
    };
    let requests = async {
        // Wait until the new deployment is being checked, then call the server.
        poll_get(
            &app,
            &admin,
            "/v1/servers/steady/deployments",
            "the deployment to start",
            |l| (l.body["data"][0]["status"] == "building").then_some(()),
        )
        .await;
        // Not a version to roll back to while it is being checked.
        let r = post_as(
            &app,
            &admin,
            "/v1/servers/steady/rollback",
            json!({ "version": 2 }),
        )
        .await;
        assert_eq!(r.status, 409, "{}", r.text);
        assert!(r.text.contains("has not finished"), "{}", r.text);
        let before = up.requests();
        for _ in 0..3 {
            let r = mcp(
                &app,
                "steady",
                Some(&t),
                None,
                json!({"jsonrpc":"2.0","id":1,"method":"ping"}),
            )
            .await;
            assert_eq!(r.status(), 200);
        }
        assert_eq!(up.requests(), before + 3);
    };
    let (r, ()) = tokio::join!(pending, requests);
    assert_failed(&r, "did not accept connections");
    let r = mcp(
        &app,
        "steady",
        Some(&t),
        None,
        json!({"jsonrpc":"2.0","id":1,"method":"ping"}),
    )
    .await;
    assert_eq!(r.status(), 200, "and after");
}

#[tokio::test]
async fn log_retention_drops_old_entries_and_keeps_the_newest() {
    let app = TestApp::spawn().await;
    let now = ezforge::domain::now_ms();
    let rows: Vec<ezforge::store::server_log::ServerLogRow> = (0..10)
        .map(|i| ezforge::store::server_log::ServerLogRow {
            at_ms: if i < 3 {
                now - 10 * 86_400_000
            } else {
                now - 1000 + i
            },
            server_id: "srv_x".into(),
            level: "info",
            source: "process",
            message: format!("line {i}"),
        })
        .collect();
    let left = app
        .state
        .store
        .run(move |c| {
            ezforge::store::server_log::insert_many(c, &rows)?;
            // Older than 7 days go; then at most 5 stay.
            let removed = ezforge::store::server_log::retain(c, now - 7 * 86_400_000, 5)?;
            assert_eq!(removed, 5);
            let kept: Vec<String> = c
                .prepare("SELECT message FROM server_log ORDER BY id")?
                .query_map([], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            Ok::<_, ezforge::store::StoreError>(kept)
        })
        .await
        .expect("store");
    assert_eq!(left, ["line 5", "line 6", "line 7", "line 8", "line 9"]);
}

/// A deployment body with a fixed `port`.
fn on_port(mut body: Value, port: u16) -> Value {
    body["port"] = json!(port);
    body
}

#[tokio::test]
async fn a_fixed_port_is_handed_over_and_given_back_when_the_successor_fails() {
    let (app, admin, _) = world_with("fixed", |c| {
        c.deploy.health_timeout = ezforge::config::Duration::secs(3);
    })
    .await;
    let port = ezforge::deploy::process::free_port().expect("a free port");
    let t = token(&app, "fixed", "mcp:execute");
    let pid = |app, t| call_tool(app, "fixed", t, None, "pid", json!({}));

    let v1 = deploy(&app, &admin, "fixed", on_port(http_command(&[]), port)).await;
    assert_eq!(v1.expect(201)["data"]["status"], "running");
    let first = pid(&app, &t).await;

    // v2 never listens. It used to pass its check on v1's answers (v1 held the port), take the
    // traffic, and leave nothing serving once v1 was stopped.
    let never = on_port(
        json!({ "command": ["sleep", "30"], "transport": "http" }),
        port,
    );
    let v2 = deploy(&app, &admin, "fixed", never).await;
    assert_failed(&v2, "did not accept connections");
    // v1 was stopped to free the port, and started again.
    let again = pid(&app, &t).await;
    assert_ne!(again, first);
    let list = get_as(&app, &admin, "/v1/servers/fixed/deployments").await;
    assert_eq!(list.expect(200)["data"][1]["active"], true, "{}", list.text);
    let s = get_as(&app, &admin, "/v1/servers/fixed").await;
    assert_eq!(s.expect(200)["data"]["status"], "running");

    // v2b listens on the port but fails its check: stopped, and v1 comes back again.
    let failing = on_port(http_command(&["--fail-health"]), port);
    assert_failed(
        &deploy(&app, &admin, "fixed", failing).await,
        "health check failed",
    );
    let back = pid(&app, &t).await;
    assert_ne!(back, again);
    let s = get_as(&app, &admin, "/v1/servers/fixed").await;
    assert_eq!(s.expect(200)["data"]["status"], "running");
    let again = back;

    // A working v3 takes the port over.
    let v3 = deploy(&app, &admin, "fixed", on_port(http_command(&[]), port)).await;
    assert_eq!(v3.expect(201)["data"]["status"], "running", "{}", v3.text);
    assert_eq!(v3.body["data"]["active"], true);
    let third = pid(&app, &t).await;
    assert_ne!(third, again);

    // A port held by another program fails the deployment before anything is started.
    let squatter = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("bind");
    let taken = squatter.local_addr().expect("addr").port();
    let v4 = deploy(&app, &admin, "fixed", on_port(http_command(&[]), taken)).await;
    assert_failed(&v4, &format!("port {taken} is not free"));
    assert_eq!(pid(&app, &t).await, third, "v3 serves on");
}

/// An upstream URL nobody listens on does not read `running`: it is probed at once (and then
/// every 15 s), reads `unreachable` with the cause, and the server's log says so.
#[tokio::test]
async fn an_upstream_nobody_listens_on_reads_unreachable_with_the_cause() {
    let (app, admin, _) = world("nobody").await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let r = patch_as(
        &app,
        &admin,
        "/v1/servers/nobody",
        json!({ "upstreamUrl": format!("http://127.0.0.1:{port}/mcp") }),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let s = poll_get(
        &app,
        &admin,
        "/v1/servers/nobody",
        "the probe's verdict",
        |r| {
            let v = r.expect(200).clone();
            (v["data"]["status"] == "unreachable").then_some(v)
        },
    )
    .await;
    let reason = s["data"]["statusReason"]
        .as_str()
        .expect("a reason")
        .to_owned();
    assert!(
        reason.contains(&format!("127.0.0.1:{port}")) && reason.to_lowercase().contains("refused"),
        "{reason}"
    );
    let logs = get_as(
        &app,
        &admin,
        "/v1/servers/nobody/logs?search=cannot%20be%20reached",
    )
    .await;
    assert!(logs.text.contains("refused"), "{}", logs.text);
}
