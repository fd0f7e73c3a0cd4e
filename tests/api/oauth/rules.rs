//! The authorization server's rules, each with its failing case: PKCE, codes, redirect URIs,
//! resources, scopes, refresh tokens, CSRF, login throttling, page headers, escaping, BYOA, and
//! bad input.

use serde_json::json;

use crate::helpers::{ADMIN_EMAIL, ADMIN_PASSWORD, TestApp};
use crate::oauth::browser::*;

fn public(id: &str) -> ClientAuth {
    ClientAuth::Public(id.to_owned())
}

// --- PKCE and codes ---------------------------------------------------------------------------

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

// --- Redirect URIs and clients ----------------------------------------------------------------

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

// --- Refresh ----------------------------------------------------------------------------------

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

// --- The login page ---------------------------------------------------------------------------

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

// --- BYOA -------------------------------------------------------------------------------------

#[tokio::test]
async fn byoa_mode_has_no_authorization_server() {
    let issuer = crate::fakes::TestIssuer::start().await;
    let cfg = issuer.byoa_config();
    let app = TestApp::builder()
        .config(move |c| {
            c.auth.mode = ezforge::config::AuthMode::Byoa;
            c.auth.byoa = Some(cfg);
        })
        .spawn()
        .await;
    let (verifier, challenge) = pkce();
    let _ = verifier;
    let browser = Browser::new(&app);
    let authorize_url = format!(
        "{}/oauth/authorize?response_type=code&client_id=x&redirect_uri={}&code_challenge={challenge}&code_challenge_method=S256&state=s",
        app.address,
        url::form_urlencoded::byte_serialize(REDIRECT.as_bytes()).collect::<String>()
    );
    let page = browser.get(&authorize_url).await;
    assert_eq!(
        page.status,
        404,
        "GET /oauth/authorize: {}",
        page.describe()
    );
    let page = browser
        .post_form(
            &format!("{}/oauth/authorize", app.address),
            &[("response_type".into(), "code".into())],
        )
        .await;
    assert_eq!(
        page.status,
        404,
        "POST /oauth/authorize: {}",
        page.describe()
    );

    for path in [
        "/oauth/token",
        "/api/v1/oauth/token",
        "/oauth/revoke",
        "/oauth/introspect",
    ] {
        let r = post_endpoint(
            &app,
            path,
            &ClientAuth::Public("x".into()),
            &[("grant_type", "authorization_code"), ("code", "c")],
        )
        .await;
        assert_eq!(r.status, 404, "{path}: {}", r.text);
    }
    let r = bare_client()
        .post(app.url("/oauth/register"))
        .json(&json!({ "redirect_uris": [REDIRECT] }))
        .send()
        .await
        .expect("register");
    assert_eq!(r.status(), 404, "/oauth/register");
    for path in [
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
        "/oauth/jwks.json",
    ] {
        let r = bare_client().get(app.url(path)).send().await.expect("get");
        assert_eq!(r.status(), 404, "{path}");
    }
    for (table, rows) in
        rows_in_tables_like(&app, &["grant", "auth_code", "refresh_token", "consent"]).await
    {
        assert_eq!(rows, 0, "no rows in {table}");
    }
}

#[tokio::test]
async fn the_authorization_server_is_rate_limited_per_address() {
    let w = world_with(|c| {
        c.auth.rate_limit.per_minute = 6;
        c.auth.rate_limit.burst = 3;
    })
    .await;
    let mut statuses = Vec::new();
    let mut last = None;
    for _ in 0..4 {
        let r = raw_token(
            &w.app,
            Some(FORM),
            b"grant_type=client_credentials".to_vec(),
        )
        .await;
        statuses.push(r.status);
        last = Some(r);
    }
    assert_eq!(statuses, [401, 401, 401, 429]);
    let r = last.expect("reply");
    r.assert_error(429, "temporarily_unavailable");
    let retry: u64 = r
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&retry), "{retry}");
    // Every /oauth endpoint shares the address's bucket; the control API and metadata do not.
    let res = bare_client()
        .get(w.app.url("/oauth/jwks.json"))
        .send()
        .await
        .expect("jwks");
    assert_eq!(res.status(), 429);
    let res = bare_client()
        .get(w.app.url("/.well-known/oauth-authorization-server"))
        .send()
        .await
        .expect("metadata");
    assert_eq!(res.status(), 200);
    let (status, _) = api(&w.app, "GET", "/v1/projects", Some(&w.admin), None).await;
    assert_eq!(status, 200);
}

// --- Bad input --------------------------------------------------------------------------------

async fn raw_token(app: &TestApp, content_type: Option<&str>, body: Vec<u8>) -> Reply {
    let mut req = bare_client().post(app.url("/oauth/token")).body(body);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    Reply::read(req.send().await.expect("request")).await
}

const FORM: &str = "application/x-www-form-urlencoded";

#[tokio::test]
async fn token_endpoint_refuses_bad_input_and_never_500s() {
    let w = world().await;
    let client_id = w.public_client().await;
    let req = w.request(&client_id);
    let code = authorize(&w.browser(), &req).await.code();
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let base = format!(
        "grant_type=authorization_code&client_id={}&redirect_uri={}&code_verifier={}",
        enc(&client_id),
        enc(REDIRECT),
        enc(&req.verifier)
    );

    // Duplicated parameters.
    let r = raw_token(
        &w.app,
        Some(FORM),
        format!("{base}&code={}&code={}", enc(&code), enc(&code)).into_bytes(),
    )
    .await;
    r.assert_error(400, "invalid_request");
    let r = raw_token(
        &w.app,
        Some(FORM),
        format!("{base}&grant_type=authorization_code&code={}", enc(&code)).into_bytes(),
    )
    .await;
    r.assert_error(400, "invalid_request");
    // Thousands of distinct names in one form: refused at once (this used to be a quadratic
    // duplicate check, seconds of CPU on a worker per request for a large form).
    let many: String = (0..8_000).map(|i| format!("&{i}=")).collect();
    let r = raw_token(&w.app, Some(FORM), format!("{base}{many}").into_bytes()).await;
    r.assert_error(400, "invalid_request");
    assert!(r.text.contains("too many parameters"), "{}", r.text);

    // Missing or unknown grant type.
    let r = raw_token(
        &w.app,
        Some(FORM),
        format!("client_id={}&code={}", enc(&client_id), enc(&code)).into_bytes(),
    )
    .await;
    r.assert_error(400, "invalid_request");
    let r = raw_token(
        &w.app,
        Some(FORM),
        format!(
            "grant_type=password&client_id={}&username=a&password=b",
            enc(&client_id)
        )
        .into_bytes(),
    )
    .await;
    r.assert_error(400, "unsupported_grant_type");

    // Too large: an RFC 6749 error all the same.
    let big = format!("{base}&code={}", "a".repeat(64 * 1024));
    let r = raw_token(&w.app, Some(FORM), big.into_bytes()).await;
    r.assert_error(413, "invalid_request");
    assert!(r.text.contains("larger than 65536 bytes"), "{}", r.text);

    // Malformed bodies, odd content types, oversized single fields: 4xx, never 500.
    let oversized = format!("{base}&code={}", "a".repeat(60 * 1024));
    let cases: Vec<(&str, Option<&str>, Vec<u8>)> = vec![
        ("empty", Some(FORM), Vec::new()),
        (
            "bad percent-encoding",
            Some(FORM),
            format!("{base}&code=%zz%").into_bytes(),
        ),
        ("not UTF-8", Some(FORM), {
            let mut b = format!("{base}&code=").into_bytes();
            b.extend_from_slice(&[0xff, 0xfe, 0x80]);
            b
        }),
        (
            "JSON",
            Some("application/json"),
            json!({"grant_type": "authorization_code", "code": code})
                .to_string()
                .into_bytes(),
        ),
        (
            "no content type",
            None,
            format!("{base}&code={}", enc(&code)).into_bytes(),
        ),
        ("oversized field", Some(FORM), oversized.into_bytes()),
        ("lone separators", Some(FORM), b"&&&===&".to_vec()),
        ("key without value", Some(FORM), b"grant_type&code".to_vec()),
        (
            "nul bytes",
            Some(FORM),
            format!("{base}&code=a%00b").into_bytes(),
        ),
    ];
    for (what, ct, body) in cases {
        let r = raw_token(&w.app, ct, body).await;
        assert!(
            (400..500).contains(&r.status),
            "{what}: 4xx expected, got {} {}",
            r.status,
            r.text
        );
        if r.status == 400 {
            assert!(
                !r.error().is_empty(),
                "{what}: an RFC 6749 error body: {}",
                r.text
            );
        }
    }

    let r = bare_client()
        .get(w.app.url("/oauth/token"))
        .send()
        .await
        .expect("GET token");
    assert!(
        (400..500).contains(&r.status().as_u16()),
        "GET /oauth/token: {}",
        r.status()
    );

    // After all that, the code is still good for a well-formed request (it was never valid
    // input that reached it) or refused as used, but the endpoint keeps working.
    let r = exchange(&w.app, &public(&client_id), &req, &code).await;
    assert!(
        r.status == 200 || r.error() == "invalid_grant",
        "{} {}",
        r.status,
        r.text
    );
}

#[tokio::test]
async fn authorize_refuses_bad_input_and_never_500s() {
    let w = world().await;
    let client_id = w.public_client().await;

    // Duplicated client_id or redirect_uri: an error page, no redirect.
    let req = w.request(&client_id).add("client_id", &client_id);
    authorize(&w.browser(), &req).await.assert_error_page(400);
    let req = w.request(&client_id).add("redirect_uri", REDIRECT);
    authorize(&w.browser(), &req).await.assert_error_page(400);

    // Other duplicated parameters: never a code, never 500.
    for req in [
        w.request(&client_id).add("state", "second"),
        w.request(&client_id).add("code_challenge", "x"),
        w.request(&client_id)
            .add("resource", &format!("{}/mcp/other", w.issuer())),
        w.request(&client_id).add("response_type", "code"),
    ] {
        let out = authorize(&w.browser(), &req).await;
        assert!(
            out.pages.iter().all(|p| p.status < 500),
            "never 500; {}",
            out.describe()
        );
        assert!(
            out.code.is_none(),
            "no code with a duplicated parameter; {}",
            out.describe()
        );
    }
    // Oversized values: never 500.
    for req in [
        w.request(&client_id).set("state", &"s".repeat(20 * 1024)),
        w.request(&client_id)
            .set("scope", &"mcp:read ".repeat(2000)),
        w.request(&client_id)
            .set("code_challenge", &"c".repeat(10 * 1024)),
        w.request(&client_id).set(
            "resource",
            &format!("{}/{}", w.resource, "r".repeat(10 * 1024)),
        ),
    ] {
        let out = authorize(&w.browser(), &req).await;
        assert!(
            out.pages.iter().all(|p| p.status < 500),
            "never 500; {}",
            out.describe()
        );
    }

    // POST with the parameters as a form works like GET.
    let req = w.request(&client_id);
    let browser = w.browser();
    let page = browser
        .post_form(&w.app.url("/oauth/authorize"), &req.params)
        .await;
    assert!(
        page.status == 200 && page.login_form().is_some(),
        "POST /oauth/authorize shows the login page: {}",
        page.describe()
    );
}

#[tokio::test]
async fn browser_clients_may_call_the_token_and_registration_endpoints() {
    let w = world().await;
    let client = bare_client();
    // Preflights are answered for what a browser-based client fetches.
    for path in ["/oauth/token", "/oauth/register", "/oauth/revoke"] {
        let res = client
            .request(reqwest::Method::OPTIONS, w.app.url(path))
            .header("origin", "http://localhost:6274")
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
            .await
            .expect("preflight");
        assert_eq!(res.status(), 204, "{path}");
        let h = |n: &str| {
            res.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        assert_eq!(
            h("access-control-allow-origin").as_deref(),
            Some("*"),
            "{path}"
        );
        assert!(
            h("access-control-allow-headers").is_some_and(|v| v.contains("Content-Type")),
            "{path}"
        );
    }
    // The answers themselves, errors included, may be read by any origin.
    let reply = Reply::read(
        client
            .post(w.app.url("/oauth/register"))
            .header("origin", "http://localhost:6274")
            .json(&json!({"redirect_uris": ["http://localhost:6274/oauth/callback"], "client_name": "Inspector"}))
            .send()
            .await
            .expect("register"),
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    assert_eq!(reply.header("access-control-allow-origin"), Some("*"));
    let reply = raw_token(&w.app, Some(FORM), b"grant_type=nope".to_vec()).await;
    assert_eq!(reply.status, 401, "no client: {}", reply.text);
    assert_eq!(reply.header("access-control-allow-origin"), Some("*"));
    // The pages are navigated to, not fetched: no CORS there.
    let page = client
        .get(w.app.url("/oauth/authorize"))
        .send()
        .await
        .expect("authorize");
    assert!(page.headers().get("access-control-allow-origin").is_none());
    // Other methods and paths answer in the OAuth shape.
    let reply = Reply::read(
        client
            .get(w.app.url("/oauth/token"))
            .send()
            .await
            .expect("get"),
    )
    .await;
    assert_eq!(reply.status, 405, "{}", reply.text);
    assert_eq!(reply.error(), "invalid_request");
    let reply = Reply::read(
        client
            .get(w.app.url("/oauth/nothing"))
            .send()
            .await
            .expect("get"),
    )
    .await;
    assert_eq!(reply.status, 404, "{}", reply.text);
    assert_eq!(reply.error(), "invalid_request");
}
