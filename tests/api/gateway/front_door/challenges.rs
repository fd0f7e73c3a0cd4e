//! Protected resource metadata and the 401/403 challenges: missing, bad, insufficient tokens.

use super::*;

#[tokio::test]
async fn protected_resource_metadata_names_server_and_issuer() {
    let app = TestApp::spawn().await;
    let up = FakeUpstream::start().await;
    app.new_server("weather", &up.url)
        .tool_scopes(json!({"nuke": "admin:danger"}))
        .create()
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
    app.new_server("weather", &up.url).create().await;
    let metadata = format!(
        "{}/.well-known/oauth-protected-resource/mcp/weather",
        app.address
    );

    let res = app
        .mcp("weather")
        .send(json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}))
        .await;
    assert_eq!(res.status, 401);
    let h = res.www_authenticate();
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
            .mcp("weather")
            .header("authorization", auth)
            .tools_list()
            .await;
        assert_eq!(res.status, 401, "{auth}");
        let h = res.www_authenticate();
        assert!(
            h.starts_with("Bearer ") && !h.contains("error="),
            "{auth}: {h}"
        );
    }

    let res = app
        .mcp("weather")
        .bearer("not-a-jwt")
        .send(json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}))
        .await;
    assert_eq!(res.status, 401);
    let h = res.www_authenticate();
    assert!(
        h.contains("error=\"invalid_token\"") && h.contains("resource_metadata="),
        "{h}"
    );

    let token = managed_token(&app, "weather", "mcp:read", json!({}));
    let res = app
        .mcp("weather")
        .bearer(&token)
        .send(call("delete_repo"))
        .await;
    assert_eq!(res.status, 403);
    let h = res.www_authenticate();
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
async fn every_validation_failure_is_401_never_500() {
    let app = TestApp::spawn().await;
    let up = FakeUpstream::start().await;
    app.new_server("a", &up.url).create().await;
    app.new_server("b", &up.url).create().await;
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
        let res = app
            .mcp("a")
            .bearer(&token)
            .send(json!({"jsonrpc":"2.0","id":1,"method":"ping"}))
            .await;
        assert_eq!(res.status, 401, "{name}");
        assert!(res.www_authenticate().contains("invalid_token"), "{name}");
    }
    // Within the 60 s leeway an expired token still passes.
    let fresh_enough = managed_token(&app, "a", "mcp:execute", json!({"exp": now - 10}));
    assert_eq!(
        app.mcp("a")
            .bearer(&fresh_enough)
            .send(json!({"jsonrpc":"2.0","id":1,"method":"ping"}))
            .await
            .status,
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
    app.new_server("weather", &up.url).create().await;
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
