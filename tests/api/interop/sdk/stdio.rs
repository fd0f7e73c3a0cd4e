//! Real stdio MCP servers from npm, started by ezforge and bridged to Streamable HTTP.

use super::*;

/// A project and a server `slug` deployed as a stdio command; returns the admin session.
async fn stdio_world(app: &TestApp, slug: &str, command: Vec<String>) -> String {
    let admin = admin_token(app).await;
    let body = json!({"name": "Stdio"});
    let project = call(app, "POST", "/v1/projects", Some(&admin), Some(&body)).await;
    let project = project.expect(201)["data"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    call(
        app,
        "POST",
        &format!("/v1/projects/{project}/servers"),
        Some(&admin),
        Some(&json!({"name": slug, "slug": slug})),
    )
    .await
    .expect(201);
    let d = call(
        app,
        "POST",
        &format!("/v1/servers/{slug}/deployments"),
        Some(&admin),
        Some(&json!({"command": command, "transport": "stdio"})),
    )
    .await;
    assert_eq!(d.expect(201)["data"]["status"], "running", "{}", d.text);
    admin
}

#[tokio::test]
async fn typescript_sdk_client_uses_a_stdio_server_everything_through_the_bridge() {
    let Some(tc) = toolchain().await else {
        return;
    };
    let app = TestApp::spawn().await;
    let script = tc
        .dir
        .join("node_modules/@modelcontextprotocol/server-everything/dist/index.js");
    let command = vec![
        tc.node.display().to_string(),
        script.display().to_string(),
        "stdio".to_owned(),
    ];
    let admin = stdio_world(&app, "everything", command).await;
    let res = call(
        &app,
        "PATCH",
        "/v1/servers/everything",
        Some(&admin),
        Some(&json!({"toolScopes": {"get-sum": "mcp:execute"}})),
    )
    .await;
    let resource = res.expect(200)["data"]["url"]
        .as_str()
        .expect("url")
        .to_owned();
    let mut cmd = node(tc, "ts_client.mjs");
    cmd.args([resource.as_str(), "get-sum"])
        .env("EZF_EMAIL", ADMIN_EMAIL)
        .env("EZF_PASSWORD", ADMIN_PASSWORD);
    let out = run(cmd, Duration::from_secs(180)).await;
    out.assert_success();
    let result = out.result();
    assert_eq!(result["ok"], true, "{}", out.describe());
    // Each MCP session of the SDK ran its own server-everything process.
    let logs = get_as(
        &app,
        &admin,
        "/v1/servers/everything/logs?search=stdio%20process&limit=200",
    )
    .await;
    assert!(
        logs.expect(200)
            .to_string()
            .contains("started for a new MCP session"),
        "{}",
        logs.text
    );
}

#[tokio::test]
async fn server_filesystem_over_stdio_reads_a_file_through_the_front_door() {
    let Some(tc) = toolchain().await else {
        return;
    };
    // The files it serves: a directory the operator lets deployed programs read
    // (deploy.sandbox.read_paths), readable by the user they run as.
    let root = tempfile::tempdir().expect("tempdir");
    let root_path = root.path().canonicalize().expect("canonical");
    std::fs::write(
        root_path.join("hello.txt"),
        "hello from the filesystem server\n",
    )
    .expect("write");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&root_path, std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
    }
    let shared = root_path.clone();
    let app = TestApp::builder()
        .config(move |c| c.deploy.sandbox.read_paths.push(shared))
        .spawn()
        .await;
    let script = tc
        .dir
        .join("node_modules/@modelcontextprotocol/server-filesystem/dist/index.js");
    let command = vec![
        tc.node.display().to_string(),
        script.display().to_string(),
        root_path.display().to_string(),
    ];
    stdio_world(&app, "files", command).await;
    let token = crate::deploy::deployments::token(&app, "files", "mcp:read mcp:write mcp:execute");
    let url = app.url("/mcp/files");
    let tools = session_tools_list(&url, &token).await;
    assert!(tools.contains("read_text_file"), "{tools}");
    let session = McpSession::open(&url, &token).await;
    let path = root_path.join("hello.txt").display().to_string();
    let read = session
        .post(json!({"jsonrpc":"2.0","id":2,"method":"tools/call",
            "params":{"name":"read_text_file","arguments":{"path": path}}}))
        .await;
    assert_eq!(read.status(), 200);
    let body = read.text().await.expect("body");
    assert!(body.contains("hello from the filesystem server"), "{body}");
}
