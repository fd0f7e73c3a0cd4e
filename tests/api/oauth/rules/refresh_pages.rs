//! Refresh tokens, and the sign-in pages: CSRF, throttling, framing, escaping.

use super::*;

#[tokio::test]
async fn refresh_token_is_bound_to_its_client() {
    let w = world().await;
    let a = w.public_client_named("A").await;
    let b = w.public_client_named("B").await;
    let reply = w.tokens(&a, "mcp:read offline_access").await;
    refresh(&w.app, &public(&b), &reply.refresh_token())
        .await
        .assert_error(400, "invalid_grant");
}

#[tokio::test]
async fn refresh_may_narrow_but_never_widen_scope() {
    let w = world().await;
    let client_id = w.public_client().await;

    let reply = w.tokens(&client_id, "mcp:read offline_access").await;
    let r = token(
        &w.app,
        &public(&client_id),
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &reply.refresh_token()),
            ("scope", "mcp:read mcp:write offline_access"),
        ],
    )
    .await;
    r.assert_error(400, "invalid_scope");

    let reply = w
        .tokens(&client_id, "mcp:read mcp:write offline_access")
        .await;
    let r = token(
        &w.app,
        &public(&client_id),
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &reply.refresh_token()),
            ("scope", "mcp:read offline_access"),
        ],
    )
    .await;
    r.assert_ok();
    assert_eq!(
        scope_set(r.body["scope"].as_str().unwrap_or("")),
        scope_set("mcp:read offline_access"),
        "{}",
        r.text
    );
    let (_, claims) = jwt_parts(&r.access_token());
    assert_eq!(
        scope_set(claims["scope"].as_str().unwrap_or("")),
        scope_set("mcp:read offline_access")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_refresh_exactly_one_wins_when_strict() {
    let w = world_with(|c| c.auth.refresh_reuse_grace = ezforge::config::Duration::secs(0)).await;
    let client_id = w.public_client().await;
    let reply = w.tokens(&client_id, "mcp:read offline_access").await;
    let rt = reply.refresh_token();
    let auth = public(&client_id);
    let calls = (0..10).map(|_| refresh(&w.app, &auth, &rt));
    let replies = futures_util::future::join_all(calls).await;
    let ok = replies.iter().filter(|r| r.status == 200).count();
    let statuses: Vec<(u16, &str)> = replies.iter().map(|r| (r.status, r.error())).collect();
    assert_eq!(ok, 1, "exactly one refresh wins: {statuses:?}");
    for r in replies.iter().filter(|r| r.status != 200) {
        r.assert_error(400, "invalid_grant");
    }
}

#[tokio::test]
async fn login_post_needs_the_csrf_token_and_cookie() {
    let w = world().await;
    let client_id = w.public_client().await;
    let browser = w.browser();
    let url = w.request(&client_id).url(w.issuer());
    let page = browser.get(&url).await;
    let form = page
        .login_form()
        .unwrap_or_else(|| panic!("a login form; {}", page.describe()));
    let good = form.fields(
        &[("email", ADMIN_EMAIL), ("password", ADMIN_PASSWORD)],
        None,
        false,
    );
    let action = page.action_url(&form);

    let no_csrf: Vec<(String, String)> =
        good.iter().filter(|(k, _)| k != "csrf").cloned().collect();
    let wrong_csrf: Vec<(String, String)> = good
        .iter()
        .map(|(k, v)| {
            if k == "csrf" {
                (k.clone(), "wrong-csrf-token".to_owned())
            } else {
                (k.clone(), v.clone())
            }
        })
        .collect();
    for (what, fields) in [("missing", &no_csrf), ("wrong", &wrong_csrf)] {
        let res = browser.post_form(&action, fields).await;
        assert_eq!(res.status, 403, "{what} CSRF token: {}", res.describe());
        assert!(
            !res.header_all("set-cookie").iter().any(|c| {
                let (name, rest) = c.split_once('=').unwrap_or((c, ""));
                name.trim().ends_with("ezf_session") && !rest.starts_with(';') && !rest.is_empty()
            }),
            "{what} CSRF token: no session cookie"
        );
    }
    // The right token without the cookie that goes with it (another browser).
    let stranger = w.browser();
    let res = stranger.post_form(&action, &good).await;
    assert_eq!(res.status, 403, "CSRF cookie missing: {}", res.describe());

    // Still not signed in.
    let again = browser.get(&url).await;
    assert!(
        again.login_form().is_some(),
        "no session after refused posts; {}",
        again.describe()
    );
    let stranger_again = stranger.get(&url).await;
    assert!(
        stranger_again.login_form().is_some(),
        "{}",
        stranger_again.describe()
    );

    // And the page still works when used properly.
    let out = authorize(&browser, &w.request(&client_id)).await;
    out.code();
}

#[tokio::test]
async fn login_is_throttled_after_failed_attempts() {
    let w = world_with(|c| c.control.login_attempts = 3).await;
    let client_id = w.public_client().await;
    let browser = w.browser();
    let url = w.request(&client_id).url(w.issuer());

    async fn attempt(browser: &Browser, url: &str, password: &str) -> Page {
        let page = browser.get(url).await;
        let Some(form) = page.login_form() else {
            // Already locked out at the page itself.
            return page;
        };
        let fields = form.fields(
            &[("email", ADMIN_EMAIL), ("password", password)],
            None,
            false,
        );
        browser.post_form(&page.action_url(&form), &fields).await
    }
    fn locked(p: &Page) -> bool {
        p.status == 429 || p.body.to_ascii_lowercase().contains("too many")
    }

    for i in 1..=3 {
        let p = attempt(&browser, &url, "wrong-password").await;
        assert!(
            p.consent_form().is_none() && !p.is_redirect() && p.status != 500,
            "wrong password #{i} is refused: {}",
            p.describe()
        );
    }
    let p = attempt(&browser, &url, "wrong-password").await;
    assert!(
        locked(&p),
        "4th wrong attempt: 429 or 'too many attempts': {}",
        p.describe()
    );

    let p = attempt(&browser, &url, ADMIN_PASSWORD).await;
    assert!(
        p.consent_form().is_none() && !p.is_redirect(),
        "the right password is refused during the lockout: {}",
        p.describe()
    );
    assert!(locked(&p), "and says so: {}", p.describe());
}

#[tokio::test]
async fn an_oversized_login_is_wrong_and_not_echoed() {
    let w = world().await;
    let client_id = w.public_client().await;
    let browser = w.browser();
    let page = browser.get(&w.request(&client_id).url(w.issuer())).await;
    let form = page.login_form().expect("login form");
    let long = format!("{}@example.com", "a".repeat(20 * 1024));
    let fields = form.fields(&[("email", &long), ("password", "x")], None, false);
    let p = browser.post_form(&page.action_url(&form), &fields).await;
    assert_eq!(p.status, 401, "{}", p.describe());
    assert!(
        p.body.contains("Wrong email or password"),
        "{}",
        p.describe()
    );
    assert!(
        !p.body.contains(&long[..300]),
        "the 20 KiB address is not sent back"
    );
    assert!(p.login_form().is_some(), "the form is shown again");
}

#[tokio::test]
async fn pages_forbid_framing() {
    let w = world().await;
    let client_id = w.public_client().await;
    let browser = w.browser();
    let login = browser.get(&w.request(&client_id).url(w.issuer())).await;
    let form = login.login_form().expect("login form");
    let fields = form.fields(
        &[("email", ADMIN_EMAIL), ("password", ADMIN_PASSWORD)],
        None,
        false,
    );
    let mut consent = browser.post_form(&login.action_url(&form), &fields).await;
    if let Some(next) = consent.location().filter(|u| browser.on_server(u)) {
        consent = browser.get(next.as_str()).await;
    }
    assert!(consent.consent_form().is_some(), "{}", consent.describe());
    let error = browser.get(&w.request("client_nope").url(w.issuer())).await;
    assert_eq!(error.status, 400, "{}", error.describe());
    let other = w.browser();
    let page = other.get(&w.request(&client_id).url(w.issuer())).await;
    let other_form = page.login_form().expect("login form");
    let csrf = other
        .post_form(
            &page.action_url(&other_form),
            &other_form.fields(
                &[
                    ("email", ADMIN_EMAIL),
                    ("password", ADMIN_PASSWORD),
                    ("csrf", "wrong-csrf-token"),
                ],
                None,
                false,
            ),
        )
        .await;
    assert_eq!(csrf.status, 403, "{}", csrf.describe());

    for (what, page) in [
        ("login", &login),
        ("consent", &consent),
        ("error", &error),
        ("csrf", &csrf),
    ] {
        assert!(
            page.header("x-frame-options")
                .is_some_and(|v| v.eq_ignore_ascii_case("deny")),
            "{what} page: X-Frame-Options DENY; headers {:?}",
            page.headers
        );
        assert!(
            page.header("content-security-policy")
                .is_some_and(|v| v.contains("frame-ancestors 'none'")),
            "{what} page: CSP frame-ancestors 'none'; headers {:?}",
            page.headers
        );
        assert!(page.is_html(), "{what} page is HTML");
    }
}

#[tokio::test]
async fn the_consent_page_names_an_apps_scheme_not_the_host_its_uri_shows() {
    let w = world().await;
    // Anything may follow an app's scheme: `claude.ai` here is the client's choice.
    let app_uri = "x-foo://claude.ai/cb";
    let register = |uri: &str| {
        let body = json!({ "client_name": "Claude", "redirect_uris": [uri] });
        w.app
            .plain
            .post(w.app.url("/oauth/register"))
            .json(&body)
            .send()
    };
    let reg = crate::helpers::ApiResponse::read(register(app_uri).await.expect("register")).await;
    let client_id = reg.expect(201)["client_id"]
        .as_str()
        .expect("client_id")
        .to_owned();
    let client_id = client_id.as_str();
    // A web+ scheme hands the code to whichever website registered for it: refused.
    let web = crate::helpers::ApiResponse::read(
        register("web+evil://claude.ai/cb").await.expect("register"),
    )
    .await;
    assert_eq!(web.status, 400, "{}", web.text);
    assert!(web.text.contains("web+"), "{}", web.text);
    let req = w.request(client_id).set("redirect_uri", app_uri);
    let out = authorize(&w.browser(), &req).await;
    let consent = out
        .pages
        .iter()
        .find(|p| p.consent_form().is_some())
        .expect("consent page");
    assert!(consent.body.contains("x-foo:"), "{}", consent.body);
    assert!(
        !consent.body.contains("go back to <strong>claude.ai"),
        "{}",
        consent.body
    );
}

#[tokio::test]
async fn hostile_state_and_client_names_are_escaped() {
    let w = world().await;
    let name = "<script>alert(1)</script>\"'&";
    let c = w
        .register(json!({
            "name": name,
            "redirectUris": [REDIRECT],
        }))
        .await;
    let client_id = c["clientId"].as_str().expect("clientId");
    let state = "a\"b<c>\r\nX-Injected: 1";
    let req = w.request(client_id).set("state", state);

    let out = authorize(&w.browser(), &req).await;
    assert!(out.saw_consent, "{}", out.describe());
    for p in &out.pages {
        assert!(
            !p.body.contains("<script>alert(1)</script>"),
            "markup is escaped on {}: {}",
            p.url,
            p.body
        );
        assert!(
            !p.body.contains("b<c>"),
            "the state is escaped on {}",
            p.url
        );
        assert!(
            p.header("x-injected").is_none(),
            "headers are never split on {}",
            p.url
        );
    }
    let consent = out
        .pages
        .iter()
        .find(|p| p.consent_form().is_some())
        .expect("consent page");
    assert!(
        unescape(&consent.body).contains("<script>alert(1)</script>"),
        "the consent page shows the name, escaped: {}",
        consent.body
    );
    assert_eq!(
        out.state.as_deref(),
        Some(state),
        "the state round-trips exactly; {}",
        out.describe()
    );
    out.code();

    // Error redirects carry it exactly too. (Consent is now remembered, so use an error that
    // comes before it.)
    let req = w
        .request(client_id)
        .set("state", state)
        .set("code_challenge_method", "plain");
    let out = authorize_as(&w.browser(), &req, &Person::admin().deny()).await;
    assert_eq!(
        out.error.as_deref(),
        Some("invalid_request"),
        "{}",
        out.describe()
    );
    assert_eq!(out.state.as_deref(), Some(state));
    for p in &out.pages {
        assert!(p.header("x-injected").is_none());
    }

    // And an error page does not reflect it raw.
    let req = w.request("client_nope").set("state", state);
    let out = authorize(&w.browser(), &req).await;
    out.assert_error_page(400);
    assert!(!out.last().body.contains("b<c>"));
    assert!(out.last().header("x-injected").is_none());
}
