//! The authorization server, happy paths: the whole flow over HTTP, tokens and their claims,
//! refresh, consent, clients (pre-registered, dynamic, confidential), revocation, introspection,
//! JWKS, metadata.

use serde_json::{Value, json};

use crate::helpers::{ADMIN_EMAIL, ADMIN_PASSWORD, add_member, invite};
use crate::oauth::browser::*;

fn public(id: &str) -> ClientAuth {
    ClientAuth::Public(id.to_owned())
}

#[tokio::test]
async fn whole_flow_over_http_reaches_the_upstream() {
    let w = world().await;
    let client_id = w.public_client_named("Weather Desktop").await;
    let browser = w.browser();
    let req = w.request(&client_id).scope("mcp:read");

    // 1. The login page.
    let login = browser.get(&req.url(w.issuer())).await;
    assert_eq!(login.status, 200, "{}", login.describe());
    assert!(login.is_html(), "{:?}", login.header("content-type"));
    let form = login
        .login_form()
        .unwrap_or_else(|| panic!("a login form; {}", login.describe()));
    assert_eq!(form.method, "post");
    assert!(form.action.is_some(), "the form names its action");
    assert!(form.has_input("email"), "{form:?}");
    let hidden = form.hidden();
    assert!(
        hidden.iter().any(|(k, v)| k == "csrf" && !v.is_empty()),
        "a hidden csrf input: {hidden:?}"
    );
    assert!(
        hidden.iter().any(|(k, v)| k == "request" && !v.is_empty()),
        "a hidden request input: {hidden:?}"
    );
    assert!(
        !login.header_all("set-cookie").is_empty(),
        "the login page sets a CSRF cookie"
    );
    assert!(
        login.action_url(&form).contains("/oauth/authorize"),
        "posts back to /oauth/authorize: {}",
        login.action_url(&form)
    );

    // 2. Post the form with its CSRF token: the consent page.
    let fields = form.fields(
        &[("email", ADMIN_EMAIL), ("password", ADMIN_PASSWORD)],
        None,
        false,
    );
    let mut consent = browser.post_form(&login.action_url(&form), &fields).await;
    for _ in 0..5 {
        match consent.location() {
            Some(next) if consent.is_redirect() && browser.on_server(&next) => {
                consent = browser.get(next.as_str()).await;
            }
            _ => break,
        }
    }
    assert_eq!(consent.status, 200, "{}", consent.describe());
    let cform = consent
        .consent_form()
        .unwrap_or_else(|| panic!("a consent form; {}", consent.describe()));
    assert!(cform.has_button("decision", "approve"), "{cform:?}");
    assert!(cform.has_button("decision", "deny"), "{cform:?}");
    assert!(
        consent.body.contains("Weather Desktop"),
        "names the client: {}",
        consent.describe()
    );
    assert!(
        consent.body.contains("127.0.0.1"),
        "shows the redirect URI's host"
    );
    assert!(consent.body.contains("weather"), "names the server");
    assert!(
        consent.body.contains(&w.resource),
        "shows the server's URI {}",
        w.resource
    );

    // 3. Approve: a 303 to the redirect URI with code, state, iss.
    let fields = cform.fields(&[], Some(("decision", "approve")), false);
    let done = browser
        .post_form(&consent.action_url(&cform), &fields)
        .await;
    assert_eq!(done.status, 303, "{}", done.describe());
    let loc = done.location().expect("Location");
    assert!(
        loc.as_str().starts_with(&format!("{REDIRECT}?")),
        "back to the redirect URI: {loc}"
    );
    let q: Vec<(String, String)> = loc
        .query_pairs()
        .map(|(k, v)| (k.into(), v.into()))
        .collect();
    let get = |n: &str| q.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let code = get("code").expect("code");
    assert_eq!(get("state").as_deref(), Some(req.state()));
    assert_eq!(get("iss").as_deref(), Some(w.issuer()));

    // 4. Exchange the code.
    let reply = exchange(&w.app, &public(&client_id), &req, &code).await;
    reply.assert_ok();
    assert_eq!(
        reply.header("cache-control"),
        Some("no-store"),
        "token answers are not cached"
    );
    assert!(
        reply.body["token_type"]
            .as_str()
            .is_some_and(|t| t.eq_ignore_ascii_case("bearer")),
        "{}",
        reply.text
    );
    assert_eq!(reply.body["expires_in"], 900, "{}", reply.text);
    assert_eq!(reply.body["scope"], "mcp:read", "{}", reply.text);
    assert!(
        reply.body["refresh_token"].is_string(),
        "a client that registered the refresh_token grant gets a refresh token without asking for offline_access: {}",
        reply.text
    );
    assert!(
        reply.body.get("id_token").is_none(),
        "no openid, no ID token"
    );

    // 5. The front door accepts it and proxies to the upstream.
    let (status, body) = tools_list(&w.resource, &reply.access_token()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["tools"][0]["name"], "get_weather");
    assert_eq!(w.up.requests(), 1);
}

#[tokio::test]
async fn access_token_is_a_jwt_for_the_server() {
    let w = world().await;
    let client_id = w.public_client().await;
    let reply = w.tokens(&client_id, "mcp:read mcp:write").await;
    let (header, claims) = jwt_parts(&reply.access_token());
    assert_eq!(header["typ"], "at+jwt", "{header}");
    assert_eq!(header["alg"], "ES256", "{header}");
    assert!(header["kid"].is_string(), "{header}");
    assert_eq!(claims["iss"], w.issuer(), "{claims}");
    assert!(
        claims["aud"] == json!(w.resource) || claims["aud"] == json!([w.resource]),
        "aud is the server's URI {}: {claims}",
        w.resource
    );
    assert_eq!(claims["sub"], w.admin_id, "{claims}");
    assert_eq!(claims["client_id"], client_id, "{claims}");
    assert_eq!(
        scope_set(claims["scope"].as_str().unwrap_or("")),
        scope_set("mcp:read mcp:write"),
        "{claims}"
    );
    let (iat, exp) = (
        claims["iat"].as_i64().expect("iat"),
        claims["exp"].as_i64().expect("exp"),
    );
    assert_eq!(exp - iat, 900, "15 minutes: {claims}");
    let now = ezforge::domain::now();
    assert!((iat - now).abs() < 60, "iat is now: {claims}");
    assert!(claims["jti"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(claims["gid"].as_str().is_some_and(|s| !s.is_empty()));
}

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_family() {
    // Strict rotation: any reuse revokes (the grace is `refresh_reuse_grace`'s own test).
    let w = world_with(|c| c.auth.refresh_reuse_grace = ezforge::config::Duration::secs(0)).await;
    let client_id = w.public_client().await;
    let first = w.tokens(&client_id, "mcp:read offline_access").await;
    let r1 = first.refresh_token();

    let second = refresh(&w.app, &public(&client_id), &r1).await;
    second.assert_ok();
    assert_eq!(second.header("cache-control"), Some("no-store"));
    let r2 = second.refresh_token();
    assert_ne!(r1, r2, "a new refresh token every time");
    let a2 = second.access_token();
    assert_ne!(a2, first.access_token());
    assert_eq!(tools_list(&w.resource, &a2).await.0, 200);

    // The rotated token used again: refused, and the whole family with it.
    refresh(&w.app, &public(&client_id), &r1)
        .await
        .assert_error(400, "invalid_grant");
    refresh(&w.app, &public(&client_id), &r2)
        .await
        .assert_error(400, "invalid_grant");
    assert_eq!(
        tools_list(&w.resource, &a2).await.0,
        401,
        "the grant is revoked: its access tokens stop working"
    );
}

#[tokio::test]
async fn no_refresh_token_for_a_client_without_the_grant_unless_offline_access() {
    let w = world().await;
    let reg = post_json(
        &w,
        "/oauth/register",
        None,
        json!({ "redirect_uris": [REDIRECT], "client_name": "Codes only", "grant_types": ["authorization_code"] }),
    )
    .await;
    assert_eq!(reg.status, 201, "{}", reg.text);
    let client_id = reg.str("client_id");
    let reply = w.tokens(&client_id, "mcp:read").await;
    assert!(reply.body.get("refresh_token").is_none(), "{}", reply.text);
    // Nor from a refresh-less grant with a made-up refresh token.
    refresh(&w.app, &public(&client_id), "not-a-refresh-token")
        .await
        .assert_error(400, "invalid_grant");
    // offline_access still guarantees one, and it can be used.
    let reply = w.tokens(&client_id, "mcp:read offline_access").await;
    refresh(&w.app, &public(&client_id), &reply.refresh_token())
        .await
        .assert_ok();
}

#[tokio::test]
async fn deny_redirects_with_access_denied() {
    let w = world().await;
    let client_id = w.public_client().await;
    let req = w.request(&client_id);
    let out = authorize_as(&w.browser(), &req, &Person::admin().deny()).await;
    assert!(out.saw_consent, "{}", out.describe());
    out.assert_redirect_error("access_denied", &req, w.issuer());
    assert_eq!(out.last().status, 303, "{}", out.describe());
}

#[tokio::test]
async fn trusted_client_skips_consent() {
    let w = world().await;
    let c = w
        .register(json!({
            "name": "First party",
            "redirectUris": [REDIRECT],
            "trusted": true,
        }))
        .await;
    let client_id = c["clientId"].as_str().expect("clientId");
    let req = w.request(client_id);
    let out = authorize(&w.browser(), &req).await;
    assert!(out.saw_login, "{}", out.describe());
    assert!(!out.saw_consent, "trusted: no consent; {}", out.describe());
    let code = out.code();
    exchange(&w.app, &public(client_id), &req, &code)
        .await
        .assert_ok();
}

#[tokio::test]
async fn remembered_consent_skips_consent_the_second_time() {
    let w = world().await;
    let client_id = w.public_client().await;
    let first = authorize(&w.browser(), &w.request(&client_id).scope("mcp:read")).await;
    assert!(first.saw_consent, "{}", first.describe());
    first.code();

    // A new browser (a new login), the same person, client and scopes: no consent page.
    let req = w.request(&client_id).scope("mcp:read");
    let second = authorize(&w.browser(), &req).await;
    assert!(
        !second.saw_consent,
        "the consent is remembered; {}",
        second.describe()
    );
    let code = second.code();
    exchange(&w.app, &public(&client_id), &req, &code)
        .await
        .assert_ok();

    // Wider scopes than remembered: asked again.
    let third = authorize(
        &w.browser(),
        &w.request(&client_id).scope("mcp:read mcp:write"),
    )
    .await;
    assert!(
        third.saw_consent,
        "new scopes need consent; {}",
        third.describe()
    );
}

#[tokio::test]
async fn signed_in_control_api_user_is_not_asked_to_log_in() {
    let w = world().await;
    let client_id = w.public_client().await;
    let browser = w.browser();
    let login = browser.api_login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert_eq!(login.status, 200, "{}", login.describe());
    assert!(
        login
            .header_all("set-cookie")
            .iter()
            .any(|c| c.starts_with("ezf_session=")),
        "the control API sets ezf_session"
    );
    let req = w.request(&client_id);
    let out = authorize(&browser, &req).await;
    assert!(!out.saw_login, "already signed in; {}", out.describe());
    assert!(out.saw_consent, "{}", out.describe());
    let code = out.code();
    exchange(&w.app, &public(&client_id), &req, &code)
        .await
        .assert_ok();
}

#[tokio::test]
async fn project_member_may_authorize_and_others_get_a_403_page() {
    let w = world().await;
    let client_id = w.public_client().await;

    let (_, pw) = w.user("outsider@example.com", "member").await;
    let req = w.request(&client_id);
    let out = authorize_as(
        &w.browser(),
        &req,
        &Person::new("outsider@example.com", &pw),
    )
    .await;
    assert!(out.saw_login, "{}", out.describe());
    assert!(
        out.redirect.is_none(),
        "no redirect to the client; {}",
        out.describe()
    );
    assert_eq!(out.status(), 403, "{}", out.describe());
    assert!(out.last().is_html(), "an HTML page");

    let (member_id, pw) = w.user("member@example.com", "member").await;
    // Invited, the user is not a member yet: still a 403 page.
    let invitation = invite(&w.app, &w.admin, &w.project, "member@example.com", "member").await;
    let req = w.request(&client_id);
    let out = authorize_as(&w.browser(), &req, &Person::new("member@example.com", &pw)).await;
    assert_eq!(out.status(), 403, "{}", out.describe());
    let session = session_token(&w.app, "member@example.com", &pw).await;
    let (status, body) = api(
        &w.app,
        "POST",
        "/v1/invitations/accept",
        Some(&session),
        Some(json!({ "token": invitation["inviteToken"] })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let req = w.request(&client_id);
    let out = authorize_as(&w.browser(), &req, &Person::new("member@example.com", &pw)).await;
    let code = out.code();
    let reply = exchange(&w.app, &public(&client_id), &req, &code).await;
    reply.assert_ok();
    let (_, claims) = jwt_parts(&reply.access_token());
    assert_eq!(claims["sub"], member_id);
    assert_eq!(tools_list(&w.resource, &reply.access_token()).await.0, 200);

    // The user is deleted, their grants with them: the token is refused at once.
    let (status, body) = api(
        &w.app,
        "DELETE",
        &format!("/v1/users/{member_id}"),
        Some(&w.admin),
        None,
    )
    .await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(tools_list(&w.resource, &reply.access_token()).await.0, 401);
}

#[tokio::test]
async fn a_member_removed_from_the_project_loses_their_grants_at_once() {
    let w = world().await;
    let client_id = w.public_client().await;
    let (member_id, pw) = w.user("leaver@example.com", "member").await;
    let members = format!("/v1/projects/{}/members", w.project);
    add_member(&w.app, &w.admin, &w.project, "leaver@example.com", "member").await;
    let req = w.request(&client_id).scope("mcp:read offline_access");
    let person = Person::new("leaver@example.com", &pw);
    let code = authorize_as(&w.browser(), &req, &person).await.code();
    let reply = exchange(&w.app, &public(&client_id), &req, &code).await;
    reply.assert_ok();
    assert_eq!(tools_list(&w.resource, &reply.access_token()).await.0, 200);

    let member = format!("{members}/{member_id}");
    let (status, body) = api(&w.app, "DELETE", &member, Some(&w.admin), None).await;
    assert_eq!(status, 204, "{body}");
    // Before, the refresh token kept working (and renewed itself) for as long as it was used.
    assert_eq!(tools_list(&w.resource, &reply.access_token()).await.0, 401);
    refresh(&w.app, &public(&client_id), &reply.refresh_token())
        .await
        .assert_error(400, "invalid_grant");
    let (status, grants) = api(&w.app, "GET", "/v1/grants", Some(&w.admin), None).await;
    assert_eq!(status, 200, "{grants}");
    assert!(
        grants["data"]
            .as_array()
            .expect("data")
            .iter()
            .all(|g| g["userId"] != json!(member_id)),
        "live grants are listed, theirs no longer: {grants}"
    );
}

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

#[tokio::test]
async fn jwks_publishes_the_key_of_issued_tokens() {
    let w = world().await;
    let client_id = w.public_client().await;
    let reply = w.tokens(&client_id, "mcp:read").await;
    let (header, _) = jwt_parts(&reply.access_token());
    for path in ["/oauth/jwks.json", "/api/v1/oauth/jwks.json"] {
        let r = send(&w, "GET", &w.app.url(path), None, None).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text);
        let keys = r.body["keys"].as_array().expect("keys");
        let key = keys
            .iter()
            .find(|k| k["kid"] == header["kid"])
            .unwrap_or_else(|| panic!("{path} has kid {}: {}", header["kid"], r.text));
        assert_eq!(key["kty"], "EC");
        assert_eq!(key["crv"], "P-256");
        for k in keys {
            assert!(k.get("d").is_none(), "no private parts: {k}");
        }
    }
}

#[tokio::test]
async fn metadata_matches_the_contract() {
    let w = world().await;
    let iss = w.issuer().to_owned();
    let expected = json!({
        "issuer": iss,
        "authorization_endpoint": format!("{iss}/oauth/authorize"),
        "token_endpoint": format!("{iss}/oauth/token"),
        "registration_endpoint": format!("{iss}/oauth/register"),
        "revocation_endpoint": format!("{iss}/oauth/revoke"),
        "introspection_endpoint": format!("{iss}/oauth/introspect"),
        "userinfo_endpoint": format!("{iss}/oauth/userinfo"),
        "jwks_uri": format!("{iss}/oauth/jwks.json"),
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post", "private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS256", "PS256", "ES256", "EdDSA"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "client_id_metadata_document_supported": true,
        "authorization_response_iss_parameter_supported": true,
    });
    let mut docs = Vec::new();
    for path in [
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
    ] {
        let r = send(&w, "GET", &w.app.url(path), None, None).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text);
        for (field, want) in expected.as_object().expect("object") {
            assert_eq!(
                &r.body[field], want,
                "{path}: {field}; document: {}",
                r.text
            );
        }
        let scopes: Vec<&str> = r.body["scopes_supported"]
            .as_array()
            .unwrap_or_else(|| panic!("{path}: scopes_supported: {}", r.text))
            .iter()
            .filter_map(Value::as_str)
            .collect();
        for s in [
            "mcp:read",
            "mcp:write",
            "mcp:execute",
            "offline_access",
            "openid",
            "profile",
            "email",
        ] {
            assert!(
                scopes.contains(&s),
                "{path}: scopes_supported has {s}: {scopes:?}"
            );
        }
        docs.push(r.body);
    }
    assert_eq!(docs[0], docs[1], "both documents say the same");
}

#[tokio::test]
async fn issuer_is_byte_identical_in_both_metadata_documents() {
    let w = world().await;
    // The root issuer is the public URL.
    let root = send(
        &w,
        "GET",
        &w.app.url("/.well-known/oauth-authorization-server"),
        None,
        None,
    )
    .await;
    assert_eq!(root.status, 200, "{}", root.text);
    assert_eq!(root.body["issuer"], w.issuer());
    // A server's protected-resource metadata names its own issuer, whose RFC 8414 metadata
    // (path inserted) says the same issuer, byte for byte.
    let prm = send(
        &w,
        "GET",
        &w.app.url(&format!(
            "/.well-known/oauth-protected-resource/mcp/{}",
            w.slug
        )),
        None,
        None,
    )
    .await;
    assert_eq!(prm.status, 200, "{}", prm.text);
    let b = prm.body["authorization_servers"][0]
        .as_str()
        .expect("authorization_servers[0]");
    assert_eq!(b, format!("{}/oauth/mcp/{}", w.issuer(), w.slug));
    let path = url::Url::parse(b).expect("issuer").path().to_owned();
    for doc in [
        format!("/.well-known/oauth-authorization-server{path}"),
        format!("/.well-known/openid-configuration{path}"),
        format!("{path}/.well-known/openid-configuration"),
    ] {
        let asm = send(&w, "GET", &w.app.url(&doc), None, None).await;
        assert_eq!(asm.status, 200, "{doc}: {}", asm.text);
        let a = asm.body["issuer"].as_str().expect("issuer");
        assert_eq!(a.as_bytes(), b.as_bytes(), "{doc}");
        assert!(!a.ends_with('/'));
        assert_eq!(asm.body["authorization_endpoint"], format!("{b}/authorize"));
        assert_eq!(asm.body["token_endpoint"], format!("{b}/token"));
    }
}

#[tokio::test]
async fn endpoints_answer_under_api_v1_too() {
    let w = world().await;
    let client_id = w.public_client().await;
    let req = w.request(&client_id);
    let code = authorize(&w.browser(), &req).await.code();
    let reply = post_endpoint(
        &w.app,
        "/api/v1/oauth/token",
        &public(&client_id),
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &req.verifier),
        ],
    )
    .await;
    reply.assert_ok();
    let r = post_json(
        &w,
        "/api/v1/oauth/register",
        None,
        json!({ "redirect_uris": [REDIRECT] }),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let page = w
        .browser()
        .get(
            &req.url(w.issuer())
                .replace("/oauth/authorize", "/api/v1/oauth/authorize"),
        )
        .await;
    assert_eq!(page.status, 200, "{}", page.describe());
    assert!(page.login_form().is_some(), "{}", page.describe());
}

#[tokio::test]
async fn grants_are_listed_and_deleting_one_ends_it() {
    let w = world().await;
    let client_id = w.public_client_named("Grant Viewer").await;
    let reply = w.tokens(&client_id, "mcp:read offline_access").await;
    let (_, claims) = jwt_parts(&reply.access_token());

    let (status, list) = api(&w.app, "GET", "/v1/grants", Some(&w.admin), None).await;
    assert_eq!(status, 200, "{list}");
    let grants = list["data"].as_array().expect("data");
    let g = grants
        .iter()
        .find(|g| g["clientId"] == client_id)
        .unwrap_or_else(|| panic!("the grant is listed: {list}"));
    assert_eq!(g["id"], claims["gid"], "the token's gid is the grant's id");
    assert_eq!(g["clientName"], "Grant Viewer");
    assert_eq!(g["serverId"], w.server_id);
    assert_eq!(g["resource"], w.resource);
    assert!(g["scopes"].is_array() && g["createdAt"].is_string(), "{g}");
    assert!(list["meta"].is_object(), "{list}");

    let gid = g["id"].as_str().expect("id");
    let (status, body) = api(
        &w.app,
        "DELETE",
        &format!("/v1/grants/{gid}"),
        Some(&w.admin),
        None,
    )
    .await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(tools_list(&w.resource, &reply.access_token()).await.0, 401);
    refresh(&w.app, &public(&client_id), &reply.refresh_token())
        .await
        .assert_error(400, "invalid_grant");
}

// ---------------------------------------------------------------------------------------------

/// A JSON POST with an optional bearer token.
async fn post_json(w: &World, path: &str, bearer: Option<&str>, body: Value) -> Reply {
    send(w, "POST", &w.app.url(path), bearer, Some(body)).await
}

async fn send(
    w: &World,
    method: &str,
    url: &str,
    bearer: Option<&str>,
    body: Option<Value>,
) -> Reply {
    let _ = w;
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut req = bare_client().request(method, url);
    if let Some(t) = bearer {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    Reply::read(req.send().await.expect("request")).await
}

#[tokio::test]
async fn a_deleted_clients_tokens_stay_refused_after_a_restart() {
    machine_token_refused_after(Deleted::Client).await;
}

#[tokio::test]
async fn a_deleted_servers_machine_tokens_stay_refused_even_where_its_slug_returns() {
    machine_token_refused_after(Deleted::Server).await;
}

enum Deleted {
    Client,
    Server,
}

/// A server `phoenix` in `project`, served by `upstream`; its id.
async fn phoenix(
    app: &crate::helpers::TestApp,
    admin: &str,
    project: &str,
    upstream: &str,
) -> String {
    let server = crate::helpers::create_server(app, admin, project, "phoenix").await;
    let sid = server["id"].as_str().expect("id").to_owned();
    crate::helpers::patch_as(
        app,
        admin,
        &format!("/v1/servers/{sid}"),
        json!({ "upstreamUrl": upstream }),
    )
    .await
    .expect(200);
    sid
}

/// A client_credentials token stays refused after its client (or its whole server, whose slug
/// is then taken by a new server) is deleted, and after a restart.
async fn machine_token_refused_after(deleted: Deleted) {
    use crate::helpers::{TestApp, admin_token, create_project, delete_as, post_as};
    // A fixed public URL: tokens issued before the restart name the same resource after it.
    let public_url = "http://127.0.0.1:9";
    let fixed = |c: &mut ezforge::Config| c.server.public_url = Some(public_url.into());
    let mut app = TestApp::builder().config(fixed).spawn().await;
    let up = crate::fakes::FakeUpstream::start().await;
    let admin = admin_token(&app).await;
    let project = create_project(&app, &admin, "Restarts").await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let sid = phoenix(&app, &admin, &project, &up.url).await;
    let client = post_as(
        &app,
        &admin,
        &format!("/v1/servers/{sid}/clients"),
        json!({ "name": "agent", "redirectUris": ["https://agent.example/cb"], "confidential": true }),
    )
    .await
    .expect(201)["data"]
        .clone();
    let resource = format!("{public_url}/mcp/phoenix");
    let reply = token(
        &app,
        &ClientAuth::Basic(
            client["clientId"].as_str().expect("id").to_owned(),
            client["clientSecret"].as_str().expect("secret").to_owned(),
        ),
        &[
            ("grant_type", "client_credentials"),
            ("resource", &resource),
        ],
    )
    .await;
    reply.assert_ok();
    let access = reply.access_token();
    let call = |app: &TestApp| {
        app.client
            .post(app.url("/mcp/phoenix"))
            .bearer_auth(&access)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#)
            .send()
    };
    assert_eq!(call(&app).await.expect("call").status(), 200);
    match deleted {
        Deleted::Client => {
            let cid = client["id"].as_str().expect("id");
            delete_as(&app, &admin, &format!("/v1/servers/{sid}/clients/{cid}"))
                .await
                .expect(204);
        }
        Deleted::Server => {
            delete_as(&app, &admin, &format!("/v1/servers/{sid}"))
                .await
                .expect(204);
            // The slug is taken again: same URL, so the old token's audience matches.
            phoenix(&app, &admin, &project, &up.url).await;
        }
    }
    assert_eq!(call(&app).await.expect("call").status(), 401);

    // The rows are gone; the revocation is not.
    let tmp = app.take_tempdir().expect("tmp");
    let dir = app.data_dir.clone();
    app.stop().await;
    let app = TestApp::builder_in(&dir).config(fixed).spawn().await;
    assert_eq!(
        call(&app).await.expect("call").status(),
        401,
        "after the restart"
    );
    drop(tmp);
}
