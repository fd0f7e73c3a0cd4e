//! Validation rules of OAuth clients and env vars; ids and timestamps.

use super::*;

#[tokio::test]
async fn client_rules() {
    let app = TestApp::spawn().await;
    let (admin, _, server) = basics(&app).await;
    let path = format!("/v1/servers/{server}/clients");
    let create = |body: Value| {
        let (app, admin, path) = (&app, &admin, &path);
        async move { post_as(app, admin, path, body).await }
    };
    let uris = |u: &[&str]| json!(u);
    // Redirect URIs: https, or http on loopback; no fragment; 1 to 20.
    for good in [
        "https://app.example.com/cb",
        "http://127.0.0.1:8765/callback",
        "http://localhost:3000/cb",
        "http://[::1]:9999/cb",
        "com.example.app:/oauth2redirect",
    ] {
        let res = create(json!({ "name": "c", "redirectUris": uris(&[good]) })).await;
        if good.starts_with("com.example") {
            // Private-use schemes are not in docs/api.md's list: refused.
            res.assert_invalid("redirectUris[0]");
        } else {
            assert_eq!(res.status, 201, "{good}: {}", res.text);
        }
    }
    for bad in [
        "http://example.com/cb",
        "http://localhost.evil.com/cb",
        "https://app.example.com/cb#frag",
        "https://app.example.com/cb#",
        "/relative/cb",
        "javascript:alert(1)",
        "",
    ] {
        create(json!({ "name": "c", "redirectUris": [bad] }))
            .await
            .assert_invalid("redirectUris[0]");
    }
    create(json!({ "name": "c", "redirectUris": ["https://ok.example.com/cb", "http://example.com/cb"] }))
        .await
        .assert_invalid("redirectUris[1]");
    create(json!({ "name": "c", "redirectUris": [] }))
        .await
        .assert_invalid("redirectUris");
    create(json!({ "name": "c" }))
        .await
        .assert_invalid("redirectUris");
    let twenty: Vec<String> = (0..20)
        .map(|i| format!("https://app.example.com/cb{i}"))
        .collect();
    let mut twenty_one = twenty.clone();
    twenty_one.push("https://app.example.com/cb20".into());
    create(json!({ "name": "c", "redirectUris": twenty_one }))
        .await
        .assert_invalid("redirectUris");
    create(json!({ "name": "twenty", "redirectUris": twenty }))
        .await
        .expect(201);
    create(json!({ "redirectUris": ["https://a.example.com/cb"] }))
        .await
        .assert_invalid("name");
    create(json!({ "name": "", "redirectUris": ["https://a.example.com/cb"] }))
        .await
        .assert_invalid("name");
    create(json!({ "name": "c", "redirectUris": ["https://a.example.com/cb"], "scopes": [] }))
        .await
        .assert_invalid("scopes");
    create(json!({ "name": "c", "redirectUris": ["https://a.example.com/cb"], "scopes": ["a b"] }))
        .await
        .assert_invalid("scopes");

    // Defaults: scopes ["mcp:read"], not trusted, public, not dynamic.
    let res = create(
        json!({ "name": "My MCP Client", "redirectUris": ["https://myapp.example.com/callback"] }),
    )
    .await;
    let c = res.expect(201)["data"].clone();
    assert!(c["id"].as_str().expect("id").starts_with("oac_"));
    assert!(
        c["clientId"]
            .as_str()
            .expect("clientId")
            .starts_with("client_")
    );
    assert_eq!(c["scopes"], json!(["mcp:read"]));
    assert_eq!(c["trusted"], false);
    assert_eq!(c["isDynamic"], false);
    assert_eq!(c["confidential"], false);
    assert!(
        c.get("clientSecret").is_none(),
        "public clients get no secret"
    );
    assert_eq!(
        c["redirectUris"],
        json!(["https://myapp.example.com/callback"])
    );

    // Confidential: the secret once, in the create answer only.
    let res = create(json!({
        "name": "Backend", "redirectUris": ["https://b.example.com/cb"], "confidential": true,
        "trusted": true, "scopes": ["mcp:read", "mcp:write"],
    }))
    .await;
    let c = res.expect(201)["data"].clone();
    let secret = c["clientSecret"].as_str().expect("clientSecret").to_owned();
    assert!(secret.len() >= 32);
    assert_eq!(c["confidential"], true);
    assert_eq!(c["trusted"], true);
    assert_eq!(c["scopes"], json!(["mcp:read", "mcp:write"]));
    let list = get_as(&app, &admin, &path).await;
    assert!(!list.text.contains(&secret), "the secret is never listed");
    assert!(
        list.body["data"]
            .as_array()
            .expect("data")
            .iter()
            .all(|c| c.get("clientSecret").is_none())
    );

    // Metadata document clients: https with a path, alone.
    for bad in [
        "http://client.example.com/meta.json",
        "https://client.example.com",
        "https://client.example.com/",
        "https://client.example.com/m.json#x",
        "not a url",
    ] {
        create(json!({ "clientMetadataUrl": bad }))
            .await
            .assert_invalid("clientMetadataUrl");
    }
    create(json!({ "clientMetadataUrl": "https://client.example.com/m.json", "redirectUris": ["https://a.example.com/cb"] }))
        .await
        .assert_invalid("clientMetadataUrl");
    let res = create(json!({ "clientMetadataUrl": "https://client.example.com/m.json" })).await;
    let m = res.expect(201)["data"].clone();
    assert_eq!(m["isDynamic"], true);
    assert_eq!(m["clientId"], "https://client.example.com/m.json");
    assert_eq!(m["clientMetadataUrl"], "https://client.example.com/m.json");
    let dup = create(json!({ "clientMetadataUrl": "https://client.example.com/m.json" })).await;
    assert_eq!(dup.status, 409, "{}", dup.text);

    // Delete by oac_ id and by client_id; the metadata URL works as a client id too.
    let a = create(json!({ "name": "A", "redirectUris": ["https://a.example.com/cb"] })).await;
    let a = a.expect(201)["data"].clone();
    let b = create(json!({ "name": "B", "redirectUris": ["https://b.example.com/cb"] })).await;
    let b = b.expect(201)["data"].clone();
    let id_of = |v: &Value, k: &str| v[k].as_str().expect("id").to_owned();
    delete_as(&app, &admin, &format!("{path}/{}", id_of(&a, "id")))
        .await
        .expect(204);
    delete_as(&app, &admin, &format!("{path}/{}", id_of(&b, "clientId")))
        .await
        .expect(204);
    let encoded = "https%3A%2F%2Fclient.example.com%2Fm.json";
    let res = delete_as(&app, &admin, &format!("{path}/{encoded}")).await;
    assert_eq!(res.status, 204, "metadata URL as client id: {}", res.text);
    assert_eq!(
        delete_as(&app, &admin, &format!("{path}/{}", id_of(&a, "id")))
            .await
            .status,
        404
    );
    let list = get_as(&app, &admin, &path).await;
    let ids: Vec<String> = list.body["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|c| id_of(c, "id"))
        .collect();
    assert!(!ids.contains(&id_of(&a, "id")) && !ids.contains(&id_of(&b, "id")));
    // A client of another server is not reachable through this one.
    let other = create_server(&app, &admin, "rules-project", "Other Server").await;
    let other_path = format!("/v1/servers/{}/clients", other["id"].as_str().expect("id"));
    let c = post_as(
        &app,
        &admin,
        &other_path,
        json!({ "name": "O", "redirectUris": ["https://o.example.com/cb"] }),
    )
    .await;
    let c = c.expect(201)["data"].clone();
    assert_eq!(
        delete_as(&app, &admin, &format!("{path}/{}", id_of(&c, "id")))
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn env_var_rules() {
    let app = TestApp::spawn().await;
    let (admin, _, server) = basics(&app).await;
    let path = format!("/v1/servers/{server}/env");
    let create = |body: Value| {
        let (app, admin, path) = (&app, &admin, &path);
        async move { post_as(app, admin, path, body).await }
    };
    create(json!({ "value": "v" })).await.assert_invalid("name");
    create(json!({ "name": "X" })).await.assert_invalid("value");
    for bad in ["", "1ABC", "A-B", "A B", "É", "A.B", &"A".repeat(129)] {
        create(json!({ "name": bad, "value": "v" }))
            .await
            .assert_invalid("name");
    }
    create(json!({ "name": "NUL", "value": "a\u{0}b" }))
        .await
        .assert_invalid("value");
    create(json!({ "name": "BIG", "value": "x".repeat(32 * 1024 + 1) }))
        .await
        .assert_invalid("value");
    create(json!({ "name": "BIG", "value": "x".repeat(32 * 1024) }))
        .await
        .expect(201);
    create(json!({ "name": "A".repeat(128), "value": "v" }))
        .await
        .expect(201);
    create(json!({ "name": "_lower_ok9", "value": "" }))
        .await
        .expect(201);
    let res = create(json!({ "name": "DATABASE_URL", "value": "postgres://u:p@db/x" })).await;
    let body = res.expect(201)["data"].clone();
    assert_eq!(body["name"], "DATABASE_URL");
    assert!(body.get("value").is_none());
    let dup = create(json!({ "name": "DATABASE_URL", "value": "other" })).await;
    assert_eq!(dup.status, 409, "POST of an existing name: {}", dup.text);
    // PUT: 201 new, 200 replaced; the same name rules in the path.
    let put = |name: &str, value: &str| {
        let (app, admin) = (&app, &admin);
        let p = format!("{path}/{name}");
        let body = json!({ "value": value });
        async move { put_as(app, admin, &p, body).await }
    };
    assert_eq!(put("FRESH", "1").await.status, 201);
    assert_eq!(put("FRESH", "2").await.status, 200);
    assert_eq!(put("DATABASE_URL", "postgres://other").await.status, 200);
    put("1BAD", "v").await.assert_invalid("name");
    put("%C3%89", "v").await.assert_invalid("name");
    put("NUL2", "\u{0}").await.assert_invalid("value");
    let res = put_as(&app, &admin, &format!("{path}/NOVALUE"), json!({})).await;
    res.assert_invalid("value");
    // DELETE: 204, then 404.
    delete_as(&app, &admin, &format!("{path}/FRESH"))
        .await
        .expect(204);
    assert_eq!(
        delete_as(&app, &admin, &format!("{path}/FRESH"))
            .await
            .status,
        404
    );

    // Names and values total at most 256 KiB per server (a process must still be able to
    // start with them): six more 32 KiB values fit, a seventh does not.
    let big = "x".repeat(32 * 1024);
    for i in 2..8 {
        put(&format!("BIG_{i}"), &big).await.expect(201);
    }
    let over = put("BIG_8", &big).await;
    over.assert_invalid("value");
    assert!(over.text.contains("256 KiB"), "{}", over.text);
    // Replacing a value counts it once, and making room lets the new one in.
    put("BIG_7", &big).await.expect(200);
    delete_as(&app, &admin, &format!("{path}/BIG_7"))
        .await
        .expect(204);
    put("BIG_8", &big).await.expect(201);
}

#[tokio::test]
async fn a_server_holds_at_most_500_env_vars() {
    let app = roomy().await;
    let (admin, _, server) = basics(&app).await;
    let path = format!("/v1/servers/{server}/env");
    for i in 0..500 {
        put_as(
            &app,
            &admin,
            &format!("{path}/V{i}"),
            json!({ "value": "1" }),
        )
        .await
        .expect(201);
    }
    let over = put_as(
        &app,
        &admin,
        &format!("{path}/V500"),
        json!({ "value": "1" }),
    )
    .await;
    over.assert_invalid("name");
    assert!(over.text.contains("at most 500"), "{}", over.text);
    // An existing one can still be replaced.
    put_as(&app, &admin, &format!("{path}/V0"), json!({ "value": "2" }))
        .await
        .expect(200);
}

#[tokio::test]
async fn ids_and_timestamps_follow_the_conventions() {
    let app = TestApp::spawn().await;
    let (admin, project, server) = basics(&app).await;
    let key = create_key_data(&app, &admin, &project, &["servers:read"]).await;
    let (user, _) = invite_user(&app, &admin, "conv@example.com").await;
    let client = post_as(
        &app,
        &admin,
        &format!("/v1/servers/{server}/clients"),
        json!({ "name": "c", "redirectUris": ["https://a.example.com/cb"] }),
    )
    .await
    .expect(201)["data"]
        .clone();
    let id_ok = |id: &str, prefix: &str| {
        id.strip_prefix(prefix).is_some_and(|rest| {
            rest.len() >= 20
                && rest
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || ('2'..='7').contains(&c))
        })
    };
    for (id, prefix) in [
        (project.as_str(), "proj_"),
        (server.as_str(), "srv_"),
        (key["id"].as_str().expect("id"), "key_"),
        (user.as_str(), "usr_"),
        (client["id"].as_str().expect("id"), "oac_"),
    ] {
        assert!(
            id_ok(id, prefix),
            "{id} is {prefix} + 20+ base32 characters"
        );
    }
    let s = get_as(&app, &admin, &format!("/v1/servers/{server}")).await;
    for t in [
        &s.body["data"]["createdAt"],
        &s.body["data"]["updatedAt"],
        &key["createdAt"],
        &client["createdAt"],
    ] {
        let t = t.as_str().expect("timestamp");
        assert!(t.ends_with('Z') && t.len() == 20, "RFC 3339 UTC: {t}");
        assert!(humantime::parse_rfc3339(t).is_ok(), "{t}");
    }
}
