//! The deployment pipeline: swap, health checks, rollback, retention, scopes, bad input, races.

use super::*;

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
        app.mcp("weather")
            .bearer(&t)
            .send(list.clone())
            .await
            .status,
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
        app.mcp("weather")
            .bearer(&t)
            .send(list.clone())
            .await
            .status,
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
        app.mcp("weather")
            .bearer(&t)
            .send(list.clone())
            .await
            .status,
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
        app.mcp("weather")
            .bearer(&t)
            .send(list.clone())
            .await
            .status,
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
    // And so is deleting it and making it again with another upstream: the same URI, now
    // routed elsewhere.
    let r = post_as(
        &app,
        &server_writer,
        &format!("/v1/projects/{project}/servers"),
        json!({ "name": "again", "upstreamUrl": up.url }),
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.text);
    assert_eq!(
        r.body["error"]["details"]["requiredScope"],
        "deployments:write"
    );
    post_as(
        &app,
        &server_writer,
        &format!("/v1/projects/{project}/servers"),
        json!({ "name": "again" }),
    )
    .await
    .expect(201);
    let both = create_key(
        &app,
        &admin,
        project,
        &["servers:write", "deployments:write"],
    )
    .await;
    post_as(
        &app,
        &both,
        &format!("/v1/projects/{project}/servers"),
        json!({ "name": "routed", "upstreamUrl": up.url }),
    )
    .await
    .expect(201);
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
    let res = app
        .mcp("broken")
        .bearer(&t)
        .send(json!({"jsonrpc":"2.0","id":1,"method":"ping"}))
        .await;
    assert_eq!(res.status, 503);

    // Why it failed is in the server's log: the process's own words.
    let logs = get_as(&app, &admin, "/v1/servers/broken/logs?limit=200").await;
    let text = logs.expect(200).to_string();
    assert!(text.contains("exiting"), "{text}");
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
            let r = app
                .mcp("steady")
                .bearer(&t)
                .send(json!({"jsonrpc":"2.0","id":1,"method":"ping"}))
                .await;
            assert_eq!(r.status, 200);
        }
        assert_eq!(up.requests(), before + 3);
    };
    let (r, ()) = tokio::join!(pending, requests);
    assert_failed(&r, "did not accept connections");
    let r = app
        .mcp("steady")
        .bearer(&t)
        .send(json!({"jsonrpc":"2.0","id":1,"method":"ping"}))
        .await;
    assert_eq!(r.status, 200, "and after");
}
