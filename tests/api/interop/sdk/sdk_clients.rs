//! The official SDK clients (TypeScript, Python), end to end.

use super::*;

/// A managed server `everything` in front of server-everything, whose `get-sum` tool (annotated
/// read-only upstream) is raised to `mcp:execute` with `toolScopes`, so that the first token
/// (`mcp:read`, what our 401 asks for) lacks it: the step-up.
async fn everything_world(tc: &Toolchain) -> (TestApp, Service, String, Value) {
    let (upstream, upstream_url) = server_everything(tc).await;
    let app = TestApp::spawn().await;
    let (admin, server) = project_with_server(&app, "everything", &upstream_url).await;
    let res = call(
        &app,
        "PATCH",
        "/v1/servers/everything",
        Some(&admin),
        Some(&json!({"toolScopes": {"get-sum": "mcp:execute"}})),
    )
    .await;
    assert_eq!(
        res.expect(200)["data"]["toolScopes"]["get-sum"],
        "mcp:execute"
    );
    (app, upstream, admin, server)
}

/// What both SDK tests check on our side after the client is done.
async fn assert_client_left_a_working_grant(
    app: &TestApp,
    admin: &str,
    resource: &str,
    client_name: &str,
    result: &Value,
    upstream: &Service,
) {
    let client_id = result["clientId"].as_str().expect("clientId");
    let grants = grants(app, admin).await;
    let mine: Vec<&Value> = grants
        .iter()
        .filter(|g| g["clientId"] == client_id)
        .collect();
    assert!(!mine.is_empty(), "a grant for {client_id}: {grants:?}");
    assert!(
        mine.iter()
            .all(|g| g["clientName"] == client_name && g["resource"] == resource),
        "{mine:?}"
    );
    assert!(
        mine.iter().any(|g| g["scopes"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s == "mcp:execute"))),
        "the stepped-up grant: {mine:?}"
    );
    // The refreshed access token is ours, for this server, and the front door takes it.
    let token = result["refreshedAccessToken"].as_str().expect("token");
    let (header, claims) = jwt_parts(token);
    assert_eq!(header["typ"], "at+jwt");
    // The server's own issuer, the one its protected-resource metadata names.
    let slug = resource.rsplit('/').next().expect("slug");
    assert_eq!(claims["iss"], format!("{}/oauth/mcp/{slug}", app.address));
    assert_eq!(claims["aud"], resource);
    assert_eq!(claims["client_id"], client_id);
    let tools = session_tools_list(resource, token).await;
    assert!(tools.contains("get-sum"), "{tools}");
    // The real upstream served the calls.
    assert!(
        upstream.output().contains("Received MCP POST request"),
        "{}",
        upstream.output()
    );
}

#[tokio::test]
async fn typescript_sdk_client_authorizes_calls_tools_steps_up_and_refreshes() {
    let Some(tc) = toolchain().await else {
        return;
    };
    let (app, upstream, admin, server) = everything_world(tc).await;
    let resource = server["url"].as_str().expect("url").to_owned();
    let mut cmd = node(tc, "ts_client.mjs");
    cmd.args([resource.as_str(), "get-sum"])
        .env("EZF_EMAIL", ADMIN_EMAIL)
        .env("EZF_PASSWORD", ADMIN_PASSWORD);
    let out = run(cmd, Duration::from_secs(180)).await;
    out.assert_success();
    let result = out.result();
    assert_eq!(result["ok"], true);
    // The SDK asks for what the 401 names (mcp:read), never offline_access; it registered the
    // refresh_token grant, so it gets a refresh token all the same (issue 19).
    assert_eq!(result["firstScope"], "mcp:read", "{result}");
    assert_eq!(result["firstRefresh"], true, "{result}");
    let www = result["stepUpChallenge"].as_str().expect("challenge");
    assert!(
        www.contains("error=\"insufficient_scope\"") && www.contains("mcp:execute"),
        "{www}"
    );
    assert!(
        scopes(&result["authorizationScopes"][1]).contains(&"mcp:execute".to_owned()),
        "re-authorized with the added scope: {result}"
    );
    // SDK 1.x holding a refresh token refreshes on a 403 instead of re-authorizing
    // (typescript-sdk #2255): the script re-authorizes as an application must.
    assert_eq!(result["stepUpBy"], "application", "{result}");
    assert!(
        scopes(&result["refreshScope"]).contains(&"mcp:execute".to_owned()),
        "the refresh keeps the stepped-up scope: {result}"
    );
    assert_eq!(
        result["logins"], 1,
        "signed in once, then the session cookie: {result}"
    );
    assert_client_left_a_working_grant(
        &app,
        &admin,
        &resource,
        "ezForge interop (TypeScript SDK)",
        &result,
        &upstream,
    )
    .await;
}

#[tokio::test]
async fn python_sdk_client_authorizes_calls_tools_steps_up_and_refreshes() {
    let Some(tc) = toolchain().await else {
        return;
    };
    let (app, upstream, admin, server) = everything_world(tc).await;
    let resource = server["url"].as_str().expect("url").to_owned();
    let mut cmd = Command::new(&tc.python);
    cmd.current_dir(&tc.dir)
        .args(["py_client.py", resource.as_str(), "get-sum"])
        .env("EZF_EMAIL", ADMIN_EMAIL)
        .env("EZF_PASSWORD", ADMIN_PASSWORD)
        .env("PYTHONDONTWRITEBYTECODE", "1");
    let out = run(cmd, Duration::from_secs(180)).await;
    out.assert_success();
    let result = out.result();
    assert_eq!(result["ok"], true);
    // The Python SDK adds offline_access itself (SEP-2207: the AS lists it in scopes_supported
    // and the client registered the refresh_token grant).
    assert_eq!(
        scopes(&result["firstScope"]),
        ["mcp:read", "offline_access"],
        "{result}"
    );
    assert_eq!(result["firstRefresh"], true, "{result}");
    let www = result["stepUpChallenge"].as_str().expect("challenge");
    assert!(
        www.contains("error=\"insufficient_scope\"") && www.contains("mcp:execute"),
        "{www}"
    );
    // SEP-2350: the step-up asks for the union of what it had and what the challenge names.
    assert_eq!(
        scopes(&result["steppedScope"]),
        ["mcp:execute", "mcp:read", "offline_access"],
        "{result}"
    );
    assert_client_left_a_working_grant(
        &app,
        &admin,
        &resource,
        "ezForge interop (Python SDK)",
        &result,
        &upstream,
    )
    .await;
}
