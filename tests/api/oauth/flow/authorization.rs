//! The authorization flow end to end: tokens, refresh, consent, members.

use super::*;

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
    // A code kept back for after the removal.
    let later = w.request(&client_id).scope("mcp:read");
    let kept = authorize_as(&w.browser(), &later, &person).await.code();

    let member = format!("{members}/{member_id}");
    let (status, body) = api(&w.app, "DELETE", &member, Some(&w.admin), None).await;
    assert_eq!(status, 204, "{body}");
    // Before, the refresh token kept working (and renewed itself) for as long as it was used.
    assert_eq!(tools_list(&w.resource, &reply.access_token()).await.0, 401);
    refresh(&w.app, &public(&client_id), &reply.refresh_token())
        .await
        .assert_error(400, "invalid_grant");
    exchange(&w.app, &public(&client_id), &later, &kept)
        .await
        .assert_error(400, "invalid_grant");
    // Spent by that refusal: no second try once back in the project either.
    add_member(&w.app, &w.admin, &w.project, "leaver@example.com", "member").await;
    exchange(&w.app, &public(&client_id), &later, &kept)
        .await
        .assert_error(400, "invalid_grant");
    let member = format!("{members}/{member_id}");
    let (status, body) = api(&w.app, "DELETE", &member, Some(&w.admin), None).await;
    assert_eq!(status, 204, "{body}");
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
