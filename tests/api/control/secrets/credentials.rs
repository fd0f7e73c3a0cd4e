//! Revoked, expired and malformed credentials; sessions ending; API key use recorded.

use super::*;

#[tokio::test]
async fn a_revoked_key_is_refused_from_the_next_request() {
    let app = TestApp::spawn().await;
    let admin = admin_token(&app).await;
    let project = create_project(&app, &admin, "Revocation").await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let k = create_key_data(&app, &admin, &project, &["servers:read", "servers:write"]).await;
    let key = k["key"].as_str().expect("key").to_owned();
    let id = k["id"].as_str().expect("id").to_owned();
    get_as(&app, &key, "/v1/servers").await.expect(200);
    delete_as(&app, &admin, &format!("/v1/keys/{id}"))
        .await
        .expect(204);
    let res = get_as(&app, &key, "/v1/servers").await;
    assert_eq!(res.status, 401, "{}", res.text);
    res.assert_error_shape();
    assert_eq!(res.code(), "UNAUTHENTICATED");
    assert_eq!(
        delete_as(&app, &admin, &format!("/v1/keys/{id}"))
            .await
            .status,
        404
    );
    let listed = get_as(&app, &admin, &format!("/v1/projects/{project}/keys")).await;
    assert!(
        !listed.text.contains(&id),
        "a revoked key is gone from the list"
    );

    // A key may revoke itself; the very next request is refused.
    let own = create_key_data(&app, &admin, &project, &["servers:write"]).await;
    let own_key = own["key"].as_str().expect("key").to_owned();
    let own_id = own["id"].as_str().expect("id");
    delete_as(&app, &own_key, &format!("/v1/keys/{own_id}"))
        .await
        .expect(204);
    assert_eq!(
        post_as(
            &app,
            &own_key,
            &format!("/v1/projects/{project}/servers"),
            json!({ "name": "late" })
        )
        .await
        .status,
        401
    );
    // A key of one project cannot revoke another project's key (it cannot see it).
    let other = create_project(&app, &admin, "Other").await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let victim = create_key_data(&app, &admin, &other, &["servers:read"]).await;
    let attacker = create_key(&app, &admin, &project, &["servers:write"]).await;
    let res = delete_as(
        &app,
        &attacker,
        &format!("/v1/keys/{}", victim["id"].as_str().expect("id")),
    )
    .await;
    assert_eq!(res.status, 404, "{}", res.text);
    get_as(&app, victim["key"].as_str().expect("key"), "/v1/servers")
        .await
        .expect(200);
}

#[tokio::test]
async fn an_expired_key_is_refused() {
    let app = TestApp::spawn().await;
    let admin = admin_token(&app).await;
    let project = create_project(&app, &admin, "Expiry").await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let soon = humantime::format_rfc3339_seconds(SystemTime::now() + Duration::from_secs(3600))
        .to_string();
    let res = post_as(
        &app,
        &admin,
        &format!("/v1/projects/{project}/keys"),
        json!({ "name": "short-lived", "scopes": ["servers:read"], "expiresAt": soon }),
    )
    .await;
    let data = res.expect(201)["data"].clone();
    let key = data["key"].as_str().expect("key").to_owned();
    get_as(&app, &key, "/v1/servers").await.expect(200);
    // Time passes: move its expiry into the past.
    db(&app)
        .execute(
            "UPDATE api_keys SET expires_at = ?1 WHERE id = ?2",
            rusqlite::params![now() - 1, data["id"].as_str().expect("id")],
        )
        .expect("expire");
    let res = get_as(&app, &key, "/v1/servers").await;
    assert_eq!(res.status, 401, "{}", res.text);
    assert_eq!(res.code(), "UNAUTHENTICATED");
}

/// Inserts a session row for the admin with a known token.
fn insert_session(app: &TestApp, token: &str, expires_at: i64) {
    db(app)
        .execute(
            "INSERT INTO sessions (token_hash, user_id, created_at, expires_at) VALUES (?1, ?2, ?3, ?4)",
            rusqlite::params![sha256_hex(token), admin_id(app), now() - 7200, expires_at],
        )
        .expect("insert session");
}

#[tokio::test]
async fn expired_sessions_are_refused() {
    let app = TestApp::spawn().await;
    let live = "ezf_sess_live-session-token-for-the-test-0000000";
    let dead = "ezf_sess_expired-session-token-for-the-test-000";
    let edge = "ezf_sess_expiring-right-now-token-for-the-test";
    insert_session(&app, live, now() + 600);
    insert_session(&app, dead, now() - 1);
    insert_session(&app, edge, now());
    // The inserted live session works: the way we insert is the way the server stores.
    let ok = get_as(&app, live, "/v1/auth/session").await;
    assert_eq!(ok.expect(200)["data"]["user"]["email"], ADMIN_EMAIL);
    for token in [dead, edge] {
        let res = get_as(&app, token, "/v1/auth/session").await;
        assert_eq!(res.status, 401, "{token}: {}", res.text);
        res.assert_error_shape();
        assert_eq!(res.code(), "UNAUTHENTICATED");
        let res = post_as(&app, token, "/v1/projects", json!({ "name": "Zombie" })).await;
        assert_eq!(res.status, 401, "{}", res.text);
        // As a cookie too.
        let res = plain_client()
            .get(app.url("/v1/projects"))
            .header("cookie", format!("ezf_session={token}"))
            .send()
            .await
            .expect("send");
        assert_eq!(res.status(), 401);
    }
    let res = plain_client()
        .get(app.url("/v1/projects"))
        .header("cookie", format!("ezf_session={live}"))
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), 200, "the cookie carries a live session");
}

#[tokio::test]
async fn a_short_session_ttl_expires_sessions() {
    let app = TestApp::builder()
        .config(|c| c.auth.session_ttl = ezforge::config::Duration::secs(1))
        .spawn()
        .await;
    let res = call(
        &app,
        "POST",
        "/v1/auth/login",
        None,
        Some(&json!({ "email": ADMIN_EMAIL, "password": ADMIN_PASSWORD })),
    )
    .await;
    let token = res.expect(200)["data"]["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let cookie = res.header("set-cookie").expect("cookie").to_lowercase();
    assert!(
        cookie.contains("max-age=1"),
        "Max-Age follows session_ttl: {cookie}"
    );
    let expires = res.body["data"]["expiresAt"].as_str().expect("expiresAt");
    let at = humantime::parse_rfc3339(expires).expect("rfc3339");
    let delta = at.duration_since(UNIX_EPOCH).expect("epoch").as_secs() as i64 - now();
    assert!(
        (0..=2).contains(&delta),
        "expiresAt is session_ttl away: {delta}"
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(get_as(&app, &token, "/v1/auth/session").await.status, 401);
}

#[tokio::test]
async fn logout_and_user_deletion_end_sessions() {
    let app = TestApp::spawn().await;
    let admin = admin_token(&app).await;
    let second = admin_token(&app).await;
    assert_ne!(admin, second, "each login is its own session");
    let s = get_as(&app, &admin, "/v1/auth/session").await;
    let data = s.expect(200)["data"].clone();
    assert_eq!(data["user"]["role"], "admin");
    assert!(humantime::parse_rfc3339(data["expiresAt"].as_str().expect("expiresAt")).is_ok());
    call(&app, "POST", "/v1/auth/logout", Some(&second), None)
        .await
        .expect(204);
    assert_eq!(get_as(&app, &second, "/v1/auth/session").await.status, 401);
    assert_eq!(
        call(&app, "POST", "/v1/auth/logout", Some(&second), None)
            .await
            .status,
        401,
        "logging out twice"
    );
    get_as(&app, &admin, "/v1/auth/session").await.expect(200);
    let gone: i64 = db(&app)
        .query_row(
            "SELECT COUNT(*) FROM sessions WHERE token_hash = ?1",
            [sha256_hex(&second)],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(gone, 0, "logout deletes the session row");
    // A deleted user's sessions stop working.
    let (uid, token) = user_session(&app, &admin, "leaver@example.com").await;
    get_as(&app, &token, "/v1/projects").await.expect(200);
    delete_as(&app, &admin, &format!("/v1/users/{uid}"))
        .await
        .expect(204);
    assert_eq!(get_as(&app, &token, "/v1/projects").await.status, 401);
    let res = call(
        &app,
        "POST",
        "/v1/auth/login",
        None,
        Some(&json!({ "email": "leaver@example.com", "password": crate::helpers::USER_PASSWORD })),
    )
    .await;
    assert_eq!(res.status, 401);
}

#[tokio::test]
async fn malformed_and_unknown_credentials_are_401() {
    let app = TestApp::spawn().await;
    let admin = admin_token(&app).await;
    let project = create_project(&app, &admin, "Creds").await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let key = create_key(&app, &admin, &project, &["servers:read"]).await;
    let headers = [
        "Bearer".to_owned(),
        "Bearer ".to_owned(),
        "Basic YWRtaW46cGFzc3dvcmQ=".to_owned(),
        format!("Token {key}"),
        "Bearer ezf_sess_".to_owned(),
        "Bearer ezf_sess_not-a-real-session".to_owned(),
        "Bearer ezf_live_not-a-real-key".to_owned(),
        "Bearer ezf_test_not-a-real-key".to_owned(),
        "Bearer something-else-entirely".to_owned(),
        format!("Bearer {}", &key[..key.len() - 1]),
        format!("Bearer {key}x"),
        format!("Bearer {}", key.to_uppercase()),
        format!("Bearer ezf_sess_{}", &key["ezf_live_".len()..]),
        format!("Bearer {}", "x".repeat(10_000)),
    ];
    for h in &headers {
        let res = plain_client()
            .get(app.url("/v1/projects"))
            .header("authorization", h)
            .send()
            .await
            .expect("send");
        let res = ApiResponse::read(res).await;
        let shown: String = h.chars().take(60).collect();
        assert_eq!(res.status, 401, "Authorization: {shown}: {}", res.text);
        res.assert_error_shape();
        assert_eq!(res.code(), "UNAUTHENTICATED");
        assert!(
            !res.text.contains(&key),
            "the answer does not echo credentials"
        );
    }
    // A bad bearer is not rescued by a good cookie.
    let res = plain_client()
        .get(app.url("/v1/projects"))
        .header("authorization", "Bearer ezf_live_not-a-real-key")
        .header("cookie", format!("ezf_session={admin}"))
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), 401);
    get_as(&app, &key, "/v1/projects").await.expect(200);
}

#[tokio::test]
async fn api_key_last_use_is_recorded() {
    let mut app = TestApp::spawn().await;
    let admin = admin_token(&app).await;
    let project = create_project(&app, &admin, "Usage").await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let k = create_key_data(&app, &admin, &project, &["servers:read"]).await;
    let (key, id) = (
        k["key"].as_str().expect("key").to_owned(),
        k["id"].as_str().expect("id").to_owned(),
    );
    assert!(k["lastUsedAt"].is_null(), "unused: {k}");
    let list_path = format!("/v1/projects/{project}/keys");
    let find = |body: &serde_json::Value| {
        body["data"]
            .as_array()
            .expect("data")
            .iter()
            .find(|k| k["id"] == id.as_str())
            .cloned()
            .expect("key listed")
    };
    let listed = get_as(&app, &admin, &list_path).await;
    assert!(find(&listed.body)["lastUsedAt"].is_null());
    let before = now();
    get_as(&app, &key, "/v1/servers").await.expect(200);
    let after = now();
    // Read right after use: the pending (not yet written) use is merged in.
    let listed = get_as(&app, &admin, &list_path).await;
    let used = find(&listed.body)["lastUsedAt"]
        .as_str()
        .expect("lastUsedAt after use")
        .to_owned();
    let t = humantime::parse_rfc3339(&used)
        .expect("rfc3339")
        .duration_since(UNIX_EPOCH)
        .expect("epoch")
        .as_secs() as i64;
    assert!(
        (before..=after).contains(&t),
        "{used} within [{before}, {after}]"
    );
    // The key's own view agrees (it may list its project's keys with servers:read).
    let own = get_as(&app, &key, &list_path).await;
    assert!(find(&own.body)["lastUsedAt"].is_string());
    // The recorded use survives a restart (written at shutdown at the latest).
    let dir = app.take_tempdir().expect("tempdir");
    let data_dir = app.data_dir.clone();
    app.stop().await;
    let stored: Option<i64> = rusqlite::Connection::open(data_dir.join("ezforge.db"))
        .expect("open")
        .query_row(
            "SELECT last_used_at FROM api_keys WHERE id = ?1",
            [&id],
            |r| r.get(0),
        )
        .expect("row");
    // (The key's own listing above was a use too, maybe a second later.)
    let stored = stored.expect("written to the database by shutdown");
    assert!(
        (t..=t + 60).contains(&stored),
        "{stored} recorded, {t} seen"
    );
    let app = TestApp::builder_in(&data_dir).spawn().await;
    let admin = admin_token(&app).await;
    let listed = get_as(&app, &admin, &list_path).await;
    let relisted = listed.body["data"]
        .as_array()
        .and_then(|keys| keys.iter().find(|k| k["id"] == id.as_str()))
        .and_then(|k| k["lastUsedAt"].as_str())
        .map(|s| {
            humantime::parse_rfc3339(s)
                .expect("rfc3339")
                .duration_since(UNIX_EPOCH)
                .expect("epoch")
                .as_secs() as i64
        });
    assert_eq!(relisted, Some(stored), "{}", listed.text);
    drop(app);
    drop(dir);
}
