//! What a key may mint, what a member sees, concurrent writes.

use super::*;

#[tokio::test]
async fn a_key_cannot_mint_a_key_with_scopes_it_lacks() {
    let app = TestApp::spawn().await;
    let (admin, project, _) = basics(&app).await;
    let path = format!("/v1/projects/{project}/keys");
    let writer = create_key(&app, &admin, &project, &["servers:write"]).await;
    let res = post_as(
        &app,
        &writer,
        &path,
        json!({ "name": "up", "scopes": ["servers:write", "logs:read"] }),
    )
    .await;
    assert_eq!(res.status, 403, "{}", res.text);
    res.assert_error_shape();
    assert_eq!(res.body["error"]["details"]["requiredScope"], "logs:read");
    let res = post_as(
        &app,
        &writer,
        &path,
        json!({ "name": "up", "scopes": ["billing:read"] }),
    )
    .await;
    assert_eq!(
        res.body["error"]["details"]["requiredScope"], "billing:read",
        "{}",
        res.text
    );
    // The same or fewer scopes: fine.
    let both = create_key(
        &app,
        &admin,
        &project,
        &["servers:write", "servers:read", "logs:read"],
    )
    .await;
    let res = post_as(
        &app,
        &both,
        &path,
        json!({ "name": "down", "scopes": ["servers:read", "logs:read"] }),
    )
    .await;
    res.expect(201);
    let res = post_as(
        &app,
        &writer,
        &path,
        json!({ "name": "same", "scopes": ["servers:write"] }),
    )
    .await;
    let minted = res.expect(201)["data"]["key"]
        .as_str()
        .expect("key")
        .to_owned();
    // And a minted key cannot climb either.
    let res = post_as(
        &app,
        &minted,
        &path,
        json!({ "name": "x", "scopes": ["servers:read"] }),
    )
    .await;
    assert_eq!(res.status, 403);
    assert_eq!(
        res.body["error"]["details"]["requiredScope"],
        "servers:read"
    );
    // A key without servers:write cannot mint at all.
    let reader = create_key(&app, &admin, &project, &["servers:read"]).await;
    let res = post_as(
        &app,
        &reader,
        &path,
        json!({ "name": "x", "scopes": ["servers:read"] }),
    )
    .await;
    assert_eq!(res.status, 403);
    assert_eq!(
        res.body["error"]["details"]["requiredScope"],
        "servers:write"
    );
    // A key cannot mint keys for another project, even with every scope.
    let other = create_project(&app, &admin, "Other").await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let res = post_as(
        &app,
        &both,
        &format!("/v1/projects/{other}/keys"),
        json!({ "name": "x", "scopes": ["servers:read"] }),
    )
    .await;
    assert_eq!(res.status, 404, "{}", res.text);
    // Keys cannot create projects or users.
    assert_eq!(
        post_as(&app, &both, "/v1/projects", json!({ "name": "K" }))
            .await
            .status,
        403
    );
    assert_eq!(
        post_as(
            &app,
            &both,
            "/v1/users",
            json!({ "email": "k@example.com" })
        )
        .await
        .status,
        403
    );
}

#[tokio::test]
async fn a_key_cannot_mint_a_key_that_outlives_it() {
    let app = TestApp::spawn().await;
    let (admin, project, _) = basics(&app).await;
    let path = format!("/v1/projects/{project}/keys");
    let in_hours = |h: u64| {
        humantime::format_rfc3339_seconds(
            SystemTime::now() + std::time::Duration::from_secs(h * 3600),
        )
        .to_string()
    };
    let parent = post_as(
        &app,
        &admin,
        &path,
        json!({ "name": "ci", "scopes": ["servers:read", "servers:write"], "expiresAt": in_hours(1) }),
    )
    .await;
    let parent_data = parent.expect(201)["data"].clone();
    let parent_key = parent_data["key"].as_str().expect("key").to_owned();
    // Later than its own expiry: refused. None given: it gets the parent's.
    let res = post_as(
        &app,
        &parent_key,
        &path,
        json!({ "name": "x", "scopes": ["servers:read"], "expiresAt": in_hours(2) }),
    )
    .await;
    res.assert_invalid("expiresAt");
    let child = post_as(
        &app,
        &parent_key,
        &path,
        json!({ "name": "child", "scopes": ["servers:read", "servers:write"] }),
    )
    .await;
    let child = child.expect(201)["data"].clone();
    assert_eq!(child["expiresAt"], parent_data["expiresAt"], "{child}");
    let child_key = child["key"].as_str().expect("key").to_owned();
    let grandchild = create_key(&app, &child_key, &project, &["servers:read"]).await;
    // A session's keys are unaffected by all this.
    let sibling = create_key(&app, &admin, &project, &["servers:read"]).await;

    // Revoking the parent revokes what was made with it, down the line.
    let id = parent_data["id"].as_str().expect("id");
    delete_as(&app, &admin, &format!("/v1/keys/{id}"))
        .await
        .expect(204);
    for (what, key) in [("child", &child_key), ("grandchild", &grandchild)] {
        let res = get_as(&app, key, "/v1/servers").await;
        assert_eq!(res.status, 401, "{what}: {}", res.text);
    }
    get_as(&app, &sibling, "/v1/servers").await.expect(200);
}

/// Sessions act within their projects only; a member cannot reach into another project by id.
#[tokio::test]
async fn a_member_sees_only_their_projects() {
    let app = TestApp::spawn().await;
    let admin = admin_token(&app).await;
    let (_, alice) = user_session(&app, &admin, "alice@example.com").await;
    let (_, bob) = user_session(&app, &admin, "bob@example.com").await;
    let a = create_project(&app, &alice, "Alice's").await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let s = create_server(&app, &alice, &a, "Alice Server").await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let b = create_project(&app, &bob, "Bob's").await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let listed = get_as(&app, &bob, "/v1/projects").await;
    let ids: Vec<&str> = listed.body["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|p| p["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, [b.as_str()]);
    assert_eq!(listed.body["data"][0]["role"], "owner");
    assert_eq!(
        get_as(&app, &bob, &format!("/v1/projects/{a}"))
            .await
            .status,
        404
    );
    assert_eq!(
        get_as(&app, &bob, &format!("/v1/servers/{s}")).await.status,
        404
    );
    assert_eq!(
        post_as(
            &app,
            &bob,
            &format!("/v1/projects/{a}/servers"),
            json!({ "name": "Intruder" })
        )
        .await
        .status,
        404
    );
    // The admin sees both.
    let all = get_as(&app, &admin, "/v1/projects").await;
    assert_eq!(all.body["meta"]["total"], 2);
    // A member (not owner) of Alice's project sees it with role "member".
    add_member(&app, &alice, &a, "bob@example.com", "member").await;
    let p = get_as(&app, &bob, &format!("/v1/projects/{a}")).await;
    assert_eq!(p.expect(200)["data"]["role"], "member");
    assert_eq!(
        get_as(&app, &bob, &format!("/v1/servers/{s}")).await.status,
        200
    );
    let _ = login(&app, "bob@example.com", USER_PASSWORD).await;
}

/// Writes arriving together are serialised by the store, never a 500 (nor a 503 for a handful).
#[tokio::test]
async fn concurrent_writes_all_succeed() {
    let app = roomy().await;
    let (admin, project, server) = basics(&app).await;
    let (app, admin, project, server) = (&app, &admin, &project, &server);
    let before = table_counts(app);
    let statuses = futures_util::future::join_all((0..12).flat_map(|i| {
        [
            futures_util::future::Either::Left(async move {
                let body = json!({ "name": format!("Concurrent {i}") });
                (
                    "project",
                    post_as(app, admin, "/v1/projects", body).await.status,
                )
            }),
            futures_util::future::Either::Right(futures_util::future::Either::Left(async move {
                let body = json!({ "name": format!("concurrent server {i}") });
                let path = format!("/v1/projects/{project}/servers");
                ("server", post_as(app, admin, &path, body).await.status)
            })),
            futures_util::future::Either::Right(futures_util::future::Either::Right(async move {
                let path = format!("/v1/servers/{server}/env/VAR_{i}");
                (
                    "env",
                    put_as(app, admin, &path, json!({ "value": "v" }))
                        .await
                        .status,
                )
            })),
        ]
    }))
    .await;
    let bad: Vec<_> = statuses
        .iter()
        .filter(|(_, s)| !matches!(s, 200 | 201))
        .collect();
    assert!(
        bad.is_empty(),
        "concurrent writes failed: {bad:?} (all: {statuses:?})"
    );
    let after = table_counts(app);
    let count = |c: &[(&str, i64)], t: &str| c.iter().find(|(n, _)| *n == t).map(|(_, n)| *n);
    assert_eq!(
        count(&after, "projects"),
        count(&before, "projects").map(|n| n + 12)
    );
    assert_eq!(
        count(&after, "servers"),
        count(&before, "servers").map(|n| n + 12)
    );
    assert_eq!(
        count(&after, "env_vars"),
        count(&before, "env_vars").map(|n| n + 12)
    );
}
