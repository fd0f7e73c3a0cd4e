//! Bring-your-own-authorization servers: external issuers' tokens and keys.

use super::*;

#[tokio::test]
async fn byoa_tokens_validate_against_the_issuer_jwks() {
    let issuer = TestIssuer::start().await;
    let app = app_trusting(&[&issuer]).await;
    let up = FakeUpstream::start().await;
    let cfg = issuer.byoa_config();
    app.new_server("ext", &up.url).byoa(&cfg).create().await;
    app.new_server("other", &up.url).byoa(&cfg).create().await;
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
        app.mcp("ext")
            .bearer(&token)
            .send(ping.clone())
            .await
            .status,
        200
    );
    let seen = up.last_headers();
    assert!(
        seen.iter()
            .any(|(k, v)| k == "x-ezforge-client-id" && v == "ext-client")
    );
    // Bound to the resource: refused at another server of the same issuer.
    assert_eq!(
        app.mcp("other")
            .bearer(&token)
            .send(ping.clone())
            .await
            .status,
        401
    );
    // Wrong issuer, and our own managed tokens, are refused at a BYOA server.
    let wrong = issuer.sign(&claims(
        &resource(&app, "ext"),
        json!({"iss": "https://evil.example"}),
    ));
    assert_eq!(
        app.mcp("ext")
            .bearer(&wrong)
            .send(ping.clone())
            .await
            .status,
        401
    );

    // The issuer rotates: the new kid is fetched once and accepted.
    let fetches_before = *issuer.fetches.lock().expect("lock");
    issuer.rotate("key-2");
    let rotated = issuer.sign(&claims(&resource(&app, "ext"), json!({"jti": "r"})));
    assert_eq!(
        app.mcp("ext")
            .bearer(&rotated)
            .send(ping.clone())
            .await
            .status,
        200
    );
    assert_eq!(*issuer.fetches.lock().expect("lock"), fetches_before + 1);
    // An unknown kid right after does not trigger another fetch (rate-limited).
    let stranger = SigningKey::generate("key-x").sign(&claims(&resource(&app, "ext"), json!({})));
    assert_eq!(
        app.mcp("ext")
            .bearer(&stranger)
            .send(ping.clone())
            .await
            .status,
        401
    );
    assert_eq!(*issuer.fetches.lock().expect("lock"), fetches_before + 1);
    // Our own managed tokens mean nothing at a BYOA server.
    let managed = managed_token(&app, "ext", "mcp:read", json!({}));
    assert_eq!(
        app.mcp("ext")
            .bearer(&managed)
            .send(ping.clone())
            .await
            .status,
        401
    );

    // The issuer goes down: cached keys keep working.
    issuer.stop().await;
    let after = issuer.sign(&claims(
        &resource(&app, "ext"),
        json!({"jti": "after-down"}),
    ));
    assert_eq!(app.mcp("ext").bearer(&after).send(ping).await.status, 200);
}

#[tokio::test]
async fn a_token_verified_for_one_server_counts_only_where_the_same_keys_are_trusted() {
    // The victim trusts issuer B; an attacker's server names B's issuer (or ours) but its own
    // key set A, under which they sign tokens for the victim.
    let a = TestIssuer::start().await;
    let b = TestIssuer::start().await;
    let app = app_trusting(&[&a, &b]).await;
    let up = FakeUpstream::start().await;
    app.new_server("victim", &up.url)
        .byoa(&b.byoa_config())
        .create()
        .await;
    app.new_server("managed", &up.url).create().await;
    let mut copy_b = a.byoa_config();
    copy_b.issuer = b.issuer.clone();
    app.new_server("copy-b", &up.url)
        .byoa(&copy_b)
        .create()
        .await;
    let mut copy_ours = a.byoa_config();
    copy_ours.issuer = app.address.clone();
    // The control API refuses our own issuer for a BYOA server; an older version may have
    // stored one.
    stored_byoa_server(&app, "copy-ours", &up.url, &copy_ours).await;

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
            app.mcp(decoy)
                .bearer(&forged)
                .send(list.clone())
                .await
                .status,
            200
        );
        // ...and nothing at the victim's, although it is now in the verified-token cache.
        assert_eq!(
            app.mcp(target)
                .bearer(&forged)
                .send(list.clone())
                .await
                .status,
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
        app.mcp("victim")
            .bearer(&good)
            .send(list.clone())
            .await
            .status,
        200
    );

    // Tokens stuffed with scopes or audiences are refused rather than kept in memory.
    let stuffed = b.sign(&json!({
        "iss": b.issuer, "sub": "u", "aud": resource(&app, "victim"), "exp": now + 600,
        "scope": vec!["s"; 1000].join(" "),
    }));
    assert_eq!(
        app.mcp("victim").bearer(&stuffed).send(list).await.status,
        401
    );
}

#[tokio::test]
async fn an_unreachable_issuer_is_503_not_a_bad_token() {
    let issuer = TestIssuer::start().await;
    let app = app_trusting(&[&issuer]).await;
    let up = FakeUpstream::start().await;
    app.new_server("ext", &up.url)
        .byoa(&issuer.byoa_config())
        .create()
        .await;
    let now = ezforge::domain::now();
    let token = issuer.sign(&json!({
        "iss": issuer.issuer, "sub": "u", "aud": resource(&app, "ext"), "exp": now + 600,
    }));
    issuer.stop().await;
    // Its keys were never fetched: the first try fails, and so does the next (not refetched
    // within 30 s); neither blames the token.
    for _ in 0..2 {
        let res = app
            .mcp("ext")
            .bearer(&token)
            .send(json!({"jsonrpc":"2.0","id":7,"method":"ping"}))
            .await;
        assert_eq!(res.status, 503);
        assert!(res.headers.get("www-authenticate").is_none());
        assert_eq!(res.headers["retry-after"], "30");
        let body = res.json();
        assert_eq!(body["id"], 7, "{body}");
        assert_eq!(body["error"]["code"], -32002, "{body}");
    }
}

#[tokio::test]
async fn upstream_challenges_never_reach_clients_and_encoded_bodies_are_refused() {
    let app = TestApp::spawn().await;
    let up = FakeUpstream::start().await;
    app.new_server("weather", &up.url).create().await;
    let token = managed_token(&app, "weather", "mcp:execute", json!({}));
    let res = app
        .mcp("weather")
        .bearer(&token)
        .send(json!({"jsonrpc":"2.0","id":1,"method":"unauthorized"}))
        .await;
    assert_eq!(
        res.status, 502,
        "the token was good here: the upstream is misconfigured"
    );
    assert!(res.headers.get("www-authenticate").is_none());
    let res = app
        .mcp("weather")
        .bearer(&token)
        .send(json!({"jsonrpc":"2.0","id":1,"method":"forbidden"}))
        .await;
    assert_eq!(res.status, 403);
    assert!(res.headers.get("www-authenticate").is_none());

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
    app.new_server("weather", &up.url).create().await;
    let token = managed_token(&app, "weather", "mcp:read", json!({}));
    let ping = json!({"jsonrpc":"2.0","id":1,"method":"tools/list"});
    assert_eq!(
        app.mcp("weather")
            .bearer(&token)
            .send(ping.clone())
            .await
            .status,
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
        app.mcp("weather").bearer(&token).send(ping).await.status,
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
    app.new_server("weather", &up.url).create().await;
    let doc = json(
        app.get("/.well-known/oauth-protected-resource/mcp/weather")
            .await,
    )
    .await;
    assert_eq!(doc["authorization_servers"], json!([issuer.issuer]));
}
