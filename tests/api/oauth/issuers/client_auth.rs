//! `private_key_jwt`, native redirect URIs, issuers under host routing.

use super::*;

#[tokio::test]
async fn private_key_jwt_with_each_algorithm() {
    use jsonwebtoken::Algorithm::*;
    for alg in [RS256, PS256, ES256, EdDSA] {
        let key = ClientKey::generate(alg, &format!("k-{alg:?}"));
        let (w, client_id) = jwt_client(&key, false).await;
        let req = w.request(&client_id);
        let code = authorize(&w.browser(), &req).await.code();
        let jwt = key.assertion(&client_id, &w.app.url("/oauth/token"), |_| {});
        let reply = exchange(
            &w.app,
            &ClientAuth::Assertion(client_id.clone(), jwt),
            &req,
            &code,
        )
        .await;
        assert_eq!(reply.status, 200, "{alg:?}: {}", reply.text);
        // Without its assertion the client is refused.
        let code = authorize(&w.browser(), &req).await.code();
        exchange(&w.app, &public(&client_id), &req, &code)
            .await
            .assert_error(401, "invalid_client");
    }
}

#[tokio::test]
async fn bad_client_assertions_are_invalid_client_never_500() {
    let key = ClientKey::generate(jsonwebtoken::Algorithm::ES256, "good");
    let (w, client_id) = jwt_client(&key, false).await;
    let aud = w.app.url("/oauth/token");
    let other = ClientKey::generate(jsonwebtoken::Algorithm::ES256, "good");
    let now = ezforge::domain::now();
    let hs256 = {
        let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        let claims =
            json!({"iss": client_id, "sub": client_id, "aud": aud, "exp": now + 60, "jti": "h"});
        jsonwebtoken::encode(
            &header,
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(b"secret"),
        )
        .expect("hs")
    };
    let none = {
        use base64::Engine;
        let b = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        format!(
            "{}.{}.",
            b(json!({"alg": "none", "typ": "JWT"})),
            b(json!({"iss": client_id, "sub": client_id, "aud": aud, "exp": now + 60, "jti": "n"}))
        )
    };
    let replayed = key.assertion(&client_id, &aud, |_| {});
    let cases: Vec<(&str, String)> = vec![
        ("another key", other.assertion(&client_id, &aud, |_| {})),
        (
            "expired",
            key.assertion(&client_id, &aud, |c| c["exp"] = json!(now - 600)),
        ),
        (
            "too long-lived",
            key.assertion(&client_id, &aud, |c| c["exp"] = json!(now + 86_400)),
        ),
        (
            "another audience",
            key.assertion(&client_id, "https://elsewhere.example/token", |_| {}),
        ),
        (
            "iss is not sub",
            key.assertion(&client_id, &aud, |c| c["sub"] = json!("someone")),
        ),
        (
            "no jti",
            key.assertion(&client_id, &aud, |c| {
                c.as_object_mut().expect("object").remove("jti");
            }),
        ),
        ("alg none", none),
        ("HS256", hs256),
        ("garbage", "a.b.c".into()),
        ("huge", "x".repeat(20_000)),
    ];
    for (what, jwt) in cases {
        let r = token(
            &w.app,
            &ClientAuth::Assertion(client_id.clone(), jwt),
            &[
                ("grant_type", "authorization_code"),
                ("code", "x"),
                ("code_verifier", "y"),
            ],
        )
        .await;
        assert_eq!(
            (r.status, r.error()),
            (401, "invalid_client"),
            "{what}: {}",
            r.text
        );
    }
    // A good one works once; its replay is refused, also after a restart.
    let form = [
        ("grant_type", "authorization_code"),
        ("code", "x"),
        ("code_verifier", "y"),
    ];
    let first = token(
        &w.app,
        &ClientAuth::Assertion(client_id.clone(), replayed.clone()),
        &form,
    )
    .await;
    first.assert_error(400, "invalid_grant");
    let again = token(
        &w.app,
        &ClientAuth::Assertion(client_id.clone(), replayed.clone()),
        &form,
    )
    .await;
    again.assert_error(401, "invalid_client");
    let data_dir = w.app.data_dir.clone();
    let World { mut app, .. } = w;
    let tmp = app.take_tempdir();
    app.stop().await;
    let app = crate::helpers::TestApp::builder_in(&data_dir).spawn().await;
    let after = token(
        &app,
        &ClientAuth::Assertion(client_id.clone(), replayed),
        &form,
    )
    .await;
    after.assert_error(401, "invalid_client");
    // Another type, or half of the pair: refused too.
    let r = post_endpoint(
        &app,
        "/oauth/token",
        &ClientAuth::None,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", "x"),
            ("client_assertion", "a.b.c"),
        ],
    )
    .await;
    r.assert_error(400, "invalid_request");
    let r = post_endpoint(
        &app,
        "/oauth/token",
        &ClientAuth::None,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", "x"),
            ("client_assertion_type", "urn:example:other"),
            ("client_assertion", "a.b.c"),
        ],
    )
    .await;
    r.assert_error(401, "invalid_client");
    drop(tmp);
}

#[tokio::test]
async fn a_jwks_uri_on_a_private_address_is_never_fetched() {
    let docs = DocServer::start().await;
    let key = ClientKey::generate(jsonwebtoken::Algorithm::RS256, "k");
    let jwks_uri = docs.set("/jwks.json", key.jwks());
    // The SSRF guard is on (the default): loopback is out of reach.
    let w = world().await;
    let reg = register_json(
        &w,
        &json!({
            "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "private_key_jwt",
            "jwks_uri": jwks_uri,
        }),
    )
    .await;
    assert_eq!(reg.status, 201, "{}", reg.text);
    let client_id = reg.str("client_id");
    let jwt = key.assertion(&client_id, &w.app.url("/oauth/token"), |_| {});
    let r = token(
        &w.app,
        &ClientAuth::Assertion(client_id, jwt),
        &[
            ("grant_type", "authorization_code"),
            ("code", "x"),
            ("code_verifier", "y"),
        ],
    )
    .await;
    r.assert_error(401, "invalid_client");
    assert_eq!(docs.fetches_of("/jwks.json"), 0, "never fetched");
    // Registration refuses what cannot be a key source.
    for (body, why) in [
        (
            json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "private_key_jwt"}),
            "no keys",
        ),
        (
            json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "private_key_jwt", "jwks_uri": "http://x.example/j"}),
            "http",
        ),
        (
            json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "private_key_jwt", "jwks": {"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}}),
            "a secret key",
        ),
        (
            json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none", "jwks": key.jwks()}),
            "keys for a public client",
        ),
    ] {
        let r = register_json(&w, &body).await;
        assert_eq!(
            (r.status, r.error()),
            (400, "invalid_client_metadata"),
            "{why}: {}",
            r.text
        );
    }
}

#[tokio::test]
async fn native_schemes_register_and_dangerous_ones_do_not() {
    let w = world().await;
    for (uris, app_type) in [
        (
            json!(["cursor://anysphere.cursor-mcp/oauth/callback"]),
            "native",
        ),
        (json!(["myapp:/callback"]), "native"),
        (json!(["http://localhost:8787/callback"]), "native"),
        (json!(["https://app.example/cb"]), "web"),
    ] {
        let r = register_json(&w, &json!({ "redirect_uris": uris })).await;
        assert_eq!(r.status, 201, "{uris}: {}", r.text);
        assert_eq!(r.body["application_type"], app_type, "{uris}");
    }
    for bad in [
        json!({ "redirect_uris": ["javascript:alert(1)"] }),
        json!({ "redirect_uris": ["data:text/html,hi"] }),
        json!({ "redirect_uris": ["file:///etc/passwd"] }),
        json!({ "redirect_uris": ["vbscript:x"] }),
        json!({ "redirect_uris": ["blob:https://a.example/x"] }),
        json!({ "redirect_uris": ["about:blank"] }),
        json!({ "redirect_uris": ["http://evil.example/cb"] }),
        json!({ "redirect_uris": ["cursor://anysphere.cursor-mcp/oauth/callback"], "application_type": "web" }),
    ] {
        let r = register_json(&w, &bad).await;
        assert_eq!(
            (r.status, r.error()),
            (400, "invalid_redirect_uri"),
            "{bad}: {}",
            r.text
        );
    }
}

#[tokio::test]
async fn under_host_routing_a_servers_issuer_stays_on_the_public_url() {
    let w = world_with(|c| {
        c.gateway.routing = ezforge::config::Routing::Host;
        c.gateway.server_domain = Some("mcp.example.test".into());
    })
    .await;
    assert_eq!(w.resource, "https://weather.mcp.example.test");
    let prm: Value = bare_client()
        .get(w.app.url("/.well-known/oauth-protected-resource"))
        .header("host", "weather.mcp.example.test")
        .send()
        .await
        .expect("prm")
        .json()
        .await
        .expect("json");
    let issuer = prm["authorization_servers"][0]
        .as_str()
        .expect("issuer")
        .to_owned();
    assert_eq!(issuer, format!("{}/oauth/mcp/weather", w.issuer()));
    let meta: Value = bare_client()
        .get(
            w.app
                .url("/.well-known/oauth-authorization-server/oauth/mcp/weather"),
        )
        .send()
        .await
        .expect("meta")
        .json()
        .await
        .expect("json");
    assert_eq!(meta["issuer"], issuer);
    let d = Discovered {
        challenge_scope: "mcp:read".into(),
        prm,
        issuer,
        meta,
    };
    let client_id = w.public_client().await;
    for resource in [None, Some("https://WEATHER.mcp.example.test:443/")] {
        let req = match resource {
            Some(r) => AuthRequest::new(&client_id, REDIRECT, r),
            None => AuthRequest::new(&client_id, REDIRECT, "").without("resource"),
        };
        let (_, reply) = flow_at(&w, &d, req).await;
        reply.assert_ok();
        assert_eq!(
            jwt_parts(&reply.access_token()).1["aud"],
            "https://weather.mcp.example.test"
        );
        let res = bare_client()
            .post(w.app.url("/mcp"))
            .header("host", "weather.mcp.example.test")
            .bearer_auth(reply.access_token())
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}).to_string())
            .send()
            .await
            .expect("front door");
        assert_eq!(res.status(), 200, "{resource:?}");
    }
}
