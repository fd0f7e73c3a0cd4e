//! Validation rules of servers and their auth config (BYOA included).

use super::*;

#[tokio::test]
async fn server_rules() {
    let app = roomy().await;
    let (admin, project, _) = basics(&app).await;
    let path = format!("/v1/projects/{project}/servers");
    let create = |body: Value| {
        let (app, admin, path) = (&app, &admin, &path);
        async move { post_as(app, admin, path, body).await }
    };
    create(json!({})).await.assert_invalid("name");
    create(json!({ "name": "" })).await.assert_invalid("name");
    create(json!({ "name": "s".repeat(256), "slug": "long" }))
        .await
        .assert_invalid("name");
    create(json!({ "name": "tab\there" }))
        .await
        .assert_invalid("name");
    create(json!({ "name": "ok", "slug": "Bad_Slug" }))
        .await
        .assert_invalid("slug");
    create(json!({ "name": "ok", "slug": "s".repeat(64) }))
        .await
        .assert_invalid("slug");
    create(json!({ "name": "???" }))
        .await
        .assert_invalid("slug");
    for bad in [
        "ftp://127.0.0.1/mcp",
        "/relative/mcp",
        "127.0.0.1:3001",
        "http://user:pass@127.0.0.1:3001/mcp",
        "http://127.0.0.1:3001/mcp#frag",
        "http://",
        "javascript:alert(1)",
        "",
        // A host the URL parser takes but TLS cannot name: it could never serve.
        "https://-a.example/mcp",
    ] {
        create(json!({ "name": "up", "upstreamUrl": bad }))
            .await
            .assert_invalid("upstreamUrl");
    }
    let long_url = format!("http://127.0.0.1:3001/{}", "a".repeat(2100));
    create(json!({ "name": "up", "upstreamUrl": long_url }))
        .await
        .assert_invalid("upstreamUrl");
    for bad in ["health", "/he alth", "/a\nb"] {
        create(json!({ "name": "hc", "healthCheckPath": bad }))
            .await
            .assert_invalid("healthCheckPath");
    }
    let long_path = format!("/{}", "h".repeat(255));
    create(json!({ "name": "hc", "healthCheckPath": long_path }))
        .await
        .assert_invalid("healthCheckPath");
    for bad in [0, 101, -1] {
        create(json!({ "name": "rc", "deploymentRetentionCount": bad }))
            .await
            .assert_invalid("deploymentRetentionCount");
    }
    for bad in [0, -60, 2_592_001] {
        create(json!({ "name": "as", "autoStopSeconds": bad }))
            .await
            .assert_invalid("autoStopSeconds");
    }
    create(json!({ "name": "ts", "toolScopes": { "delete_repo": "bad scope" } }))
        .await
        .assert_invalid("toolScopes.delete_repo");
    create(json!({ "name": "ts", "toolScopes": { "x": "" } }))
        .await
        .assert_invalid("toolScopes.x");

    // Everything valid at once, at the edges.
    let ok = create(json!({
        "name": "Weather Server",
        "upstreamUrl": "http://127.0.0.1:3001/mcp",
        "healthCheckPath": "/health",
        "rollbackOnHealthCheckFailure": false,
        "deploymentRetentionCount": 100,
        "autoStopSeconds": 2_592_000,
        "toolScopes": { "delete_repo": "mcp:execute" },
    }))
    .await;
    let s = ok.expect(201)["data"].clone();
    assert_eq!(s["slug"], "weather-server");
    // An upstream makes it running (or unreachable, once probed: nothing listens there).
    assert!(
        matches!(s["status"].as_str(), Some("running" | "unreachable")),
        "{s}"
    );
    assert_eq!(s["upstreamUrl"], "http://127.0.0.1:3001/mcp");
    assert_eq!(s["healthCheckPath"], "/health");
    assert_eq!(s["rollbackOnHealthCheckFailure"], false);
    assert_eq!(s["deploymentRetentionCount"], 100);
    assert_eq!(s["autoStopSeconds"], 2_592_000);
    assert_eq!(s["toolScopes"], json!({ "delete_repo": "mcp:execute" }));
    assert_eq!(s["authMode"], "ezforge_managed");
    assert_eq!(s["managedBy"], "api");
    assert_eq!(s["projectId"], project.as_str());
    assert!(
        s["url"]
            .as_str()
            .expect("url")
            .ends_with("/mcp/weather-server"),
        "{s}"
    );
    let lower = create(json!({ "name": "edges", "deploymentRetentionCount": 1, "autoStopSeconds": 60, "upstreamUrl": "https://mcp.example.com/mcp" })).await;
    let lower = lower.expect(201)["data"].clone();
    assert_eq!(lower["deploymentRetentionCount"], 1);
    assert_eq!(lower["autoStopSeconds"], 60);
    let defaults = create(json!({ "name": "Defaults" })).await;
    let d = defaults.expect(201)["data"].clone();
    assert_eq!(d["status"], "stopped");
    assert_eq!(d["deploymentRetentionCount"], 10);
    assert_eq!(d["rollbackOnHealthCheckFailure"], true);
    assert!(d["autoStopSeconds"].is_null());
    assert!(d["healthCheckPath"].is_null());
    assert_eq!(d["toolScopes"], json!({}));

    // Slugs are unique across projects.
    let other = create_project(&app, &admin, "Elsewhere").await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let dup = post_as(
        &app,
        &admin,
        &format!("/v1/projects/{other}/servers"),
        json!({ "name": "x", "slug": "weather-server" }),
    )
    .await;
    assert_eq!(dup.status, 409, "{}", dup.text);

    // PATCH: partial; the same rules; the slug cannot change; null clears.
    let sp = "/v1/servers/weather-server";
    patch_as(&app, &admin, sp, json!({ "slug": "renamed" }))
        .await
        .assert_invalid("slug");
    for bad in ["ftp://x", "https://-a.example/mcp"] {
        patch_as(&app, &admin, sp, json!({ "upstreamUrl": bad }))
            .await
            .assert_invalid("upstreamUrl");
    }
    patch_as(&app, &admin, sp, json!({ "deploymentRetentionCount": 0 }))
        .await
        .assert_invalid("deploymentRetentionCount");
    patch_as(&app, &admin, sp, json!({ "name": "" }))
        .await
        .assert_invalid("name");
    let unchanged = get_as(&app, &admin, sp).await;
    assert_eq!(
        unchanged.body["data"]["name"], "Weather Server",
        "a refused PATCH writes nothing"
    );
    assert_eq!(unchanged.body["data"]["deploymentRetentionCount"], 100);
    let res = patch_as(
        &app,
        &admin,
        sp,
        json!({ "name": "Renamed", "upstreamUrl": null, "autoStopSeconds": null }),
    )
    .await;
    let s = res.expect(200)["data"].clone();
    assert_eq!(s["name"], "Renamed");
    assert!(s["upstreamUrl"].is_null());
    assert!(s["autoStopSeconds"].is_null());
    assert_eq!(s["status"], "stopped");
    assert_eq!(s["healthCheckPath"], "/health", "fields not sent stay");
    assert_eq!(s["slug"], "weather-server");
    assert_eq!(
        delete_as(&app, &admin, "/v1/servers/no-such-server")
            .await
            .status,
        404
    );
}

fn byoa() -> Value {
    json!({
        "authorizationEndpoint": "https://idp.example.com/authorize",
        "tokenEndpoint": "https://idp.example.com/token",
        "jwksUri": "https://idp.example.com/.well-known/jwks.json",
        "issuer": "https://idp.example.com",
    })
}

#[tokio::test]
async fn a_byoa_issuer_may_not_be_our_own() {
    let app = TestApp::builder()
        .config(|c| c.server.public_url = Some("https://ezforge.example".into()))
        .spawn()
        .await;
    let (admin, _, server) = basics(&app).await;
    let path = format!("/v1/servers/{server}/auth");
    for ours in ["https://ezforge.example", "https://ezforge.example/"] {
        let mut cfg = byoa();
        cfg["issuer"] = json!(ours);
        let res = patch_as(
            &app,
            &admin,
            &path,
            json!({ "authMode": "byoa", "byoaConfig": cfg }),
        )
        .await;
        res.assert_invalid("byoaConfig.issuer");
    }
}

#[tokio::test]
async fn only_an_owner_chooses_who_vouches_for_a_servers_callers() {
    // A member naming an issuer of their own could sign tokens saying they are anyone: the
    // upstream would read that `sub` in its assertion.
    let app = TestApp::spawn().await;
    let (admin, project, server) = basics(&app).await;
    let (_, member) = user_session(&app, &admin, "member@example.com").await;
    add_member(&app, &admin, &project, "member@example.com", "member").await;
    let path = format!("/v1/servers/{server}/auth");
    get_as(&app, &member, &path).await.expect(200);
    let switch = json!({ "authMode": "byoa", "byoaConfig": byoa() });
    let r = patch_as(&app, &member, &path, switch.clone()).await;
    assert_eq!(r.status, 403, "{}", r.text);
    assert_eq!(
        get_as(&app, &admin, &path).await.expect(200)["data"]["authMode"],
        "ezforge_managed",
        "unchanged"
    );
    let (_, owner) = user_session(&app, &admin, "owner@example.com").await;
    add_member(&app, &admin, &project, "owner@example.com", "owner").await;
    patch_as(&app, &owner, &path, switch).await.expect(200);
}

#[tokio::test]
async fn auth_config_rules() {
    let app = TestApp::spawn().await;
    let (admin, _, server) = basics(&app).await;
    let path = format!("/v1/servers/{server}/auth");
    let patch = |body: Value| {
        let (app, admin, path) = (&app, &admin, &path);
        async move { patch_as(app, admin, path, body).await }
    };
    let initial = get_as(&app, &admin, &path).await;
    assert_eq!(
        initial.expect(200),
        &json!({ "data": { "authMode": "ezforge_managed", "byoaConfig": null } })
    );
    patch(json!({})).await.assert_invalid("authMode");
    patch(json!({ "authMode": "oauth" }))
        .await
        .assert_invalid("authMode");
    patch(json!({ "authMode": "BYOA", "byoaConfig": byoa() }))
        .await
        .assert_invalid("authMode");
    patch(json!({ "authMode": "byoa" }))
        .await
        .assert_invalid("byoaConfig");
    for field in [
        "authorizationEndpoint",
        "tokenEndpoint",
        "jwksUri",
        "issuer",
    ] {
        let name = format!("byoaConfig.{field}");
        let mut missing = byoa();
        missing.as_object_mut().expect("object").remove(field);
        patch(json!({ "authMode": "byoa", "byoaConfig": missing }))
            .await
            .assert_invalid(&name);
        for bad in [
            "http://idp.example.com/x",
            "/relative",
            "idp.example.com",
            "",
            "https://idp.example.com/x#frag",
            "https://user:pw@idp.example.com/x",
        ] {
            let mut cfg = byoa();
            cfg[field] = json!(bad);
            let res = patch(json!({ "authMode": "byoa", "byoaConfig": cfg })).await;
            assert_eq!(res.status, 422, "{field} = {bad:?}: {}", res.text);
            res.assert_invalid(&name);
        }
    }
    let mut q = byoa();
    q["issuer"] = json!("https://idp.example.com?tenant=1");
    patch(json!({ "authMode": "byoa", "byoaConfig": q }))
        .await
        .assert_invalid("byoaConfig.issuer");
    let mut extra = byoa();
    extra["userinfoEndpoint"] = json!("https://idp.example.com/userinfo");
    let res = patch(json!({ "authMode": "byoa", "byoaConfig": extra })).await;
    assert_eq!(res.status, 400, "unknown field: {}", res.text);
    assert!(res.text.contains("userinfoEndpoint"), "{}", res.text);
    let still = get_as(&app, &admin, &path).await;
    assert_eq!(
        still.body["data"]["authMode"], "ezforge_managed",
        "refusals write nothing"
    );

    // A valid config: 200 with the new config, and GET shows it. Query params are fine on the
    // endpoints (only the issuer may not have one).
    let mut good = byoa();
    good["authorizationEndpoint"] = json!("https://idp.example.com/authorize?prompt=login");
    let res = patch(json!({ "authMode": "byoa", "byoaConfig": good })).await;
    let want = json!({ "data": { "authMode": "byoa", "byoaConfig": good } });
    assert_eq!(res.expect(200)["data"], want["data"]);
    // The issuer cannot be looked at from here: the switch is made, with warnings saying why.
    assert!(
        res.body["warnings"]
            .as_array()
            .is_some_and(|w| !w.is_empty()),
        "{}",
        res.text
    );
    assert_eq!(get_as(&app, &admin, &path).await.body, want);
    let s = get_as(&app, &admin, &format!("/v1/servers/{server}")).await;
    assert_eq!(s.body["data"]["authMode"], "byoa");
    // And back.
    let res = patch(json!({ "authMode": "ezforge_managed" })).await;
    assert_eq!(
        res.expect(200),
        &json!({ "data": { "authMode": "ezforge_managed", "byoaConfig": null } })
    );
}

#[tokio::test]
async fn auth_config_cannot_leave_byoa_when_the_deployment_is_byoa() {
    let app = TestApp::builder()
        .config(|c| {
            c.auth.mode = ezforge::config::AuthMode::Byoa;
            c.auth.byoa = Some(ezforge::config::ByoaConfig {
                issuer: "https://idp.example.com".into(),
                jwks_uri: "https://idp.example.com/jwks".into(),
                authorization_endpoint: "https://idp.example.com/authorize".into(),
                token_endpoint: "https://idp.example.com/token".into(),
            })
        })
        .spawn()
        .await;
    let (admin, _, server) = basics(&app).await;
    let path = format!("/v1/servers/{server}/auth");
    let res = get_as(&app, &admin, &path).await;
    assert_eq!(
        res.expect(200)["data"]["authMode"],
        "byoa",
        "new servers follow the deployment"
    );
    let res = patch_as(
        &app,
        &admin,
        &path,
        json!({ "authMode": "ezforge_managed" }),
    )
    .await;
    assert_eq!(res.status, 409, "{}", res.text);
    res.assert_error_shape();
    assert_eq!(res.code(), "CONFLICT");
    assert_eq!(
        get_as(&app, &admin, &path).await.body["data"]["authMode"],
        "byoa"
    );
    // Another issuer is still fine.
    let res = patch_as(
        &app,
        &admin,
        &path,
        json!({ "authMode": "byoa", "byoaConfig": byoa() }),
    )
    .await;
    assert_eq!(res.expect(200)["data"]["byoaConfig"], byoa());
}
