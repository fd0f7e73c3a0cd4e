//! PKCE, codes, redirect URIs, resources, and authorization errors.

use super::*;

#[tokio::test]
async fn pkce_missing_or_plain_is_invalid_request() {
    let w = world().await;
    let client_id = w.public_client().await;

    let req = w
        .request(&client_id)
        .without("code_challenge")
        .without("code_challenge_method");
    let out = authorize(&w.browser(), &req).await;
    out.assert_redirect_error("invalid_request", &req, w.issuer());

    let verifier = random_string(48);
    let req = w
        .request(&client_id)
        .set("code_challenge", &verifier)
        .set("code_challenge_method", "plain");
    let out = authorize(&w.browser(), &req).await;
    out.assert_redirect_error("invalid_request", &req, w.issuer());
}

#[tokio::test]
async fn wrong_verifier_is_invalid_grant_and_burns_the_code() {
    let w = world().await;
    let client_id = w.public_client().await;
    let req = w.request(&client_id);
    let code = authorize(&w.browser(), &req).await.code();
    let wrong = random_string(48);
    exchange_with(&w.app, &public(&client_id), REDIRECT, &code, &wrong)
        .await
        .assert_error(400, "invalid_grant");
    exchange(&w.app, &public(&client_id), &req, &code)
        .await
        .assert_error(400, "invalid_grant");
}

#[tokio::test]
async fn missing_verifier_or_other_redirect_uri_is_refused() {
    let w = world().await;
    let client_id = w.public_client().await;

    let req = w.request(&client_id);
    let code = authorize(&w.browser(), &req).await.code();
    let r = token(
        &w.app,
        &public(&client_id),
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
        ],
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(
        ["invalid_request", "invalid_grant"].contains(&r.error()),
        "{}",
        r.text
    );

    let req = w.request(&client_id);
    let code = authorize(&w.browser(), &req).await.code();
    exchange_with(
        &w.app,
        &public(&client_id),
        "http://127.0.0.1:43210/other",
        &code,
        &req.verifier,
    )
    .await
    .assert_error(400, "invalid_grant");
}

#[tokio::test]
async fn code_replay_revokes_what_the_code_issued() {
    let w = world().await;
    let client_id = w.public_client().await;
    let req = w.request(&client_id).scope("mcp:read offline_access");
    let code = authorize(&w.browser(), &req).await.code();
    let first = exchange(&w.app, &public(&client_id), &req, &code).await;
    first.assert_ok();
    let access = first.access_token();
    assert_eq!(tools_list(&w.resource, &access).await.0, 200);

    exchange(&w.app, &public(&client_id), &req, &code)
        .await
        .assert_error(400, "invalid_grant");
    assert_eq!(
        tools_list(&w.resource, &access).await.0,
        401,
        "a replayed code revokes the access token it issued"
    );
    refresh(&w.app, &public(&client_id), &first.refresh_token())
        .await
        .assert_error(400, "invalid_grant");
}

#[tokio::test]
async fn a_code_belongs_to_its_client() {
    let w = world().await;
    let a = w.public_client_named("A").await;
    let b = w.public_client_named("B").await;
    let req = w.request(&a);
    let code = authorize(&w.browser(), &req).await.code();
    exchange(&w.app, &public(&b), &req, &code)
        .await
        .assert_error(400, "invalid_grant");
}

#[tokio::test]
async fn redirect_uri_tricks_get_an_error_page() {
    let w = world().await;
    let client_id = w.public_client().await;
    for bad in [
        "http://127.0.0.1:43210/callback?x=1",
        "http://127.0.0.1:43210/callback/",
        "http://evil@127.0.0.1:43210/callback",
        "http://evil@127.0.0.1/callback",
        "http://localhost.evil.com/callback",
        "http://127.0.0.1.evil.com/callback",
        "http://127.0.0.1:43210/other",
        "http://127.0.0.1:43210/Callback",
        "http://127.0.0.1:43210/callback#x",
        "https://127.0.0.1:43210/callback",
        "http://127.0.0.1:43210/callback/../callback",
        "http://127.0.0.1:43210/callback?\"><script>alert(1)</script>",
        "javascript:alert(1)",
        "not a url",
    ] {
        let req = w.request(&client_id).set("redirect_uri", bad);
        let out = authorize(&w.browser(), &req).await;
        assert!(
            out.redirect.is_none() && out.code.is_none(),
            "{bad}: {}",
            out.describe()
        );
        out.assert_error_page(400);
        assert!(out.last().is_html(), "{bad}: an HTML page");
        assert!(
            !out.last().body.contains("<script>alert(1)</script>"),
            "{bad}: reflected unescaped"
        );
    }
    // Missing redirect_uri with two registered: which one? An error page.
    let c = w
        .register(json!({ "name": "Two", "redirectUris": [REDIRECT, "https://app.example/cb"] }))
        .await;
    let two = c["clientId"].as_str().expect("clientId");
    let out = authorize(&w.browser(), &w.request(two).without("redirect_uri")).await;
    out.assert_error_page(400);
}

#[tokio::test]
async fn a_redirect_uri_left_out_of_the_request_may_be_left_out_of_the_exchange() {
    let w = world().await;
    let client_id = w.public_client().await;
    // A code for `req`, exchanged with `redirect_uri` (or without one).
    let exchange_as = |req: AuthRequest, redirect_uri: Option<&'static str>| {
        let (w, client_id) = (&w, &client_id);
        async move {
            let code = authorize(&w.browser(), &req).await.code();
            let mut form = vec![
                ("grant_type", "authorization_code"),
                ("code", code.as_str()),
                ("code_verifier", req.verifier.as_str()),
            ];
            form.extend(redirect_uri.map(|r| ("redirect_uri", r)));
            token(&w.app, &public(client_id), &form).await
        }
    };
    // The client's only redirect URI is used; the token request need not repeat it
    // (RFC 6749 §4.1.3: required only if it was in the authorization request). Repeating the
    // registered one is fine too; another is not.
    let omitted = || w.request(&client_id).without("redirect_uri");
    exchange_as(omitted(), None).await.assert_ok();
    exchange_as(omitted(), Some(REDIRECT)).await.assert_ok();
    exchange_as(omitted(), Some("https://other.example/cb"))
        .await
        .assert_error(400, "invalid_grant");
    // Named in the request: it must be repeated, exactly.
    exchange_as(w.request(&client_id), None)
        .await
        .assert_error(400, "invalid_grant");
}

#[tokio::test]
async fn loopback_redirect_uris_match_on_any_port() {
    let w = world().await;
    for (registered, used) in [
        (
            "http://127.0.0.1/callback",
            "http://127.0.0.1:54321/callback",
        ),
        (
            "http://127.0.0.1:8080/callback",
            "http://127.0.0.1:54322/callback",
        ),
        ("http://[::1]/callback", "http://[::1]:54323/callback"),
    ] {
        let c = w
            .register(json!({ "name": "Loopback", "redirectUris": [registered] }))
            .await;
        let client_id = c["clientId"].as_str().expect("clientId");
        let req = AuthRequest::new(client_id, used, &w.resource);
        let out = authorize(&w.browser(), &req).await;
        let code = out.code();
        let loc = out.redirect.as_ref().expect("redirect").to_string();
        assert!(
            loc.starts_with(&format!("{used}?")),
            "{registered} used as {used}: back to the port used: {loc}"
        );
        exchange(&w.app, &public(client_id), &req, &code)
            .await
            .assert_ok();
    }
}

#[tokio::test]
async fn unknown_or_missing_client_gets_an_error_page() {
    let w = world().await;
    let req = w.request("client_doesnotexist");
    let out = authorize(&w.browser(), &req).await;
    out.assert_error_page(400);
    let out = authorize(&w.browser(), &w.request("client_x").without("client_id")).await;
    out.assert_error_page(400);
}

#[tokio::test]
async fn resource_must_be_a_server_the_client_may_use() {
    let w = world().await;
    let client_id = w.public_client().await;

    let req = w.request(&client_id).without("resource");
    authorize(&w.browser(), &req)
        .await
        .assert_redirect_error("invalid_target", &req, w.issuer());

    for bad in [
        format!("{}/mcp/nope", w.issuer()),
        "https://evil.example/mcp".to_owned(),
        format!("{}/mcp/{}#x", w.issuer(), w.slug),
        format!("{}/mcp/{}?x=1", w.issuer(), w.slug),
        // The bare origin names no one server at the root issuer.
        w.issuer().to_owned(),
        "not a url".to_owned(),
    ] {
        let req = w.request(&client_id).set("resource", &bad);
        let out = authorize(&w.browser(), &req).await;
        assert!(out.code.is_none(), "{bad}: {}", out.describe());
        out.assert_redirect_error("invalid_target", &req, w.issuer());
    }

    // A client registered for this server may not be used for another one.
    let other = w.add_server("other").await;
    let req = w
        .request(&client_id)
        .set("resource", other["url"].as_str().expect("url"));
    let out = authorize(&w.browser(), &req).await;
    assert!(
        out.code.is_none() && (out.error.is_some() || out.status() >= 400),
        "a pre-registered client is bound to its server; {}",
        out.describe()
    );
}

#[tokio::test]
async fn other_authorization_errors_redirect_with_state_and_iss() {
    let w = world().await;
    let client_id = w.public_client().await;

    let req = w.request(&client_id).set("response_type", "token");
    authorize(&w.browser(), &req).await.assert_redirect_error(
        "unsupported_response_type",
        &req,
        w.issuer(),
    );

    let req = w.request(&client_id).scope("mcp:read admin:everything");
    authorize(&w.browser(), &req)
        .await
        .assert_redirect_error("invalid_scope", &req, w.issuer());

    // Beyond the client's registered scopes (mcp:read only by default).
    let c = w
        .register(json!({ "name": "Reader", "redirectUris": [REDIRECT] }))
        .await;
    let reader = c["clientId"].as_str().expect("clientId");
    let req = w.request(reader).scope("mcp:execute");
    authorize(&w.browser(), &req)
        .await
        .assert_redirect_error("invalid_scope", &req, w.issuer());
}
