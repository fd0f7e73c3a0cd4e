//! Validation rules of projects, users, members and API keys.

use super::*;

#[tokio::test]
async fn project_rules() {
    let app = roomy().await;
    let admin = admin_token(&app).await;
    let create = |body: Value| {
        let (app, admin) = (&app, &admin);
        async move { post_as(app, admin, "/v1/projects", body).await }
    };
    // name: required, non-empty, ≤ 255 characters, no control or invisible characters.
    create(json!({})).await.assert_invalid("name");
    create(json!({ "name": "" })).await.assert_invalid("name");
    create(json!({ "name": "   " }))
        .await
        .assert_invalid("name");
    create(json!({ "name": "x".repeat(256) }))
        .await
        .assert_invalid("name");
    create(json!({ "name": "日".repeat(256), "slug": "cjk-long" }))
        .await
        .assert_invalid("name");
    create(json!({ "name": "a\nb" }))
        .await
        .assert_invalid("name");
    create(json!({ "name": "a\u{0}b" }))
        .await
        .assert_invalid("name");
    create(json!({ "name": "evil\u{202E}txt.exe" }))
        .await
        .assert_invalid("name");
    create(json!({ "name": "zero\u{200B}width" }))
        .await
        .assert_invalid("name");
    create(json!({ "name": "bom\u{FEFF}" }))
        .await
        .assert_invalid("name");
    let p = create(json!({ "name": "x".repeat(255) })).await;
    assert_eq!(
        p.expect(201)["data"]["name"].as_str().map(str::len),
        Some(255)
    );
    let p = create(json!({ "name": "日".repeat(255), "slug": "cjk" })).await;
    assert_eq!(p.expect(201)["data"]["name"], "日".repeat(255));
    let p = create(json!({ "name": "🚀 Rocket Café", "slug": "rocket" })).await;
    assert_eq!(p.expect(201)["data"]["name"], "🚀 Rocket Café");
    let p = create(json!({ "name": "  Trimmed  " })).await;
    assert_eq!(p.expect(201)["data"]["name"], "Trimmed");

    // slug: a DNS label; derived from the name when absent; unique.
    for bad in [
        "",
        "-lead",
        "trail-",
        "Upper",
        "under_score",
        "dot.ted",
        "spa ce",
        "é",
        "ｗｅａｔｈｅｒ",
        "wеather", // Cyrillic е
        &"a".repeat(64),
    ] {
        create(json!({ "name": "Slug Test", "slug": bad }))
            .await
            .assert_invalid("slug");
    }
    let p = create(json!({ "name": "Slug Test", "slug": "a".repeat(63) })).await;
    assert_eq!(p.expect(201)["data"]["slug"], "a".repeat(63));
    let p = create(json!({ "name": "Weather Server!" })).await;
    assert_eq!(p.expect(201)["data"]["slug"], "weather-server");
    assert_eq!(p.body["data"]["role"], "owner");
    create(json!({ "name": "!!!" }))
        .await
        .assert_invalid("slug");
    let dup = create(json!({ "name": "Other", "slug": "weather-server" })).await;
    assert_eq!(dup.status, 409, "{}", dup.text);
    assert_eq!(dup.code(), "CONFLICT");
    let dup = create(json!({ "name": "Weather   Server" })).await;
    assert_eq!(dup.status, 409, "a derived slug clashes too: {}", dup.text);

    // PATCH: name rules again; the slug cannot change.
    let path = "/v1/projects/weather-server";
    patch_as(&app, &admin, path, json!({ "name": "" }))
        .await
        .assert_invalid("name");
    patch_as(&app, &admin, path, json!({ "name": "y".repeat(256) }))
        .await
        .assert_invalid("name");
    patch_as(&app, &admin, path, json!({ "slug": "renamed" }))
        .await
        .assert_invalid("slug");
    let ok = patch_as(&app, &admin, path, json!({ "name": "Renamed" })).await;
    assert_eq!(ok.expect(200)["data"]["name"], "Renamed");
    assert_eq!(ok.body["data"]["slug"], "weather-server");
    let ok = patch_as(&app, &admin, path, json!({ "slug": "weather-server" })).await;
    ok.expect(200);

    // DELETE: 409 while it has servers, 204 once they are gone.
    let s = create_server(&app, &admin, "weather-server", "Blocker").await;
    let res = delete_as(&app, &admin, path).await;
    assert_eq!(res.status, 409, "{}", res.text);
    assert_eq!(res.code(), "CONFLICT");
    delete_as(
        &app,
        &admin,
        &format!("/v1/servers/{}", s["id"].as_str().expect("id")),
    )
    .await
    .expect(204);
    delete_as(&app, &admin, path).await.expect(204);
    assert_eq!(get_as(&app, &admin, path).await.status, 404);
}

#[tokio::test]
async fn user_and_member_rules() {
    let app = TestApp::spawn().await;
    let admin = admin_token(&app).await;
    let create = |body: Value| {
        let (app, admin) = (&app, &admin);
        async move { post_as(app, admin, "/v1/users", body).await }
    };
    create(json!({ "role": "member" }))
        .await
        .assert_invalid("email");
    for bad in [
        "no-at",
        "a@@b",
        "a @b.example",
        "@b.example",
        "a@",
        "a\u{202E}@b.example",
    ] {
        create(json!({ "email": bad, "role": "member" }))
            .await
            .assert_invalid("email");
    }
    let long = format!("{}@example.com", "a".repeat(250));
    create(json!({ "email": long }))
        .await
        .assert_invalid("email");
    create(json!({ "email": "r@example.com", "role": "root" }))
        .await
        .assert_invalid("role");
    create(json!({ "email": "p@example.com", "password": "elevenchars" }))
        .await
        .assert_invalid("password");
    let ok = create(json!({ "email": "p@example.com", "password": "twelve-chars" })).await;
    let body = ok.expect(201);
    assert_eq!(
        body["data"]["user"]["role"], "member",
        "role defaults to member"
    );
    assert!(body["data"].get("inviteToken").is_none(), "{}", ok.text);
    assert!(body["data"]["user"].get("passwordHash").is_none());
    assert!(
        !ok.text.contains("twelve-chars"),
        "the password is not echoed"
    );
    let dup = create(json!({ "email": "P@Example.COM" })).await;
    assert_eq!(
        dup.status, 409,
        "emails compare case-insensitively: {}",
        dup.text
    );
    let invited = create(json!({ "email": "i@example.com", "role": "admin" })).await;
    let token = invited.expect(201)["data"]["inviteToken"]
        .as_str()
        .expect("invite token")
        .to_owned();
    assert!(token.len() > 20);
    // The invite sets a password once; password rules apply.
    let accept = |t: &str, pw: &str| {
        let body = json!({ "token": t, "password": pw });
        let app = &app;
        async move { call(app, "POST", "/v1/auth/invite", None, Some(&body)).await }
    };
    accept(&token, "short").await.assert_invalid("password");
    let res = accept("ezf_inv_nope", "a-perfectly-fine-password").await;
    assert_eq!(res.status, 404, "{}", res.text);
    accept(&token, "a-perfectly-fine-password")
        .await
        .expect(200);
    assert_eq!(
        accept(&token, "a-perfectly-fine-password").await.status,
        404,
        "single use"
    );
    login(&app, "i@example.com", "a-perfectly-fine-password").await;
    // Deleting yourself is refused.
    let me = get_as(&app, &admin, "/v1/auth/session").await;
    let my_id = me.body["data"]["user"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    assert_eq!(
        delete_as(&app, &admin, &format!("/v1/users/{my_id}"))
            .await
            .status,
        409
    );
    assert_eq!(
        delete_as(&app, &admin, "/v1/users/usr_nobody").await.status,
        404
    );

    // Members, by invitation (tests/api/control/invitations/ has the rest).
    let project = create_project(&app, &admin, "Members").await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let members = format!("/v1/projects/{project}/members");
    post_as(&app, &admin, &members, json!({ "role": "member" }))
        .await
        .assert_invalid("email");
    post_as(&app, &admin, &members, json!({ "email": "not an email" }))
        .await
        .assert_invalid("email");
    post_as(
        &app,
        &admin,
        &members,
        json!({ "email": "p@example.com", "role": "admin" }),
    )
    .await
    .assert_invalid("role");
    let m = post_as(&app, &admin, &members, json!({ "email": "p@example.com" })).await;
    assert_eq!(
        m.expect(201)["data"]["role"],
        "member",
        "role defaults to member"
    );
    let dup = post_as(&app, &admin, &members, json!({ "email": "P@example.com" })).await;
    assert_eq!(
        dup.status, 409,
        "one pending invitation per email: {}",
        dup.text
    );
    // The last owner cannot leave; with a second owner they can.
    let owner_id = my_id.clone();
    let res = delete_as(&app, &admin, &format!("{members}/{owner_id}")).await;
    assert_eq!(res.status, 409, "last owner: {}", res.text);
    add_member(&app, &admin, &project, "i@example.com", "owner").await;
    let again = post_as(&app, &admin, &members, json!({ "email": "I@example.com" })).await;
    assert_eq!(again.status, 409, "already a member: {}", again.text);
    delete_as(&app, &admin, &format!("{members}/{owner_id}"))
        .await
        .expect(204);
    assert_eq!(
        delete_as(&app, &admin, &format!("{members}/usr_nobody"))
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn api_key_rules() {
    let app = TestApp::spawn().await;
    let (admin, project, _) = basics(&app).await;
    let path = format!("/v1/projects/{project}/keys");
    let create = |body: Value| {
        let (app, admin, path) = (&app, &admin, &path);
        async move { post_as(app, admin, path, body).await }
    };
    create(json!({ "scopes": ["servers:read"] }))
        .await
        .assert_invalid("name");
    create(json!({ "name": "", "scopes": ["servers:read"] }))
        .await
        .assert_invalid("name");
    create(json!({ "name": "k".repeat(256), "scopes": ["servers:read"] }))
        .await
        .assert_invalid("name");
    create(json!({ "name": "k" }))
        .await
        .assert_invalid("scopes");
    create(json!({ "name": "k", "scopes": [] }))
        .await
        .assert_invalid("scopes");
    create(json!({ "name": "k", "scopes": ["servers:admin"] }))
        .await
        .assert_invalid("scopes");
    create(json!({ "name": "k", "scopes": ["mcp:read"] }))
        .await
        .assert_invalid("scopes");
    for bad in [
        "tomorrow",
        "2020-01-01T00:00:00Z",
        "",
        "1700000000",
        "2090-01-01T00:00:00",
    ] {
        create(json!({ "name": "k", "scopes": ["servers:read"], "expiresAt": bad }))
            .await
            .assert_invalid("expiresAt");
    }
    create(json!({ "name": "k", "scopes": ["servers:read"], "environment": "prod" }))
        .await
        .assert_invalid("environment");

    // An offset is applied: this is 2090-01-01T00:00:00Z.
    let offset = create(
        json!({ "name": "tz", "scopes": ["servers:read"], "expiresAt": "2090-01-01T02:00:00+02:00" }),
    )
    .await;
    assert_eq!(
        offset.expect(201)["data"]["expiresAt"],
        "2090-01-01T00:00:00Z"
    );
    let k =
        create(json!({ "name": "k".repeat(255), "scopes": ["servers:read", "logs:read"] })).await;
    let data = k.expect(201)["data"].clone();
    let key = data["key"].as_str().expect("key");
    assert!(key.starts_with("ezf_live_"), "live by default: {key}");
    assert_eq!(data["environment"], "live");
    assert!(key.starts_with(data["prefix"].as_str().expect("prefix")));
    assert!(data["prefix"].as_str().expect("prefix").len() < key.len() / 2);
    let mut scopes: Vec<&str> = data["scopes"]
        .as_array()
        .expect("scopes")
        .iter()
        .map(|s| s.as_str().expect("scope"))
        .collect();
    scopes.sort_unstable();
    assert_eq!(scopes, ["logs:read", "servers:read"]);
    assert!(data["expiresAt"].is_null());
    assert!(data["lastUsedAt"].is_null());
    assert_eq!(data["projectId"], project.as_str());

    let future = humantime::format_rfc3339_seconds(
        SystemTime::now() + std::time::Duration::from_secs(86_400),
    )
    .to_string();
    let k = create(json!({ "name": "t", "scopes": ["servers:read"], "environment": "test", "expiresAt": future })).await;
    let data = k.expect(201)["data"].clone();
    assert!(data["key"].as_str().expect("key").starts_with("ezf_test_"));
    assert_eq!(data["environment"], "test");
    assert_eq!(data["expiresAt"], future.as_str());

    // Key values are shown once: never in the list.
    let list = get_as(&app, &admin, &path).await;
    assert!(!list.text.contains(key), "the list never shows a key value");
    for k in list.body["data"].as_array().expect("data") {
        assert!(k.get("key").is_none(), "{k}");
    }
    assert_eq!(
        delete_as(&app, &admin, "/v1/keys/key_nosuchkey")
            .await
            .status,
        404
    );
}
