//! Supervised processes: env vars, crashes, process groups, the stdio bridge, idle stops.

use super::*;

#[tokio::test]
async fn a_flooding_process_is_rate_limited_in_the_log_and_still_serves() {
    let (app, admin, _) = world("noisy").await;
    let r = deploy(&app, &admin, "noisy", http_command(&["--stdout-flood"])).await;
    assert_eq!(r.expect(201)["data"]["status"], "running", "{}", r.text);
    let t = token(&app, "noisy", "mcp:read mcp:write mcp:execute");
    let res = app
        .mcp("noisy")
        .bearer(&t)
        .tool("echo", json!({"text": "still here"}))
        .await
        .tool_text();
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
    let env = async |name: &str| {
        app.mcp("super")
            .bearer(&t)
            .tool("env", json!({ "name": name }))
            .await
            .tool_text()
    };
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
    let res = app
        .mcp("super")
        .bearer(&t)
        .send(tool_call("crash", json!({})))
        .await;
    assert_eq!(res.status, 502);
    // (A request racing the exit itself may still get a 502: the old process's socket can
    // accept a connection while it dies. Refused connections wait for the restart.)
    let again = eventually("a restarted process", || async {
        let res = app
            .mcp("super")
            .bearer(&t)
            .send(tool_call("pid", json!({})))
            .await;
        if res.status == 502 {
            return None;
        }
        Some(res.tool_text())
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
    let res = app.mcp("deaf").bearer(&t).send(init).await;
    assert_eq!(res.status, 200);
    let sid = res.headers["mcp-session-id"]
        .to_str()
        .expect("sid")
        .to_owned();
    // The process sleeps without reading: no answer within the timeout.
    let res = app
        .mcp("deaf")
        .bearer(&t)
        .session(Some(&sid))
        .send(tool_call("deaf", json!({})))
        .await;
    assert_eq!(res.status, 504);
    // A message larger than the pipe's buffer cannot be written: the write gives up in time
    // too, and the session ends rather than staying busy for ever.
    let big = tool_call("echo", json!({ "text": "x".repeat(1024 * 1024) }));
    let res = tokio::time::timeout(
        Duration::from_secs(20),
        app.mcp("deaf").bearer(&t).session(Some(&sid)).send(big),
    )
    .await
    .expect("an answer, not a hang");
    assert_eq!(res.status, 504);
    eventually("the session ended", || async {
        let ping = json!({"jsonrpc":"2.0","id":3,"method":"ping"});
        let res = app
            .mcp("deaf")
            .bearer(&t)
            .session(Some(&sid))
            .send(ping)
            .await;
        (res.status == 404).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_stdio_process_cannot_make_ezforge_hold_its_answers_without_bound() {
    let (app, admin, _) = world("big").await;
    let d = deploy(&app, &admin, "big", stdio_command(&[])).await;
    assert_eq!(d.expect(201)["data"]["status"], "running", "{}", d.text);
    let t = token(&app, "big", "mcp:read mcp:write mcp:execute");
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
    let res = app.mcp("big").bearer(&t).send(init).await;
    let sid = res.headers["mcp-session-id"]
        .to_str()
        .expect("sid")
        .to_owned();
    // Three answers of 12 MiB for one small batch: the third passes the 32 MiB held at once.
    let twelve = 12 * 1024 * 1024;
    let batch: Vec<Value> = (10..13)
        .map(|id| {
            json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": "big", "arguments": {"bytes": twelve}}})
        })
        .collect();
    let res = app
        .mcp("big")
        .bearer(&t)
        .session(Some(&sid))
        .send(Value::Array(batch))
        .await;
    assert_eq!(res.status, 200);
    let answers = res.body.as_array().expect("a batch answer");
    assert_eq!(answers.len(), 3);
    let texts = |a: &Value| a["result"]["content"][0]["text"].as_str().map(str::len);
    assert_eq!(texts(&answers[0]), Some(twelve));
    assert_eq!(texts(&answers[1]), Some(twelve));
    assert_eq!(answers[2]["id"], 12);
    let message = answers[2]["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("was dropped"), "{message}");
    // Given back once answered: the session goes on.
    let one = json!({"jsonrpc": "2.0", "id": 20, "method": "tools/call",
        "params": {"name": "big", "arguments": {"bytes": twelve}}});
    let res = app
        .mcp("big")
        .bearer(&t)
        .session(Some(&sid))
        .send(one)
        .await;
    assert_eq!(res.status, 200);
    assert_eq!(texts(&res.body), Some(twelve));
    crate::helpers::server_log_has(&app, &admin, "big", "was dropped").await;
}

#[tokio::test]
async fn clients_that_do_not_read_their_answers_cannot_make_ezforge_hold_more() {
    let (app, admin, _) = world("slow").await;
    let d = deploy(&app, &admin, "slow", stdio_command(&[])).await;
    assert_eq!(d.expect(201)["data"]["status"], "running", "{}", d.text);
    let t = token(&app, "slow", "mcp:read mcp:write mcp:execute");
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
    let res = app.mcp("slow").bearer(&t).send(init).await;
    let sid = res.headers["mcp-session-id"]
        .to_str()
        .expect("sid")
        .to_owned();
    // Answers of 15 MiB, more than the kernel buffers for a connection: one that is not read
    // stays with ezforge until it is.
    let fifteen = 15 * 1024 * 1024;
    let call = |id: u32| {
        let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": "big", "arguments": {"bytes": fifteen}}});
        // A client of its own per call: a connection each, none read.
        crate::helpers::McpRequest::to(&crate::helpers::plain_client(), &app.mcp_url("slow"))
            .bearer(&t)
            .session(Some(&sid))
            .send_streaming(body)
    };
    let first = call(10).await;
    let second = call(11).await;
    assert_eq!(
        (first.status().as_u16(), second.status().as_u16()),
        (200, 200)
    );
    let third = crate::helpers::json(call(12).await).await;
    let message = third["error"]["message"].as_str().unwrap_or_default();
    let shown: String = third.to_string().chars().take(300).collect();
    assert!(message.contains("was dropped"), "{shown}");
    // Read (or gone), their bytes are given back.
    let taken = first.bytes().await.expect("body");
    assert!(taken.len() > fifteen);
    drop(second);
    let again = eventually("their bytes given back", || async {
        let res = crate::helpers::json(call(13).await).await;
        res["result"].is_object().then_some(res)
    })
    .await;
    assert_eq!(again["id"], 13);
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
    let res = app
        .mcp("sleepy")
        .bearer(&t)
        .tool("echo", json!({"text": "awake"}))
        .await
        .tool_text();
    assert_eq!(res, "awake");
    // An answer larger than the front door buffers (256 KiB) streams from the process whole,
    // over a connection used once.
    let big = "x".repeat(300 * 1024);
    let echoed = app
        .mcp("sleepy")
        .bearer(&t)
        .tool("echo", json!({ "text": big }))
        .await
        .tool_text();
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
        let res = app.mcp("stdio").bearer(&t).send(init.clone()).await;
        assert_eq!(res.status, 200);
        let sid = res.headers["mcp-session-id"]
            .to_str()
            .expect("sid")
            .to_owned();
        let body: Value = res.body.clone();
        assert_eq!(
            body["result"]["serverInfo"]["name"], "fixture-stdio",
            "{body}"
        );
        let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        assert_eq!(
            app.mcp("stdio")
                .bearer(&t)
                .session(Some(&sid))
                .send(note)
                .await
                .status,
            202
        );
        sid
    };
    let a = open().await;
    let b = open().await;
    assert_ne!(a, b);
    let list = app
        .mcp("stdio")
        .bearer(&t)
        .session(Some(&a))
        .send(json!({"jsonrpc":"2.0","id":2,"method":"tools/list"}))
        .await;
    let list: Value = list.body.clone();
    assert!(
        list["result"]["tools"]
            .as_array()
            .is_some_and(|t| t.len() >= 5),
        "{list}"
    );
    let echo = app
        .mcp("stdio")
        .bearer(&t)
        .session(Some(&a))
        .tool("echo", json!({"text": "over stdio"}))
        .await
        .tool_text();
    assert_eq!(echo, "over stdio");
    let pid_a = app
        .mcp("stdio")
        .bearer(&t)
        .session(Some(&a))
        .tool("pid", json!({}))
        .await
        .tool_text();
    let pid_b = app
        .mcp("stdio")
        .bearer(&t)
        .session(Some(&b))
        .tool("pid", json!({}))
        .await
        .tool_text();
    assert_ne!(pid_a, pid_b, "one process per session");

    // The cap: a third session waits for one to end.
    let third = app.mcp("stdio").bearer(&t).send(init.clone()).await;
    assert_eq!(third.status, 503);
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
    let gone = app
        .mcp("stdio")
        .bearer(&t)
        .session(Some(&a))
        .send(json!({"jsonrpc":"2.0","id":3,"method":"ping"}))
        .await;
    assert_eq!(gone.status, 404);
    let c = open().await;
    assert_ne!(c, a);
    // Requests without a session other than initialize are refused.
    let r = app
        .mcp("stdio")
        .bearer(&t)
        .send(json!({"jsonrpc":"2.0","id":4,"method":"ping"}))
        .await;
    assert_eq!(r.status, 400);
    // And without a token, nothing reaches the bridge.
    assert_eq!(app.mcp("stdio").send(init).await.status, 401);
}
