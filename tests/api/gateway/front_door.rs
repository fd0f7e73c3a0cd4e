//! Issue 5: the MCP front door.

use std::time::Duration;

use serde_json::{Value, json};

use crate::fakes::{FakeUpstream, SigningKey, TestIssuer};
use crate::helpers::{TestApp, json};
use ezforge::config::AuthMode;

/// A server `weather` routed to `upstream`, created straight in the store (the control API is
/// tested elsewhere), and the routing table reloaded.
pub(crate) async fn add_server(
    app: &TestApp,
    slug: &str,
    upstream: &str,
    auth_mode: &str,
    byoa: Option<&ezforge::config::ByoaConfig>,
    tool_scopes: Value,
) {
    let now = ezforge::domain::now();
    let project = ezforge::store::projects::ProjectRow {
        id: ezforge::domain::new_id("proj_"),
        name: format!("p-{slug}"),
        slug: format!("p-{slug}"),
        managed_by: "api".into(),
        created_at: now,
        updated_at: now,
    };
    let row = ezforge::store::servers::ServerRow {
        id: ezforge::domain::new_id("srv_"),
        project_id: project.id.clone(),
        name: slug.to_owned(),
        slug: slug.to_owned(),
        status: "running".into(),
        upstream_url: Some(upstream.to_owned()),
        health_check_path: None,
        rollback_on_failure: true,
        retention_count: 10,
        auto_stop_seconds: None,
        tool_scopes: tool_scopes.to_string(),
        auth_mode: auth_mode.into(),
        byoa_config: byoa.map(|b| serde_json::to_string(b).expect("json")),
        managed_by: "api".into(),
        rate_limit: None,
        created_at: now,
        updated_at: now,
    };
    app.state
        .store
        .run(move |c| {
            ezforge::store::projects::insert(c, &project)?;
            ezforge::store::servers::insert(c, &row)
        })
        .await
        .expect("insert");
    app.state.servers_changed().await;
}

/// An app whose outbound client trusts these issuers' certificates and may reach loopback.
pub(crate) async fn app_trusting(issuers: &[&TestIssuer]) -> TestApp {
    let cas: Vec<_> = issuers.iter().map(|i| i.ca_file.clone()).collect();
    TestApp::builder()
        .config(move |c| {
            c.outbound.ca_files = cas;
            c.outbound.allow_private_addresses = true;
        })
        .spawn()
        .await
}

pub(crate) fn resource(app: &TestApp, slug: &str) -> String {
    format!("{}/mcp/{slug}", app.address)
}

/// A managed token for `slug`, signed with the app's active key.
pub(crate) fn managed_token(app: &TestApp, slug: &str, scope: &str, extra: Value) -> String {
    let now = ezforge::domain::now();
    let mut claims = json!({
        "iss": app.address, "sub": "usr_alice", "aud": resource(app, slug), "client_id": "client_test",
        "scope": scope, "iat": now, "exp": now + 900, "jti": ezforge::domain::new_id("jti_"),
    });
    if let (Some(c), Some(e)) = (claims.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            if v.is_null() {
                c.remove(k);
            } else {
                c.insert(k.clone(), v.clone());
            }
        }
    }
    let keys = app.state.keys.current();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some(keys.active.kid.clone());
    header.typ = Some("at+jwt".into());
    jsonwebtoken::encode(&header, &claims, &keys.active.encoding).expect("sign")
}

pub(crate) async fn rpc(
    app: &TestApp,
    slug: &str,
    token: Option<&str>,
    body: Value,
) -> reqwest::Response {
    let mut req = app
        .client
        .post(resource(app, slug))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body.to_string());
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.expect("request")
}

fn call(tool: &str) -> Value {
    json!({"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":tool,"arguments":{}}})
}

fn www_authenticate(res: &reqwest::Response) -> String {
    res.headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

#[tokio::test]
async fn protected_resource_metadata_names_server_and_issuer() {
    let app = TestApp::spawn().await;
    let up = FakeUpstream::start().await;
    add_server(
        &app,
        "weather",
        &up.url,
        "ezforge_managed",
        None,
        json!({"nuke": "admin:danger"}),
    )
    .await;
    let res = app
        .get("/.well-known/oauth-protected-resource/mcp/weather")
        .await;
    assert_eq!(res.status(), 200);
    let doc = json(res).await;
    assert_eq!(doc["resource"], resource(&app, "weather"));
    // The server's own issuer (issue 19): its endpoints serve this one server.
    assert_eq!(
        doc["authorization_servers"],
        json!([format!("{}/oauth/mcp/weather", app.address)])
    );
    assert_eq!(doc["bearer_methods_supported"], json!(["header"]));
    assert_eq!(doc["resource_name"], "weather");
    assert_eq!(
        doc["scopes_supported"],
        json!([
            "mcp:read",
            "mcp:write",
            "mcp:execute",
            "offline_access",
            "admin:danger"
        ])
    );
    assert_eq!(
        app.get("/.well-known/oauth-protected-resource/mcp/nope")
            .await
            .status(),
        404
    );
}

#[tokio::test]
async fn challenges_for_missing_bad_and_insufficient_tokens() {
    let app = TestApp::spawn().await;
    let up = FakeUpstream::start().await;
    add_server(&app, "weather", &up.url, "ezforge_managed", None, json!({})).await;
    let metadata = format!(
        "{}/.well-known/oauth-protected-resource/mcp/weather",
        app.address
    );

    let res = rpc(
        &app,
        "weather",
        None,
        json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}),
    )
    .await;
    assert_eq!(res.status(), 401);
    let h = www_authenticate(&res);
    assert!(h.starts_with("Bearer "), "{h}");
    assert!(
        h.contains(&format!("resource_metadata=\"{metadata}\"")),
        "{h}"
    );
    assert!(h.contains("scope=\"mcp:read\""), "{h}");
    assert!(!h.contains("error="), "no error without a token: {h}");
    // Another scheme is an unsupported method, answered like a missing token (RFC 6750 3.1).
    for auth in ["Basic dXNlcjpwdw==", "Token abc", "Negotiate"] {
        let res = app
            .client
            .post(resource(&app, "weather"))
            .header("authorization", auth)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#)
            .send()
            .await
            .expect("send");
        assert_eq!(res.status(), 401, "{auth}");
        let h = www_authenticate(&res);
        assert!(
            h.starts_with("Bearer ") && !h.contains("error="),
            "{auth}: {h}"
        );
    }

    let res = rpc(
        &app,
        "weather",
        Some("not-a-jwt"),
        json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}),
    )
    .await;
    assert_eq!(res.status(), 401);
    let h = www_authenticate(&res);
    assert!(
        h.contains("error=\"invalid_token\"") && h.contains("resource_metadata="),
        "{h}"
    );

    let token = managed_token(&app, "weather", "mcp:read", json!({}));
    let res = rpc(&app, "weather", Some(&token), call("delete_repo")).await;
    assert_eq!(res.status(), 403);
    let h = www_authenticate(&res);
    assert!(h.contains("error=\"insufficient_scope\""), "{h}");
    assert!(
        h.contains("scope=\"mcp:execute mcp:read\""),
        "what it needs and what it has: {h}"
    );
    assert!(
        h.contains(&format!("resource_metadata=\"{metadata}\"")),
        "{h}"
    );
    assert_eq!(up.requests(), 0, "nothing reached the upstream");
}

#[tokio::test]
async fn valid_token_is_proxied_without_credentials_and_with_identity() {
    let app = TestApp::spawn().await;
    let up = FakeUpstream::start().await;
    add_server(&app, "weather", &up.url, "ezforge_managed", None, json!({})).await;
    let token = managed_token(&app, "weather", "mcp:read", json!({}));
    let res = app
        .client
        .post(resource(&app, "weather"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .header("cookie", "ezf_session=secret-cookie")
        .header("x-ezforge-subject", "forged")
        .header(
            "x_ezforge_subject",
            "forged, read by CGI-style servers as the same",
        )
        .header("x-forwarded-port", "1")
        .header("mcp_session_id", "an upstream id, unchecked")
        .header("mcp-protocol-version", "2025-06-18")
        .body(json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}).to_string())
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 200);
    let body = json(res).await;
    assert_eq!(body["result"]["tools"][0]["name"], "get_weather");
    let seen = up.last_headers();
    let get = |n: &str| seen.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    assert_eq!(
        get("authorization"),
        None,
        "the client's token is never forwarded"
    );
    assert_eq!(get("cookie"), None, "cookies are never forwarded");
    assert_eq!(
        get("x_ezforge_subject"),
        None,
        "no alias of an identity header"
    );
    assert_eq!(
        get("x-forwarded-port"),
        None,
        "no forwarding header of the client's"
    );
    assert_eq!(get("x-ezforge-subject").as_deref(), Some("usr_alice"));
    assert_eq!(get("x-ezforge-client-id").as_deref(), Some("client_test"));
    assert_eq!(get("x-ezforge-scopes").as_deref(), Some("mcp:read"));
    assert_eq!(get("mcp-protocol-version").as_deref(), Some("2025-06-18"));
    assert_eq!(
        get("host").as_deref(),
        Some(format!("127.0.0.1:{}", up.port).as_str()),
        "the upstream's own Host"
    );
    assert_eq!(get("x-forwarded-proto").as_deref(), Some("http"));
    assert!(get("x-forwarded-for").is_some());
}

#[tokio::test]
async fn every_validation_failure_is_401_never_500() {
    let app = TestApp::spawn().await;
    let up = FakeUpstream::start().await;
    add_server(&app, "a", &up.url, "ezforge_managed", None, json!({})).await;
    add_server(&app, "b", &up.url, "ezforge_managed", None, json!({})).await;
    let now = ezforge::domain::now();
    let keys = app.state.keys.current();
    let claims = json!({"iss": app.address, "sub": "u", "aud": resource(&app, "a"), "scope": "mcp:execute", "exp": now + 600});
    // alg none
    let none = format!(
        "{}.{}.",
        base64_url(&json!({"alg":"none","typ":"at+jwt","kid": keys.active.kid})),
        base64_url(&claims)
    );
    // HS256 "signed" with the public key
    let jwks: Value = serde_json::from_slice(&keys.jwks).expect("jwks");
    let mut hs = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    hs.kid = Some(keys.active.kid.clone());
    hs.typ = Some("at+jwt".into());
    let hs256 = jsonwebtoken::encode(
        &hs,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(jwks.to_string().as_bytes()),
    )
    .expect("hs");
    // jku header pointing elsewhere, signed by a key we do not know
    let stranger = SigningKey::generate(&keys.active.kid);
    let foreign = stranger.sign(&claims);
    let long_kid = {
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        h.kid = Some("k".repeat(10_000));
        h.typ = Some("at+jwt".into());
        h.jku = Some("https://evil.example/jwks.json".into());
        jsonwebtoken::encode(&h, &claims, &keys.active.encoding).expect("sign")
    };
    let mut wrong_typ = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    wrong_typ.kid = Some(keys.active.kid.clone());
    let no_typ = jsonwebtoken::encode(&wrong_typ, &claims, &keys.active.encoding).expect("sign");
    let cases: Vec<(&str, String)> = vec![
        ("alg none", none),
        ("HS256 with the public key", hs256),
        ("unknown signer", foreign),
        ("10 KB kid with jku", long_kid),
        ("typ not at+jwt", no_typ),
        (
            "wrong iss",
            managed_token(
                &app,
                "a",
                "mcp:execute",
                json!({"iss": "https://evil.example"}),
            ),
        ),
        (
            "token for b at a",
            managed_token(&app, "b", "mcp:execute", json!({})),
        ),
        (
            "expired",
            managed_token(&app, "a", "mcp:execute", json!({"exp": now - 120})),
        ),
        (
            "not yet valid",
            managed_token(&app, "a", "mcp:execute", json!({"nbf": now + 600})),
        ),
        (
            "missing exp",
            managed_token(&app, "a", "mcp:execute", json!({"exp": null})),
        ),
        ("garbage", "a.b.c".into()),
    ];
    for (name, token) in cases {
        let res = rpc(
            &app,
            "a",
            Some(&token),
            json!({"jsonrpc":"2.0","id":1,"method":"ping"}),
        )
        .await;
        assert_eq!(res.status(), 401, "{name}");
        assert!(www_authenticate(&res).contains("invalid_token"), "{name}");
    }
    // Within the 60 s leeway an expired token still passes.
    let fresh_enough = managed_token(&app, "a", "mcp:execute", json!({"exp": now - 10}));
    assert_eq!(
        rpc(
            &app,
            "a",
            Some(&fresh_enough),
            json!({"jsonrpc":"2.0","id":1,"method":"ping"})
        )
        .await
        .status(),
        200
    );
    assert_eq!(up.requests(), 1);
}

fn base64_url(v: &Value) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

#[tokio::test]
async fn tokens_in_the_query_string_are_refused() {
    let app = TestApp::spawn().await;
    let up = FakeUpstream::start().await;
    add_server(&app, "weather", &up.url, "ezforge_managed", None, json!({})).await;
    let token = managed_token(&app, "weather", "mcp:read", json!({}));
    let res = app
        .client
        .post(format!(
            "{}?access_token={token}",
            resource(&app, "weather")
        ))
        .header("content-type", "application/json")
        .body(json!({"jsonrpc":"2.0","id":1,"method":"ping"}).to_string())
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 400);
    assert_eq!(up.requests(), 0);
}

#[tokio::test]
async fn tool_policy_follows_annotations_and_overrides() {
    let app = TestApp::spawn().await;
    let up = FakeUpstream::start().await;
    add_server(
        &app,
        "weather",
        &up.url,
        "ezforge_managed",
        None,
        json!({"get_weather": "mcp:execute"}),
    )
    .await;
    let read = managed_token(&app, "weather", "mcp:read", json!({}));
    let write = managed_token(&app, "weather", "mcp:write", json!({}));
    // Before tools/list the gateway knows nothing: unannotated tools need mcp:execute.
    assert_eq!(
        rpc(&app, "weather", Some(&write), call("delete_repo"))
            .await
            .status(),
        403
    );
    // The gateway learns annotations from the tools/list answer it proxies.
    assert_eq!(
        rpc(
            &app,
            "weather",
            Some(&read),
            json!({"jsonrpc":"2.0","id":1,"method":"tools/list"})
        )
        .await
        .status(),
        200
    );
    assert_eq!(
        rpc(&app, "weather", Some(&write), call("delete_repo"))
            .await
            .status(),
        200,
        "destructive -> mcp:write"
    );
    assert_eq!(
        rpc(&app, "weather", Some(&read), call("delete_repo"))
            .await
            .status(),
        403
    );
    // The override beats the read-only annotation.
    assert_eq!(
        rpc(&app, "weather", Some(&read), call("get_weather"))
            .await
            .status(),
        403
    );
    assert_eq!(
        rpc(&app, "weather", Some(&write), call("mystery"))
            .await
            .status(),
        403
    );
    let exec = managed_token(&app, "weather", "mcp:execute", json!({}));
    for tool in ["get_weather", "delete_repo", "mystery"] {
        assert_eq!(
            rpc(&app, "weather", Some(&exec), call(tool)).await.status(),
            200,
            "{tool}"
        );
    }
}

#[tokio::test]
async fn annotations_learned_from_one_upstream_do_not_carry_over_to_the_next() {
    let app = TestApp::spawn().await;
    let (first, second) = (FakeUpstream::start().await, FakeUpstream::start().await);
    add_server(
        &app,
        "weather",
        &first.url,
        "ezforge_managed",
        None,
        json!({}),
    )
    .await;
    let read = managed_token(&app, "weather", "mcp:read", json!({}));
    let call =
        json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"get_weather"}});
    let list = json!({"jsonrpc":"2.0","id":1,"method":"tools/list"});
    assert_eq!(
        rpc(&app, "weather", Some(&read), list.clone())
            .await
            .status(),
        200
    );
    assert_eq!(
        rpc(&app, "weather", Some(&read), call.clone())
            .await
            .status(),
        200,
        "read-only as the first upstream says"
    );
    // Another upstream: what the first said no longer counts.
    let url = second.url.clone();
    app.state
        .store
        .run(move |c| {
            let mut row = ezforge::store::servers::find(c, "weather")?.expect("server");
            row.upstream_url = Some(url);
            ezforge::store::servers::update(c, &row)
        })
        .await
        .expect("update");
    app.state.servers_changed().await;
    assert_eq!(
        rpc(&app, "weather", Some(&read), call.clone())
            .await
            .status(),
        403,
        "unknown again until the new upstream lists its tools"
    );
    assert_eq!(rpc(&app, "weather", Some(&read), list).await.status(), 200);
    assert_eq!(rpc(&app, "weather", Some(&read), call).await.status(), 200);
    assert_eq!(
        second.requests(),
        2,
        "the new upstream answered what was let through"
    );
}

#[tokio::test]
async fn annotations_are_learned_from_sse_answers_too() {
    let app = TestApp::spawn().await;
    let up = FakeUpstream::start().await;
    add_server(&app, "weather", &up.url, "ezforge_managed", None, json!({})).await;
    let read = managed_token(&app, "weather", "mcp:read", json!({}));
    assert_eq!(
        rpc(&app, "weather", Some(&read), call("get_weather"))
            .await
            .status(),
        403
    );
    // The fake answers tools/list as an SSE stream (CRLF-framed) when asked to.
    let res = app
        .client
        .post(resource(&app, "weather"))
        .bearer_auth(&read)
        .header("content-type", "application/json")
        .header("x-test-sse", "1")
        .body(json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}).to_string())
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .expect("ct")
            .starts_with("text/event-stream")
    );
    let _ = res.bytes().await.expect("body");
    assert_eq!(
        rpc(&app, "weather", Some(&read), call("get_weather"))
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn batches_need_every_scope() {
    let app = TestApp::spawn().await;
    let up = FakeUpstream::start().await;
    add_server(
        &app,
        "weather",
        &up.url,
        "ezforge_managed",
        None,
        json!({"nuke": "admin:danger"}),
    )
    .await;
    let read = managed_token(&app, "weather", "mcp:read", json!({}));
    let batch = json!([
        {"jsonrpc":"2.0","id":1,"method":"tools/list"},
        {"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"nuke"}},
    ]);
    let res = rpc(&app, "weather", Some(&read), batch.clone()).await;
    assert_eq!(res.status(), 403);
    let h = www_authenticate(&res);
    assert!(
        h.contains("scope=\"admin:danger mcp:read\""),
        "names everything the batch needs: {h}"
    );
    let both = managed_token(&app, "weather", "mcp:read admin:danger", json!({}));
    let res = rpc(&app, "weather", Some(&both), batch).await;
    assert_eq!(res.status(), 200);
    assert_eq!(json(res).await.as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn mcp_method_and_name_headers_must_restate_the_body() {
    let app = TestApp::spawn().await;
    let up = FakeUpstream::start().await;
    add_server(&app, "weather", &up.url, "ezforge_managed", None, json!({})).await;
    let t = managed_token(&app, "weather", "mcp:read mcp:execute", json!({}));
    let send = |headers: &'static [(&'static str, &'static str)], body: Value| {
        let mut req = app
            .client
            .post(resource(&app, "weather"))
            .bearer_auth(&t)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(body.to_string());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send()
    };
    let get = json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_weather"}});
    for (headers, status) in [
        (
            &[("mcp-method", "tools/call"), ("mcp-name", "get_weather")][..],
            200,
        ),
        (&[("mcp-method", "tools/call")][..], 200),
        // Saying one thing to the upstream while the policy reads another.
        (&[("mcp-method", "tools/list")][..], 400),
        (
            &[("mcp-method", "tools/call"), ("mcp-name", "mystery")][..],
            400,
        ),
        (
            &[("mcp-name", "get_weather"), ("mcp-name", "get_weather")][..],
            400,
        ),
    ] {
        let res = send(headers, get.clone()).await.expect("send");
        assert_eq!(res.status(), status, "{headers:?}");
        if status == 400 {
            let body = json(res).await;
            assert_eq!(body["error"]["code"], -32020, "HeaderMismatch: {body}");
            assert_eq!(body["id"], 1, "{body}");
        }
    }
    // A tools/call that names no tool cannot pick one by header.
    let nameless = json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}});
    let res = send(&[("mcp-name", "delete_repo")], nameless)
        .await
        .expect("send");
    assert_eq!(res.status(), 400);
    let before = up.requests();
    let batch =
        json!([{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"ping"}]);
    let res = send(&[("mcp-method", "ping")], batch).await.expect("send");
    assert_eq!(res.status(), 400, "a batch has no one method");
    assert_eq!(json(res).await["error"]["code"], -32020);
    assert_eq!(
        up.requests(),
        before,
        "nothing refused reached the upstream"
    );
}

#[tokio::test]
async fn sse_events_stream_without_buffering() {
    let app = TestApp::spawn().await;
    let up = FakeUpstream::start().await;
    add_server(&app, "weather", &up.url, "ezforge_managed", None, json!({})).await;
    let token = managed_token(&app, "weather", "mcp:execute", json!({}));
    // LF-framed events, then CRLF-framed ones: each event is passed on as it comes.
    for method in ["stream", "stream_crlf"] {
        let mut res = rpc(
            &app,
            "weather",
            Some(&token),
            json!({"jsonrpc":"2.0","id":5,"method":method}),
        )
        .await;
        assert_eq!(res.status(), 200);
        assert!(
            res.headers()["content-type"]
                .to_str()
                .expect("ct")
                .starts_with("text/event-stream")
        );
        // The first event arrives while the upstream is still holding back the second.
        let first = tokio::time::timeout(Duration::from_secs(10), res.chunk())
            .await
            .unwrap_or_else(|_| panic!("{method}: the first event waited for the rest"))
            .expect("chunk")
            .expect("some bytes");
        assert!(String::from_utf8_lossy(&first).contains("notifications/progress"));
        up.release.notify_one();
        let mut rest = Vec::new();
        while let Some(chunk) = res.chunk().await.expect("chunk") {
            rest.extend_from_slice(&chunk);
        }
        assert!(String::from_utf8_lossy(&rest).contains("\"done\":true"));
    }
}

#[tokio::test]
async fn sessions_are_bound_to_their_subject() {
    let app = TestApp::spawn().await;
    let up = FakeUpstream::start().await;
    add_server(&app, "weather", &up.url, "ezforge_managed", None, json!({})).await;
    let alice = managed_token(&app, "weather", "mcp:read", json!({}));
    let mallory = managed_token(&app, "weather", "mcp:read", json!({"sub": "usr_mallory"}));
    let res = rpc(
        &app,
        "weather",
        Some(&alice),
        json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}),
    )
    .await;
    assert_eq!(res.status(), 200);
    let session = res.headers()["mcp-session-id"]
        .to_str()
        .expect("sid")
        .to_owned();
    let with_session = |token: &str| {
        app.client
            .post(resource(&app, "weather"))
            .bearer_auth(token)
            .header("mcp-session-id", &session)
            .header("content-type", "application/json")
            .body(json!({"jsonrpc":"2.0","id":2,"method":"tools/list"}).to_string())
            .send()
    };
    assert_ne!(session, "sess-123", "the client holds a sealed id");
    assert_eq!(with_session(&alice).await.expect("req").status(), 200);
    let seen = up.last_headers();
    assert_eq!(
        seen.iter()
            .find(|(k, _)| k == "mcp-session-id")
            .map(|(_, v)| v.as_str()),
        Some("sess-123"),
        "the upstream sees its own id"
    );
    let res = with_session(&mallory).await.expect("req");
    assert_eq!(res.status(), 404);
    // The upstream's bare id, or one made up, is no session of anyone's here.
    for made_up in ["sess-123", "sess-123.AAAAAAAAAAAAAAAAAAAAAA"] {
        let res = app
            .client
            .post(resource(&app, "weather"))
            .bearer_auth(&alice)
            .header("mcp-session-id", made_up)
            .header("content-type", "application/json")
            .body(json!({"jsonrpc":"2.0","id":2,"method":"tools/list"}).to_string())
            .send()
            .await
            .expect("req");
        assert_eq!(res.status(), 404, "{made_up}");
    }
    assert_eq!(
        json(res).await["id"],
        2,
        "a JSON-RPC error with the request's id"
    );
    // Mallory cannot slip alice's session in as a second value, nor send one that is empty.
    let mut fresh = rpc(
        &app,
        "weather",
        Some(&mallory),
        json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}),
    )
    .await;
    assert_eq!(fresh.status(), 200);
    let own = fresh.headers_mut().remove("mcp-session-id").expect("sid");
    let res = app
        .client
        .post(resource(&app, "weather"))
        .bearer_auth(&mallory)
        .header("mcp-session-id", own)
        .header("mcp-session-id", &session)
        .header("content-type", "application/json")
        .body(json!({"jsonrpc":"2.0","id":3,"method":"tools/list"}).to_string())
        .send()
        .await
        .expect("req");
    assert_eq!(res.status(), 400);
    let body = json(res).await;
    assert_eq!(body["id"], 3);
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("Mcp-Session-Id")),
        "{body}"
    );
    let res = app
        .client
        .post(resource(&app, "weather"))
        .bearer_auth(&mallory)
        .header("mcp-session-id", "")
        .header("content-type", "application/json")
        .body(json!({"jsonrpc":"2.0","id":4,"method":"tools/list"}).to_string())
        .send()
        .await
        .expect("req");
    assert_eq!(res.status(), 400);
}

#[tokio::test]
async fn a_session_stays_bound_across_a_restart() {
    let mut app = TestApp::spawn().await;
    let up = FakeUpstream::start().await;
    add_server(&app, "weather", &up.url, "ezforge_managed", None, json!({})).await;
    let alice = managed_token(&app, "weather", "mcp:read", json!({}));
    let init = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{}});
    let res = rpc(&app, "weather", Some(&alice), init).await;
    let session = res.headers()["mcp-session-id"]
        .to_str()
        .expect("sid")
        .to_owned();
    let tmp = app.take_tempdir().expect("tmp");
    let dir = app.data_dir.clone();
    app.stop().await;
    let app = TestApp::builder_in(&dir).spawn().await;
    let alice = managed_token(&app, "weather", "mcp:read", json!({}));
    let mallory = managed_token(&app, "weather", "mcp:read", json!({"sub": "usr_mallory"}));
    let with_session = |token: &str| {
        app.client
            .post(resource(&app, "weather"))
            .bearer_auth(token)
            .header("mcp-session-id", &session)
            .header("content-type", "application/json")
            .body(json!({"jsonrpc":"2.0","id":2,"method":"tools/list"}).to_string())
            .send()
    };
    assert_eq!(with_session(&alice).await.expect("req").status(), 200);
    assert_eq!(with_session(&mallory).await.expect("req").status(), 404);
    drop(app);
    drop(tmp);
}

#[tokio::test]
async fn upstream_down_is_502_and_slow_is_504_with_json_rpc_bodies() {
    let app = TestApp::builder()
        .config(|c| {
            c.gateway.upstream_timeout = ezforge::config::Duration(Duration::from_millis(500));
            c.gateway.upstream_connect_timeout =
                ezforge::config::Duration(Duration::from_millis(300));
        })
        .spawn()
        .await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let dead = format!(
        "http://127.0.0.1:{}/mcp",
        closed.local_addr().expect("addr").port()
    );
    drop(closed);
    add_server(
        &app,
        "down",
        &dead,
        "ezforge_managed",
        None,
        json!({"hang": "mcp:read"}),
    )
    .await;
    let up = FakeUpstream::start().await;
    add_server(
        &app,
        "slow",
        &up.url,
        "ezforge_managed",
        None,
        json!({"hang": "mcp:read"}),
    )
    .await;
    let t = managed_token(&app, "down", "mcp:read", json!({}));
    let res = rpc(
        &app,
        "down",
        Some(&t),
        json!({"jsonrpc":"2.0","id":"abc","method":"tools/list"}),
    )
    .await;
    assert_eq!(res.status(), 502);
    let body = json(res).await;
    assert_eq!(body["id"], "abc");
    assert!(
        !body.to_string().contains("127.0.0.1"),
        "names no internal host: {body}"
    );
    let t = managed_token(&app, "slow", "mcp:execute", json!({}));
    let res = rpc(
        &app,
        "slow",
        Some(&t),
        json!({"jsonrpc":"2.0","id":9,"method":"hang"}),
    )
    .await;
    assert_eq!(res.status(), 504);
    assert_eq!(json(res).await["id"], 9);

    // An upstream that takes the TCP connection but never completes the TLS handshake: the
    // connect timeout runs out, which is "slow" (504), not "down".
    let mute = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let mute_url = format!("https://{}/mcp", mute.local_addr().expect("addr"));
    let held = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = mute.accept().await {
            held.push(sock);
        }
    });
    add_server(&app, "mute", &mute_url, "ezforge_managed", None, json!({})).await;
    let t = managed_token(&app, "mute", "mcp:read", json!({}));
    let res = rpc(
        &app,
        "mute",
        Some(&t),
        json!({"jsonrpc":"2.0","id":3,"method":"tools/list"}),
    )
    .await;
    assert_eq!(res.status(), 504);
    assert_eq!(json(res).await["id"], 3);
    held.abort();
}

#[tokio::test]
async fn bodies_over_the_limit_are_413_and_bad_bodies_400() {
    let app = TestApp::builder()
        .config(|c| c.gateway.body_limit = ezforge::config::ByteSize(1024))
        .spawn()
        .await;
    let up = FakeUpstream::start().await;
    add_server(&app, "weather", &up.url, "ezforge_managed", None, json!({})).await;
    let t = managed_token(&app, "weather", "mcp:execute", json!({}));
    let big = json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{"pad":"x".repeat(2000)}}});
    assert_eq!(rpc(&app, "weather", Some(&t), big).await.status(), 413);
    for body in ["not json", "[[[[[[[[[[", "{\"method\": 5}", "42"] {
        let res = app
            .client
            .post(resource(&app, "weather"))
            .bearer_auth(&t)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request");
        assert_eq!(res.status(), 400, "{body}");
    }
    let deep = format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"params\":{}}}",
        "[".repeat(900)
    );
    let res = app
        .client
        .post(resource(&app, "weather"))
        .bearer_auth(&t)
        .body(deep)
        .send()
        .await
        .expect("req");
    assert_eq!(res.status(), 400);
    let invalid_utf8 = vec![b'{', 0xff, 0xfe, b'}'];
    let res = app
        .client
        .post(resource(&app, "weather"))
        .bearer_auth(&t)
        .body(invalid_utf8)
        .send()
        .await
        .expect("req");
    assert_eq!(res.status(), 400);
    assert_eq!(up.requests(), 0);
}

#[tokio::test]
async fn foreign_origins_are_refused_and_preflight_is_answered() {
    let app = TestApp::spawn().await;
    let up = FakeUpstream::start().await;
    add_server(&app, "weather", &up.url, "ezforge_managed", None, json!({})).await;
    let t = managed_token(&app, "weather", "mcp:read", json!({}));
    let with_origin = |origin: &str| {
        app.client
            .post(resource(&app, "weather"))
            .bearer_auth(&t)
            .header("origin", origin)
            .header("content-type", "application/json")
            .body(json!({"jsonrpc":"2.0","id":1,"method":"ping"}).to_string())
            .send()
    };
    assert_eq!(
        with_origin("https://evil.example")
            .await
            .expect("req")
            .status(),
        403
    );
    let ok = with_origin(&app.address).await.expect("req");
    assert_eq!(ok.status(), 200);
    assert_eq!(
        ok.headers()["access-control-allow-origin"],
        app.address.as_str()
    );
    let pre = app
        .client
        .request(reqwest::Method::OPTIONS, resource(&app, "weather"))
        .header("origin", "http://localhost:6274")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .expect("preflight");
    assert_eq!(pre.status(), 204);
    let expose = pre.headers()["access-control-expose-headers"]
        .to_str()
        .expect("h")
        .to_owned();
    assert!(expose.contains("WWW-Authenticate"), "{expose}");
}

/// An app whose front door allows `per_minute` with bursts of `burst`, serving `weather`.
async fn weather_limited_to(per_minute: u32, burst: u32) -> (TestApp, FakeUpstream) {
    let app = TestApp::builder()
        .config(move |c| c.gateway.rate_limit = ezforge::config::RateLimit { per_minute, burst })
        .spawn()
        .await;
    let up = FakeUpstream::start().await;
    add_server(&app, "weather", &up.url, "ezforge_managed", None, json!({})).await;
    (app, up)
}

#[tokio::test]
async fn rate_limits_answer_429_then_recover() {
    // 600/min refills a token every 100 ms: the four requests below must fit in that, which
    // 10 ms (6000/min) did not on a loaded machine.
    let (app, _up) = weather_limited_to(600, 3).await;
    let t = managed_token(&app, "weather", "mcp:read", json!({}));
    let ping = json!({"jsonrpc":"2.0","id":3,"method":"ping"});
    for _ in 0..3 {
        assert_eq!(
            rpc(&app, "weather", Some(&t), ping.clone()).await.status(),
            200
        );
    }
    let res = rpc(&app, "weather", Some(&t), ping.clone()).await;
    assert_eq!(res.status(), 429);
    assert!(res.headers().contains_key("retry-after"));
    assert_eq!(json(res).await["id"], 3);
    // Another subject has its own bucket.
    let other = managed_token(&app, "weather", "mcp:read", json!({"sub": "usr_bob"}));
    assert_eq!(
        rpc(&app, "weather", Some(&other), ping.clone())
            .await
            .status(),
        200
    );
    // Poll until the bucket has a token again (each poll is a round trip; 100 ms pass well
    // within these).
    let mut status = 429;
    for _ in 0..5000 {
        status = rpc(&app, "weather", Some(&t), ping.clone())
            .await
            .status()
            .as_u16();
        if status == 200 {
            break;
        }
    }
    assert_eq!(status, 200, "recovers");
}

#[tokio::test]
async fn requests_without_a_good_token_are_limited_by_address() {
    let (app, up) = weather_limited_to(1, 3).await;
    let ping = json!({"jsonrpc":"2.0","id":3,"method":"ping"});
    let good = managed_token(&app, "weather", "mcp:read", json!({}));
    assert_eq!(
        rpc(&app, "weather", Some(&good), ping.clone())
            .await
            .status(),
        200
    );
    // No token: 401 while the address has room, then 429.
    for _ in 0..3 {
        assert_eq!(rpc(&app, "weather", None, ping.clone()).await.status(), 401);
    }
    let res = rpc(&app, "weather", None, ping.clone()).await;
    assert_eq!(res.status(), 429);
    assert!(res.headers().contains_key("retry-after"));
    // A refused token counts like none.
    let forged = format!(
        "{}x",
        managed_token(&app, "weather", "mcp:read", json!({"sub": "usr_x"}))
    );
    assert_eq!(
        rpc(&app, "weather", Some(&forged), ping.clone())
            .await
            .status(),
        429
    );
    // Good tokens are limited on their own buckets, new or not: others at the same address
    // (behind one proxy) are not held back.
    let fresh = managed_token(&app, "weather", "mcp:read", json!({"sub": "usr_new"}));
    assert_eq!(
        rpc(&app, "weather", Some(&fresh), ping.clone())
            .await
            .status(),
        200
    );
    assert_eq!(rpc(&app, "weather", Some(&good), ping).await.status(), 200);
    assert_eq!(up.requests(), 3, "only good tokens' requests went through");
}

#[tokio::test]
async fn byoa_tokens_validate_against_the_issuer_jwks() {
    let issuer = TestIssuer::start().await;
    let app = app_trusting(&[&issuer]).await;
    let up = FakeUpstream::start().await;
    let cfg = issuer.byoa_config();
    add_server(&app, "ext", &up.url, "byoa", Some(&cfg), json!({})).await;
    add_server(&app, "other", &up.url, "byoa", Some(&cfg), json!({})).await;
    let doc = json(
        app.get("/.well-known/oauth-protected-resource/mcp/ext")
            .await,
    )
    .await;
    assert_eq!(doc["authorization_servers"], json!([issuer.issuer]));
    let now = ezforge::domain::now();
    let claims = |aud: &str, extra: Value| {
        let mut c = json!({"iss": issuer.issuer, "sub": "ext-user", "aud": [aud, "other-api"], "scp": ["mcp:read"], "exp": now + 600, "azp": "ext-client"});
        if let (Some(c), Some(e)) = (c.as_object_mut(), extra.as_object()) {
            c.extend(e.clone());
        }
        c
    };
    let token = issuer.sign(&claims(&resource(&app, "ext"), json!({})));
    let ping = json!({"jsonrpc":"2.0","id":1,"method":"tools/list"});
    assert_eq!(
        rpc(&app, "ext", Some(&token), ping.clone()).await.status(),
        200
    );
    let seen = up.last_headers();
    assert!(
        seen.iter()
            .any(|(k, v)| k == "x-ezforge-client-id" && v == "ext-client")
    );
    // Bound to the resource: refused at another server of the same issuer.
    assert_eq!(
        rpc(&app, "other", Some(&token), ping.clone())
            .await
            .status(),
        401
    );
    // Wrong issuer, and our own managed tokens, are refused at a BYOA server.
    let wrong = issuer.sign(&claims(
        &resource(&app, "ext"),
        json!({"iss": "https://evil.example"}),
    ));
    assert_eq!(
        rpc(&app, "ext", Some(&wrong), ping.clone()).await.status(),
        401
    );

    // The issuer rotates: the new kid is fetched once and accepted.
    let fetches_before = *issuer.fetches.lock().expect("lock");
    issuer.rotate("key-2");
    let rotated = issuer.sign(&claims(&resource(&app, "ext"), json!({"jti": "r"})));
    assert_eq!(
        rpc(&app, "ext", Some(&rotated), ping.clone())
            .await
            .status(),
        200
    );
    assert_eq!(*issuer.fetches.lock().expect("lock"), fetches_before + 1);
    // An unknown kid right after does not trigger another fetch (rate-limited).
    let stranger = SigningKey::generate("key-x").sign(&claims(&resource(&app, "ext"), json!({})));
    assert_eq!(
        rpc(&app, "ext", Some(&stranger), ping.clone())
            .await
            .status(),
        401
    );
    assert_eq!(*issuer.fetches.lock().expect("lock"), fetches_before + 1);
    // Our own managed tokens mean nothing at a BYOA server.
    let managed = managed_token(&app, "ext", "mcp:read", json!({}));
    assert_eq!(
        rpc(&app, "ext", Some(&managed), ping.clone())
            .await
            .status(),
        401
    );

    // The issuer goes down: cached keys keep working.
    issuer.stop().await;
    let after = issuer.sign(&claims(
        &resource(&app, "ext"),
        json!({"jti": "after-down"}),
    ));
    assert_eq!(rpc(&app, "ext", Some(&after), ping).await.status(), 200);
}

#[tokio::test]
async fn a_token_verified_for_one_server_counts_only_where_the_same_keys_are_trusted() {
    // The victim trusts issuer B; an attacker's server names B's issuer (or ours) but its own
    // key set A, under which they sign tokens for the victim.
    let a = TestIssuer::start().await;
    let b = TestIssuer::start().await;
    let app = app_trusting(&[&a, &b]).await;
    let up = FakeUpstream::start().await;
    add_server(
        &app,
        "victim",
        &up.url,
        "byoa",
        Some(&b.byoa_config()),
        json!({}),
    )
    .await;
    add_server(&app, "managed", &up.url, "ezforge_managed", None, json!({})).await;
    let mut copy_b = a.byoa_config();
    copy_b.issuer = b.issuer.clone();
    add_server(&app, "copy-b", &up.url, "byoa", Some(&copy_b), json!({})).await;
    let mut copy_ours = a.byoa_config();
    copy_ours.issuer = app.address.clone();
    add_server(
        &app,
        "copy-ours",
        &up.url,
        "byoa",
        Some(&copy_ours),
        json!({}),
    )
    .await;

    let now = ezforge::domain::now();
    let list = json!({"jsonrpc":"2.0","id":1,"method":"tools/list"});
    for (decoy, iss, target) in [
        ("copy-b", b.issuer.clone(), "victim"),
        ("copy-ours", app.address.clone(), "managed"),
    ] {
        let forged = a.sign(&json!({
            "iss": iss, "sub": "usr_anyone", "aud": [resource(&app, target), resource(&app, decoy)],
            "scope": "mcp:read mcp:write mcp:execute", "exp": now + 600,
        }));
        // Valid at the attacker's own server (its keys, its issuer string)...
        assert_eq!(
            rpc(&app, decoy, Some(&forged), list.clone()).await.status(),
            200
        );
        // ...and nothing at the victim's, although it is now in the verified-token cache.
        assert_eq!(
            rpc(&app, target, Some(&forged), list.clone())
                .await
                .status(),
            401,
            "{target}"
        );
    }
    // The victim's own tokens still pass.
    let good = b.sign(&json!({
        "iss": b.issuer, "sub": "u", "aud": resource(&app, "victim"), "exp": now + 600,
        "scope": "mcp:read",
    }));
    assert_eq!(
        rpc(&app, "victim", Some(&good), list.clone())
            .await
            .status(),
        200
    );

    // Tokens stuffed with scopes or audiences are refused rather than kept in memory.
    let stuffed = b.sign(&json!({
        "iss": b.issuer, "sub": "u", "aud": resource(&app, "victim"), "exp": now + 600,
        "scope": vec!["s"; 1000].join(" "),
    }));
    assert_eq!(
        rpc(&app, "victim", Some(&stuffed), list).await.status(),
        401
    );
}

#[tokio::test]
async fn an_unreachable_issuer_is_503_not_a_bad_token() {
    let issuer = TestIssuer::start().await;
    let app = app_trusting(&[&issuer]).await;
    let up = FakeUpstream::start().await;
    add_server(
        &app,
        "ext",
        &up.url,
        "byoa",
        Some(&issuer.byoa_config()),
        json!({}),
    )
    .await;
    let now = ezforge::domain::now();
    let token = issuer.sign(&json!({
        "iss": issuer.issuer, "sub": "u", "aud": resource(&app, "ext"), "exp": now + 600,
    }));
    issuer.stop().await;
    // Its keys were never fetched: the first try fails, and so does the next (not refetched
    // within 30 s); neither blames the token.
    for _ in 0..2 {
        let res = rpc(
            &app,
            "ext",
            Some(&token),
            json!({"jsonrpc":"2.0","id":7,"method":"ping"}),
        )
        .await;
        assert_eq!(res.status(), 503);
        assert!(res.headers().get("www-authenticate").is_none());
        assert_eq!(res.headers()["retry-after"], "30");
        let body = json(res).await;
        assert_eq!(body["id"], 7, "{body}");
        assert_eq!(body["error"]["code"], -32002, "{body}");
    }
}

#[tokio::test]
async fn upstream_challenges_never_reach_clients_and_encoded_bodies_are_refused() {
    let app = TestApp::spawn().await;
    let up = FakeUpstream::start().await;
    add_server(&app, "weather", &up.url, "ezforge_managed", None, json!({})).await;
    let token = managed_token(&app, "weather", "mcp:execute", json!({}));
    let res = rpc(
        &app,
        "weather",
        Some(&token),
        json!({"jsonrpc":"2.0","id":1,"method":"unauthorized"}),
    )
    .await;
    assert_eq!(
        res.status(),
        502,
        "the token was good here: the upstream is misconfigured"
    );
    assert!(res.headers().get("www-authenticate").is_none());
    let res = rpc(
        &app,
        "weather",
        Some(&token),
        json!({"jsonrpc":"2.0","id":1,"method":"forbidden"}),
    )
    .await;
    assert_eq!(res.status(), 403);
    assert!(res.headers().get("www-authenticate").is_none());

    let requests = up.requests();
    for encoding in ["gzip", "br", "identity, gzip"] {
        let res = app
            .client
            .post(resource(&app, "weather"))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .header("content-encoding", encoding)
            .body(json!({"jsonrpc":"2.0","id":1,"method":"ping"}).to_string())
            .send()
            .await
            .expect("request");
        assert_eq!(res.status(), 415, "{encoding}");
    }
    assert_eq!(up.requests(), requests, "nothing reached the upstream");
    let res = app
        .client
        .post(resource(&app, "weather"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .header("content-encoding", "identity")
        .body(json!({"jsonrpc":"2.0","id":1,"method":"ping"}).to_string())
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn switching_a_server_to_byoa_stops_managed_tokens_at_once() {
    let issuer = TestIssuer::start().await;
    let app = app_trusting(&[&issuer]).await;
    let up = FakeUpstream::start().await;
    add_server(&app, "weather", &up.url, "ezforge_managed", None, json!({})).await;
    let token = managed_token(&app, "weather", "mcp:read", json!({}));
    let ping = json!({"jsonrpc":"2.0","id":1,"method":"tools/list"});
    assert_eq!(
        rpc(&app, "weather", Some(&token), ping.clone())
            .await
            .status(),
        200
    );
    // PATCH the auth config through the control API as the admin.
    let session = crate::helpers::admin_token(&app).await;
    let cfg = issuer.byoa_config();
    let res = reqwest::Client::new()
        .patch(app.url("/v1/servers/weather/auth"))
        .bearer_auth(&session)
        .json(&json!({"authMode": "byoa", "byoaConfig": {
            "issuer": cfg.issuer, "jwksUri": cfg.jwks_uri,
            "authorizationEndpoint": cfg.authorization_endpoint, "tokenEndpoint": cfg.token_endpoint}}))
        .send()
        .await
        .expect("patch");
    assert_eq!(res.status(), 200);
    assert_eq!(
        rpc(&app, "weather", Some(&token), ping).await.status(),
        401,
        "the cached managed token no longer passes"
    );
}

#[tokio::test]
async fn deployment_wide_byoa_points_metadata_at_the_external_issuer() {
    let issuer = TestIssuer::start().await;
    let cfg = issuer.byoa_config();
    let app = TestApp::builder()
        .config(move |c| {
            c.auth.mode = AuthMode::Byoa;
            c.auth.byoa = Some(cfg);
        })
        .spawn()
        .await;
    let up = FakeUpstream::start().await;
    add_server(&app, "weather", &up.url, "byoa", None, json!({})).await;
    let doc = json(
        app.get("/.well-known/oauth-protected-resource/mcp/weather")
            .await,
    )
    .await;
    assert_eq!(doc["authorization_servers"], json!([issuer.issuer]));
}

#[tokio::test]
async fn host_routing_serves_root_metadata_and_proxies_sub_paths() {
    let app = TestApp::builder()
        .config(|c| {
            c.gateway.routing = ezforge::config::Routing::Host;
            c.gateway.server_domain = Some("mcp.example.test".into());
        })
        .spawn()
        .await;
    let up = FakeUpstream::start().await;
    add_server(&app, "weather", &up.url, "ezforge_managed", None, json!({})).await;
    let host = "weather.mcp.example.test";
    let res = app
        .client
        .get(app.url("/.well-known/oauth-protected-resource"))
        .header("host", host)
        .send()
        .await
        .expect("metadata");
    assert_eq!(res.status(), 200);
    let doc = json(res).await;
    assert_eq!(doc["resource"], "https://weather.mcp.example.test");
    // A browser client's preflight for it is answered too (it was proxied, and refused 401).
    let res = app
        .client
        .request(
            reqwest::Method::OPTIONS,
            app.url("/.well-known/oauth-protected-resource"),
        )
        .header("host", host)
        .header("origin", "https://app.example")
        .header("access-control-request-method", "GET")
        .send()
        .await
        .expect("preflight");
    assert_eq!(res.status(), 204);
    assert_eq!(
        res.headers()
            .get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok()),
        Some("*")
    );
    // The control API is not reachable on a server's host.
    let res = app
        .client
        .get(app.url("/v1/health"))
        .header("host", host)
        .send()
        .await
        .expect("req");
    assert_eq!(res.status(), 401, "proxied path, so a token is required");
    let now = ezforge::domain::now();
    let keys = app.state.keys.current();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some(keys.active.kid.clone());
    header.typ = Some("at+jwt".into());
    let claims = json!({"iss": app.address, "sub": "u", "aud": "https://weather.mcp.example.test", "scope": "mcp:read", "exp": now + 600});
    let token = jsonwebtoken::encode(&header, &claims, &keys.active.encoding).expect("sign");
    let res = app
        .client
        .post(app.url("/messages"))
        .header("host", host)
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}).to_string())
        .send()
        .await
        .expect("proxied");
    assert_eq!(res.status(), 200);
    // The main host still serves the control API.
    assert_eq!(app.get("/v1/health").await.status(), 200);
}

#[tokio::test]
async fn host_routing_works_over_http2() {
    // Over HTTP/2 the host comes as `:authority`, with no Host header.
    let host = "weather.mcp.example.test";
    let app = TestApp::builder()
        .config(|c| {
            c.gateway.routing = ezforge::config::Routing::Host;
            c.gateway.server_domain = Some("mcp.example.test".into());
            c.tls.mode = ezforge::config::TlsMode::SelfSigned;
            c.tls.names = vec![host.into()];
        })
        .spawn()
        .await;
    let up = FakeUpstream::start().await;
    add_server(&app, "weather", &up.url, "ezforge_managed", None, json!({})).await;
    let pem = std::fs::read(app.data_dir.join("tls/cert.pem")).expect("cert");
    let h2 = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("pem"))
        .resolve(host, ([127, 0, 0, 1], app.port).into())
        .build()
        .expect("client");
    let res = h2
        .get(format!(
            "https://{host}:{}/.well-known/oauth-protected-resource",
            app.port
        ))
        .send()
        .await
        .expect("metadata over HTTP/2");
    assert_eq!(res.version(), reqwest::Version::HTTP_2);
    assert_eq!(res.status(), 200);
    assert_eq!(
        json(res).await["resource"],
        "https://weather.mcp.example.test"
    );
    let now = ezforge::domain::now();
    let keys = app.state.keys.current();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some(keys.active.kid.clone());
    header.typ = Some("at+jwt".into());
    let claims = json!({"iss": app.address, "sub": "u", "aud": "https://weather.mcp.example.test", "scope": "mcp:read", "exp": now + 600});
    let token = jsonwebtoken::encode(&header, &claims, &keys.active.encoding).expect("sign");
    let res = h2
        .post(format!("https://{host}:{}/messages", app.port))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}).to_string())
        .send()
        .await
        .expect("proxied over HTTP/2");
    assert_eq!(res.status(), 200);
    let seen = up.last_headers();
    let forwarded = seen.iter().find(|(k, _)| k == "x-forwarded-host");
    assert_eq!(
        forwarded.map(|(_, v)| v.as_str()),
        Some(format!("{host}:{}", app.port).as_str())
    );
}

#[tokio::test]
async fn the_access_log_records_requests_in_batches() {
    let mut app = TestApp::spawn().await;
    let up = FakeUpstream::start().await;
    add_server(&app, "weather", &up.url, "ezforge_managed", None, json!({})).await;
    let t = managed_token(&app, "weather", "mcp:read", json!({}));
    assert_eq!(
        rpc(
            &app,
            "weather",
            Some(&t),
            json!({"jsonrpc":"2.0","id":1,"method":"tools/list"})
        )
        .await
        .status(),
        200
    );
    assert_eq!(
        rpc(
            &app,
            "weather",
            Some("bad"),
            json!({"jsonrpc":"2.0","id":1,"method":"tools/list"})
        )
        .await
        .status(),
        401
    );
    let tmp = app.take_tempdir().expect("tmp");
    let db = app.db_path();
    app.stop().await;
    let conn = rusqlite::Connection::open(db).expect("open");
    let rows: Vec<(String, Option<String>, i64, Option<String>)> = conn
        .prepare("SELECT method, subject, status, auth_failure FROM request_log ORDER BY id")
        .expect("prepare")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(
        rows[0],
        ("tools/list".into(), Some("usr_alice".into()), 200, None)
    );
    assert_eq!(rows[1].2, 401);
    assert_eq!(rows[1].3.as_deref(), Some("malformed"));
    drop(tmp);
}

#[tokio::test]
async fn a_server_can_have_its_own_rate_limit() {
    let up = FakeUpstream::start().await;
    let upstream = up.url.clone();
    let app = TestApp::builder()
        .config(move |c| {
            c.servers = vec![ezforge::config::ServerDecl {
                project: "ops".into(),
                slug: "tight".into(),
                name: None,
                upstream: Some(upstream),
                auth_mode: None,
                byoa: None,
                tool_scopes: Default::default(),
                rate_limit: Some(ezforge::config::RateLimit {
                    per_minute: 1,
                    burst: 2,
                }),
            }];
        })
        .spawn()
        .await;
    add_server(&app, "roomy", &up.url, "ezforge_managed", None, json!({})).await;
    let ping = json!({"jsonrpc":"2.0","id":1,"method":"ping"});
    let tight = managed_token(&app, "tight", "mcp:read", json!({}));
    assert_eq!(
        rpc(&app, "tight", Some(&tight), ping.clone())
            .await
            .status(),
        200
    );
    assert_eq!(
        rpc(&app, "tight", Some(&tight), ping.clone())
            .await
            .status(),
        200
    );
    assert_eq!(
        rpc(&app, "tight", Some(&tight), ping.clone())
            .await
            .status(),
        429,
        "the server's own limit"
    );
    let roomy = managed_token(&app, "roomy", "mcp:read", json!({}));
    for _ in 0..5 {
        assert_eq!(
            rpc(&app, "roomy", Some(&roomy), ping.clone())
                .await
                .status(),
            200,
            "the global limit elsewhere"
        );
    }
    // Through the API: rateLimit on a server.
    let session = crate::helpers::admin_token(&app).await;
    // Zero, and sizes that overflowed the limiter's arithmetic (a panic on every routing-table
    // rebuild in debug builds), are refused.
    for bad in [
        json!({"perMinute": 0, "burst": 1}),
        json!({"perMinute": 1, "burst": 4_294_967_295_u32}),
        json!({"perMinute": 100_000_001, "burst": 1}),
    ] {
        let res = reqwest::Client::new()
            .patch(app.url("/v1/servers/roomy"))
            .bearer_auth(&session)
            .json(&json!({ "rateLimit": bad }))
            .send()
            .await
            .expect("patch");
        assert_eq!(res.status(), 422, "{bad}");
        let body = json(res).await;
        assert!(
            body["error"]["details"].to_string().contains("rateLimit"),
            "{body}"
        );
    }
    let res = reqwest::Client::new()
        .patch(app.url("/v1/servers/roomy"))
        .bearer_auth(&session)
        .json(&json!({"rateLimit": {"perMinute": 1, "burst": 1}}))
        .send()
        .await
        .expect("patch");
    assert_eq!(res.status(), 200);
    assert_eq!(
        json(res).await["data"]["rateLimit"],
        json!({"perMinute": 1, "burst": 1})
    );
    assert_eq!(
        rpc(&app, "roomy", Some(&roomy), ping.clone())
            .await
            .status(),
        200
    );
    assert_eq!(rpc(&app, "roomy", Some(&roomy), ping).await.status(), 429);
}

/// A raw upstream that answers one SSE event, then waits for its connection to close and
/// counts that. (An actix upstream would only notice the close when it next wrote.)
async fn raw_sse_upstream() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/mcp", listener.local_addr().expect("addr"));
    let closed = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = closed.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n\r\n";
                if sock.write_all(head.as_bytes()).await.is_err()
                    || sock.write_all(b"event: ping\ndata: {}\n\n").await.is_err()
                {
                    return;
                }
                // Silence; the body ends when the connection does.
                loop {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                }
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            });
        }
    });
    (url, closed)
}

#[tokio::test]
async fn a_departed_sse_client_releases_its_upstream_connection() {
    let app = TestApp::builder()
        .config(|c| c.gateway.sse_keepalive = ezforge::config::Duration(Duration::from_millis(100)))
        .spawn()
        .await;
    let (upstream, closed) = raw_sse_upstream().await;
    add_server(
        &app,
        "weather",
        &upstream,
        "ezforge_managed",
        None,
        json!({}),
    )
    .await;
    let token = managed_token(&app, "weather", "mcp:read", json!({}));
    let client = reqwest::Client::new();
    let mut res = client
        .get(resource(&app, "weather"))
        .bearer_auth(&token)
        .header("accept", "text/event-stream")
        .send()
        .await
        .expect("stream");
    assert_eq!(res.status(), 200);
    let first = res.chunk().await.expect("chunk").expect("bytes");
    assert!(String::from_utf8_lossy(&first).contains("event: ping"));
    // While the upstream is quiet, keepalive comments arrive at event boundaries.
    let comment = tokio::time::timeout(Duration::from_secs(10), res.chunk())
        .await
        .expect("a keepalive comes")
        .expect("chunk")
        .expect("bytes");
    assert_eq!(&comment[..], b": keepalive\n\n");
    assert_eq!(closed.load(std::sync::atomic::Ordering::SeqCst), 0);
    drop(res);
    drop(client);
    // The next keepalive fails to write; the gateway drops the stream and closes the upstream
    // connection.
    let mut n = 0;
    for _ in 0..200 {
        n = closed.load(std::sync::atomic::Ordering::SeqCst);
        if n == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        n, 1,
        "the upstream connection was closed after the client left"
    );
}

#[tokio::test]
async fn the_old_sse_transport_works_through_the_front_door() {
    let app = TestApp::spawn().await;
    let up = FakeUpstream::start().await;
    add_server(&app, "legacy", &up.url, "ezforge_managed", None, json!({})).await;
    let token = managed_token(&app, "legacy", "mcp:execute", json!({}));
    let res = app
        .client
        .get(format!("{}/sse", resource(&app, "legacy")))
        .bearer_auth(&token)
        .header("accept", "text/event-stream")
        .header("x-test-legacy", "1")
        .send()
        .await
        .expect("sse");
    assert_eq!(res.status(), 200);
    assert_eq!(
        up.last_headers()
            .iter()
            .find(|(k, _)| k == ":path")
            .map(|(_, v)| v.as_str()),
        Some("/mcp/sse")
    );
    let body = res.text().await.expect("body");
    // The endpoint now names the front door's path for this server, not the upstream's, and
    // the session sealed for this caller (see gateway_confusion.rs).
    let endpoint = body
        .lines()
        .find_map(|l| l.strip_prefix("data: /mcp/legacy/messages?sessionId="))
        .unwrap_or_else(|| panic!("{body}"));
    assert!(endpoint.starts_with("abc."), "{body}");
    let res = app
        .client
        .post(format!(
            "{}/messages?sessionId={endpoint}",
            resource(&app, "legacy")
        ))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}).to_string())
        .send()
        .await
        .expect("post");
    assert_eq!(res.status(), 200);
    assert_eq!(
        up.last_headers()
            .iter()
            .find(|(k, _)| k == ":path")
            .map(|(_, v)| v.as_str()),
        Some("/mcp/messages?sessionId=abc"),
        "forwarded under the upstream's base, with the upstream's own id"
    );
}

#[tokio::test]
async fn a_client_trickling_its_body_gets_408() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = TestApp::builder()
        .config(|c| c.gateway.body_timeout = ezforge::config::Duration(Duration::from_millis(300)))
        .spawn()
        .await;
    let up = FakeUpstream::start().await;
    add_server(&app, "weather", &up.url, "ezforge_managed", None, json!({})).await;
    let token = managed_token(&app, "weather", "mcp:read", json!({}));
    let mut sock = tokio::net::TcpStream::connect(("127.0.0.1", app.port))
        .await
        .expect("connect");
    let head = format!(
        "POST /mcp/weather HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"jsonrpc\""
    );
    sock.write_all(head.as_bytes()).await.expect("write");
    // ...and nothing more. The gateway gives up on the body and answers.
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    let read = async {
        while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
            match sock.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("an answer, not a stuck worker");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert_eq!(up.requests(), 0);
}

#[tokio::test]
async fn paths_climbing_above_the_upstreams_base_are_refused() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = TestApp::spawn().await;
    let up = FakeUpstream::start().await;
    add_server(&app, "weather", &up.url, "ezforge_managed", None, json!({})).await;
    let token = managed_token(&app, "weather", "mcp:read", json!({}));
    // Sent raw: HTTP clients resolve dot segments before sending.
    for path in [
        "/mcp/weather/../../admin",
        "/mcp/weather/%2E%2e/admin",
        "/mcp/weather/a%2Fb",
    ] {
        let mut sock = tokio::net::TcpStream::connect(("127.0.0.1", app.port))
            .await
            .expect("connect");
        let body = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
        let req = format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        sock.write_all(req.as_bytes()).await.expect("write");
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), sock.read_to_end(&mut answer))
            .await
            .expect("an answer")
            .expect("read");
        let text = String::from_utf8_lossy(&answer);
        assert!(text.starts_with("HTTP/1.1 400"), "{path}: {text}");
        assert!(text.contains("dot segments"), "{path}: {text}");
    }
    assert_eq!(up.requests(), 0, "nothing reached the upstream");
}

/// A raw keep-alive upstream counting the connections it accepts. The tool a request calls
/// picks the answer: `plain` (Content-Length), `chunked`, or `close` (answers, then closes).
async fn keepalive_upstream() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/mcp", listener.local_addr().expect("addr"));
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut buf = vec![0u8; 16 * 1024];
                // Connections that carry a request (ezforge's reachability probe opens one and
                // sends nothing).
                let mut counted = false;
                loop {
                    // One request: the head, then Content-Length bytes of body.
                    let head_end = loop {
                        if let Some(i) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        match sock.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => seen.extend_from_slice(&buf[..n]),
                        }
                    };
                    if !counted {
                        counted = true;
                        count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                    let head = String::from_utf8_lossy(&seen[..head_end]).to_ascii_lowercase();
                    let length: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    while seen.len() < head_end + length {
                        match sock.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => seen.extend_from_slice(&buf[..n]),
                        }
                    }
                    let body: Vec<u8> = seen.drain(..head_end + length).skip(head_end).collect();
                    let body = String::from_utf8_lossy(&body).into_owned();
                    let answer = r#"{"jsonrpc":"2.0","id":7,"result":{"content":[]}}"#;
                    let (reply, close) = if body.contains("\"chunked\"") {
                        let (a, b) = answer.split_at(20);
                        (
                            format!(
                                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
                                a.len(),
                                b.len()
                            ),
                            false,
                        )
                    } else {
                        let close = body.contains("\"close\"");
                        (
                            format!(
                                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{}\r\n{answer}",
                                answer.len(),
                                if close { "connection: close\r\n" } else { "" }
                            ),
                            close,
                        )
                    };
                    if sock.write_all(reply.as_bytes()).await.is_err() || close {
                        return;
                    }
                }
            });
        }
    });
    (url, accepted)
}

#[tokio::test]
async fn upstream_connections_are_reused_and_closed_ones_replaced() {
    let app = TestApp::spawn().await;
    let (upstream, accepted) = keepalive_upstream().await;
    add_server(&app, "pool", &upstream, "ezforge_managed", None, json!({})).await;
    let token = managed_token(&app, "pool", "mcp:read mcp:write mcp:execute", json!({}));
    let answer = json!({"jsonrpc":"2.0","id":7,"result":{"content":[]}});
    let accepted_now = || accepted.load(std::sync::atomic::Ordering::SeqCst);
    for tool in ["plain", "plain", "chunked", "plain", "chunked"] {
        let res = rpc(&app, "pool", Some(&token), call(tool)).await;
        assert_eq!(res.status(), 200, "{tool}");
        assert_eq!(json(res).await, answer, "{tool}");
    }
    assert_eq!(
        accepted_now(),
        1,
        "one keep-alive connection served them all"
    );

    // An upstream closing the connection after its answer: the next request gets a new one.
    for tool in ["close", "plain", "close", "close", "plain"] {
        let res = rpc(&app, "pool", Some(&token), call(tool)).await;
        assert_eq!(res.status(), 200, "{tool}");
        assert_eq!(json(res).await, answer, "{tool}");
    }
    assert_eq!(accepted_now(), 4);
}
