//! Clients: dynamic registration and its management, confidential clients, client credentials,
//! revocation, introspection.

use super::*;

#[tokio::test]
async fn dynamic_registration_flow_and_rfc7592_management() {
    let w = world().await;
    let reg = post_json(
        &w,
        "/oauth/register",
        None,
        json!({ "redirect_uris": [REDIRECT], "client_name": "Dyn App" }),
    )
    .await;
    assert_eq!(reg.status, 201, "{}", reg.text);
    let b = &reg.body;
    let client_id = b["client_id"].as_str().expect("client_id").to_owned();
    assert!(b["client_id_issued_at"].is_i64(), "{b}");
    assert!(b.get("client_secret").is_none(), "public: no secret: {b}");
    assert_eq!(b["redirect_uris"], json!([REDIRECT]));
    assert_eq!(b["client_name"], "Dyn App");
    assert_eq!(b["token_endpoint_auth_method"], "none");
    assert!(b["grant_types"].is_array(), "{b}");
    assert!(b["response_types"].is_array(), "{b}");
    assert!(b["application_type"].is_string(), "{b}");
    let rat = b["registration_access_token"]
        .as_str()
        .expect("registration_access_token")
        .to_owned();
    let rcu = b["registration_client_uri"]
        .as_str()
        .expect("registration_client_uri")
        .to_owned();
    assert!(
        rcu.starts_with(&format!("{}/", w.issuer())),
        "on the issuer: {rcu}"
    );

    // The dynamic client works in the flow.
    let req = w.request(&client_id);
    let out = authorize(&w.browser(), &req).await;
    assert!(
        out.last().body.contains("Dyn App") || out.pages.iter().any(|p| p.body.contains("Dyn App")),
        "the consent page names the client"
    );
    let code = out.code();
    let reply = exchange(&w.app, &public(&client_id), &req, &code).await;
    reply.assert_ok();
    assert_eq!(tools_list(&w.resource, &reply.access_token()).await.0, 200);

    // RFC 7592: read.
    let read = send(&w, "GET", &rcu, Some(&rat), None).await;
    assert_eq!(read.status, 200, "{}", read.text);
    assert_eq!(read.body["client_id"], client_id);
    assert_eq!(read.body["client_name"], "Dyn App");
    let wrong = send(&w, "GET", &rcu, Some("wrong-token"), None).await;
    assert_eq!(wrong.status, 401, "{}", wrong.text);
    let none = send(&w, "GET", &rcu, None, None).await;
    assert_eq!(none.status, 401, "{}", none.text);

    // Update.
    let upd = send(
        &w,
        "PUT",
        &rcu,
        Some(&rat),
        Some(json!({
            "client_id": client_id,
            "redirect_uris": [REDIRECT],
            "client_name": "Dyn App 2",
        })),
    )
    .await;
    assert_eq!(upd.status, 200, "{}", upd.text);
    assert_eq!(upd.body["client_name"], "Dyn App 2", "{}", upd.text);
    let wrong = send(
        &w,
        "PUT",
        &rcu,
        Some("wrong-token"),
        Some(json!({ "client_id": client_id, "redirect_uris": [REDIRECT], "client_name": "Evil" })),
    )
    .await;
    assert_eq!(wrong.status, 401, "{}", wrong.text);
    let read = send(&w, "GET", &rcu, Some(&rat), None).await;
    assert_eq!(read.body["client_name"], "Dyn App 2", "{}", read.text);

    // Delete: wrong token first, then the right one.
    let wrong = send(&w, "DELETE", &rcu, Some("wrong-token"), None).await;
    assert_eq!(wrong.status, 401, "{}", wrong.text);
    let del = send(&w, "DELETE", &rcu, Some(&rat), None).await;
    assert_eq!(del.status, 204, "{}", del.text);
    let gone = send(&w, "GET", &rcu, Some(&rat), None).await;
    assert_eq!(
        gone.status, 401,
        "a deleted client's token is invalid: {}",
        gone.text
    );
    let out = authorize(&w.browser(), &w.request(&client_id)).await;
    out.assert_error_page(400);

    // An id that is not UTF-8 once decoded (taken lossily, so simply not this client's), and an
    // oversized document: RFC 6749 errors.
    let odd = send(
        &w,
        "GET",
        &format!("{}/oauth/register/%FF%FE", w.issuer()),
        Some(&rat),
        None,
    )
    .await;
    assert_eq!(odd.status, 401, "{}", odd.text);
    assert_eq!(odd.body["error"], "invalid_token", "{}", odd.text);
    let big = post_json(
        &w,
        "/oauth/register",
        None,
        json!({ "redirect_uris": [REDIRECT], "client_name": "x".repeat(70 * 1024) }),
    )
    .await;
    assert_eq!(big.status, 413, "{}", big.text);
    assert_eq!(big.body["error"], "invalid_request", "{}", big.text);
}

#[tokio::test]
async fn dynamic_registration_validates_metadata() {
    let w = world().await;
    for (body, errors) in [
        (
            json!({ "redirect_uris": ["http://evil.example/cb"] }),
            &["invalid_redirect_uri"][..],
        ),
        (
            json!({ "redirect_uris": ["https://ok.example/cb#frag"] }),
            &["invalid_redirect_uri"][..],
        ),
        (
            json!({ "redirect_uris": [] }),
            &["invalid_redirect_uri", "invalid_client_metadata"][..],
        ),
        (
            json!({ "client_name": "no uris" }),
            &["invalid_redirect_uri", "invalid_client_metadata"][..],
        ),
        (
            json!({ "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "private_key_jwt" }),
            &["invalid_client_metadata"][..],
        ),
        (
            json!({ "redirect_uris": [REDIRECT], "grant_types": ["password"] }),
            &["invalid_client_metadata"][..],
        ),
        // A machine identity for any server, with no user to consent: never by registration.
        (
            json!({ "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "client_secret_basic",
                    "grant_types": ["authorization_code", "client_credentials"] }),
            &["invalid_client_metadata"][..],
        ),
    ] {
        let r = post_json(&w, "/oauth/register", None, body.clone()).await;
        assert_eq!(r.status, 400, "{body} -> {}", r.text);
        assert!(
            errors.contains(&r.error()),
            "{body} -> {} (want one of {errors:?})",
            r.text
        );
        assert!(r.body["error_description"].is_string(), "{}", r.text);
    }
    // A confidential dynamic client gets a secret that does not expire.
    let r = post_json(
        &w,
        "/oauth/register",
        None,
        json!({ "redirect_uris": ["https://app.example/cb"], "token_endpoint_auth_method": "client_secret_basic" }),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert!(
        r.body["client_secret"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
    );
    assert_eq!(r.body["client_secret_expires_at"], 0);
    assert_eq!(r.body["token_endpoint_auth_method"], "client_secret_basic");
}

#[tokio::test]
async fn registration_can_require_an_initial_access_token() {
    let w = world_with(|c| {
        c.auth.registration.mode = ezforge::config::RegistrationMode::Token;
        c.auth.registration.initial_access_token = Some(ezforge::domain::Secret::new(
            "initial-access-token-0123456789",
        ));
    })
    .await;
    let body = json!({ "redirect_uris": [REDIRECT], "client_name": "Gated" });
    let r = post_json(&w, "/oauth/register", None, body.clone()).await;
    assert_eq!(r.status, 401, "no token: {}", r.text);
    let r = post_json(&w, "/oauth/register", Some("wrong"), body.clone()).await;
    assert_eq!(r.status, 401, "wrong token: {}", r.text);
    let r = post_json(
        &w,
        "/oauth/register",
        Some("initial-access-token-0123456789"),
        body,
    )
    .await;
    assert_eq!(r.status, 201, "right token: {}", r.text);
}

#[tokio::test]
async fn confidential_client_authenticates_with_basic_or_post() {
    let w = world().await;
    let (id, secret) = w.confidential_client().await;

    for auth in [
        ClientAuth::Basic(id.clone(), secret.clone()),
        ClientAuth::Post(id.clone(), secret.clone()),
    ] {
        let req = w.request(&id);
        let code = authorize(&w.browser(), &req).await.code();
        let reply = exchange(&w.app, &auth, &req, &code).await;
        reply.assert_ok();
        assert_eq!(tools_list(&w.resource, &reply.access_token()).await.0, 200);
    }

    for auth in [
        ClientAuth::Basic(id.clone(), "wrong-secret".into()),
        ClientAuth::Post(id.clone(), "wrong-secret".into()),
        ClientAuth::Public(id.clone()),
    ] {
        let req = w.request(&id);
        let code = authorize(&w.browser(), &req).await.code();
        let reply = exchange(&w.app, &auth, &req, &code).await;
        reply.assert_error(401, "invalid_client");
    }
}

#[tokio::test]
async fn client_credentials_for_a_confidential_client() {
    let w = world().await;
    let (id, secret) = w.confidential_client().await;
    let auth = ClientAuth::Basic(id.clone(), secret.clone());
    let reply = token(
        &w.app,
        &auth,
        &[
            ("grant_type", "client_credentials"),
            ("resource", &w.resource),
            ("scope", "mcp:read"),
        ],
    )
    .await;
    reply.assert_ok();
    assert!(reply.body.get("refresh_token").is_none(), "{}", reply.text);
    let (_, claims) = jwt_parts(&reply.access_token());
    assert_eq!(claims["sub"], id, "sub is the client: {claims}");
    assert_eq!(claims["client_id"], id);
    assert!(
        claims["aud"] == json!(w.resource) || claims["aud"] == json!([w.resource]),
        "{claims}"
    );
    assert_eq!(tools_list(&w.resource, &reply.access_token()).await.0, 200);

    // client_secret_post works too.
    token(
        &w.app,
        &ClientAuth::Post(id.clone(), secret.clone()),
        &[
            ("grant_type", "client_credentials"),
            ("resource", &w.resource),
        ],
    )
    .await
    .assert_ok();

    // No resource.
    let r = token(&w.app, &auth, &[("grant_type", "client_credentials")]).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(
        ["invalid_target", "invalid_request"].contains(&r.error()),
        "{}",
        r.text
    );
    // A resource that is not a server.
    let r = token(
        &w.app,
        &auth,
        &[
            ("grant_type", "client_credentials"),
            ("resource", &format!("{}/mcp/nope", w.issuer())),
        ],
    )
    .await;
    r.assert_error(400, "invalid_target");

    // A public client may not.
    let public_id = w.public_client().await;
    let r = token(
        &w.app,
        &public(&public_id),
        &[
            ("grant_type", "client_credentials"),
            ("resource", &w.resource),
        ],
    )
    .await;
    assert!(
        (r.status == 400 && r.error() == "unauthorized_client")
            || (r.status == 401 && r.error() == "invalid_client"),
        "{} {}",
        r.status,
        r.text
    );

    // The client is deleted: its tokens (which belong to no grant) are refused at once.
    let (status, body) = api(
        &w.app,
        "DELETE",
        &format!("/v1/servers/{}/clients/{id}", w.server_id),
        Some(&w.admin),
        None,
    )
    .await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(tools_list(&w.resource, &reply.access_token()).await.0, 401);
}

#[tokio::test]
async fn revoking_the_refresh_token_ends_the_grant() {
    let w = world().await;
    let client_id = w.public_client().await;
    let reply = w.tokens(&client_id, "mcp:read offline_access").await;
    let (access, refresh_token) = (reply.access_token(), reply.refresh_token());
    assert_eq!(tools_list(&w.resource, &access).await.0, 200);

    let r = post_endpoint(
        &w.app,
        "/oauth/revoke",
        &public(&client_id),
        &[
            ("token", &refresh_token),
            ("token_type_hint", "refresh_token"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    refresh(&w.app, &public(&client_id), &refresh_token)
        .await
        .assert_error(400, "invalid_grant");
    assert_eq!(
        tools_list(&w.resource, &access).await.0,
        401,
        "the access token of a revoked grant"
    );

    // Unknown tokens: still 200.
    let r = revoke(&w.app, &public(&client_id), "never-issued").await;
    assert_eq!(r.status, 200, "{}", r.text);
}

#[tokio::test]
async fn introspection_for_confidential_clients() {
    let w = world().await;
    let (id, secret) = w.confidential_client().await;
    let auth = ClientAuth::Basic(id.clone(), secret.clone());
    let req = w.request(&id).scope("mcp:read offline_access");
    let code = authorize(&w.browser(), &req).await.code();
    let reply = exchange(&w.app, &auth, &req, &code).await;
    reply.assert_ok();
    let access = reply.access_token();

    let r = introspect(&w.app, &auth, &access).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let b = &r.body;
    assert_eq!(b["active"], true, "{b}");
    assert_eq!(b["client_id"], id, "{b}");
    assert_eq!(b["sub"], w.admin_id, "{b}");
    assert_eq!(b["iss"], w.issuer(), "{b}");
    assert!(
        b["aud"] == json!(w.resource) || b["aud"] == json!([w.resource]),
        "{b}"
    );
    assert_eq!(
        scope_set(b["scope"].as_str().unwrap_or("")),
        scope_set("mcp:read offline_access"),
        "{b}"
    );
    assert!(b["exp"].is_i64() && b["iat"].is_i64(), "{b}");
    assert!(b["token_type"].is_string(), "{b}");

    let r = introspect(
        &w.app,
        &ClientAuth::Post(id.clone(), secret.clone()),
        "garbage",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.body,
        json!({ "active": false }),
        "nothing else when inactive"
    );

    // Unauthenticated, wrong secret, or a public client: 401.
    for bad in [
        ClientAuth::None,
        ClientAuth::Basic(id.clone(), "wrong".into()),
        ClientAuth::Public(w.public_client().await),
    ] {
        let r = introspect(&w.app, &bad, &access).await;
        r.assert_error(401, "invalid_client");
    }

    // RFC 7662 2.1: another client registered for this server (a resource server) may look;
    // a dynamically registered one (anyone) learns nothing of tokens not issued to it.
    let (other, other_secret) = w.confidential_client().await;
    let peer = ClientAuth::Basic(other, other_secret);
    for token in [&access, &reply.refresh_token()] {
        let r = introspect(&w.app, &peer, token).await;
        assert_eq!(r.body["active"], true, "{}", r.text);
    }
    let reg = post_json(
        &w,
        "/oauth/register",
        None,
        json!({ "redirect_uris": ["https://app.example/cb"], "token_endpoint_auth_method": "client_secret_basic" }),
    )
    .await;
    assert_eq!(reg.status, 201, "{}", reg.text);
    let stranger = ClientAuth::Basic(
        reg.body["client_id"].as_str().expect("id").to_owned(),
        reg.body["client_secret"]
            .as_str()
            .expect("secret")
            .to_owned(),
    );
    for token in [&access, &reply.refresh_token()] {
        let r = introspect(&w.app, &stranger, token).await;
        assert_eq!(r.body, json!({ "active": false }), "{}", r.text);
    }

    // After revocation: inactive.
    let r = revoke(&w.app, &auth, &reply.refresh_token()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = introspect(&w.app, &auth, &access).await;
    assert_eq!(r.body["active"], false, "{}", r.text);
}
