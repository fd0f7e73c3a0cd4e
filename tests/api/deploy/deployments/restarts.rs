//! Restarts and ports: what comes back after a restart, fixed ports handed over, unreachable upstreams.

use super::*;

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
    let res = app.mcp("phoenix").bearer(&t).send(init).await;
    assert_eq!(res.status, 200);
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
    assert_eq!(app.mcp("phoenix").bearer(&t).send(ping).await.status, 503);
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
        .write(move |tx| {
            ezforge::store::servers::set_status(
                tx,
                &id,
                ezforge::domain::kinds::ServerStatus::Provisioning,
                None,
            )
        })
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
    let res = app
        .mcp("cleared")
        .bearer(&t)
        .send(json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}))
        .await;
    assert_eq!(res.status, 503, "nothing serves the server any more");
    drop(app);
    drop(tmp);
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
    let port = ezforge::deploy::process::free_port(|_| false).expect("a free port");
    let t = token(&app, "fixed", "mcp:execute");
    let pid = |app: &TestApp, t: &str| app.mcp("fixed").bearer(t).tool("pid", json!({}));

    let v1 = deploy(&app, &admin, "fixed", on_port(http_command(&[]), port)).await;
    assert_eq!(v1.expect(201)["data"]["status"], "running");
    let first = pid(&app, &t).await.tool_text();

    // v2 never listens. It used to pass its check on v1's answers (v1 held the port), take the
    // traffic, and leave nothing serving once v1 was stopped.
    let never = on_port(
        json!({ "command": ["sleep", "30"], "transport": "http" }),
        port,
    );
    let v2 = deploy(&app, &admin, "fixed", never).await;
    assert_failed(&v2, "did not accept connections");
    // v1 was stopped to free the port, and started again.
    let again = pid(&app, &t).await.tool_text();
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
    let back = pid(&app, &t).await.tool_text();
    assert_ne!(back, again);
    let s = get_as(&app, &admin, "/v1/servers/fixed").await;
    assert_eq!(s.expect(200)["data"]["status"], "running");
    let again = back;

    // A working v3 takes the port over.
    let v3 = deploy(&app, &admin, "fixed", on_port(http_command(&[]), port)).await;
    assert_eq!(v3.expect(201)["data"]["status"], "running", "{}", v3.text);
    assert_eq!(v3.body["data"]["active"], true);
    let third = pid(&app, &t).await.tool_text();
    assert_ne!(third, again);

    // A port held by another program fails the deployment before anything is started.
    let squatter = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("bind");
    let taken = squatter.local_addr().expect("addr").port();
    let v4 = deploy(&app, &admin, "fixed", on_port(http_command(&[]), taken)).await;
    assert_failed(&v4, &format!("port {taken} is not free"));
    assert_eq!(pid(&app, &t).await.tool_text(), third, "v3 serves on");

    // Another server may not name it: not while it serves, nor while it is stopped (it would
    // not start again).
    let project = get_as(&app, &admin, "/v1/servers/fixed").await.body["data"]["projectId"]
        .as_str()
        .expect("project")
        .to_owned();
    crate::helpers::create_server(&app, &admin, &project, "other").await;
    let other = deploy(&app, &admin, "other", on_port(http_command(&[]), port)).await;
    assert_failed(
        &other,
        &format!("port {port} is another supervised server's"),
    );
    assert_eq!(pid(&app, &t).await.tool_text(), third, "v3 serves on");
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
