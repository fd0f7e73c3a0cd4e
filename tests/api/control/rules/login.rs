//! Login: identical answers, throttling, the session cookie, CSRF on cookie-authenticated calls.

use super::*;

async fn try_login(app: &TestApp, email: &str, password: &str) -> ApiResponse {
    let body = json!({ "email": email, "password": password });
    call(app, "POST", "/v1/auth/login", None, Some(&body)).await
}

#[tokio::test]
async fn login_answers_unknown_user_and_wrong_password_identically() {
    let app = TestApp::spawn().await;
    let unknown = try_login(&app, "nobody@example.com", "whatever-password").await;
    let wrong = try_login(&app, ADMIN_EMAIL, "wrong-password-123").await;
    assert_eq!(unknown.status, 401, "{}", unknown.text);
    assert_eq!(wrong.status, 401, "{}", wrong.text);
    assert_eq!(unknown.body, wrong.body, "same body");
    assert_eq!(unknown.code(), "UNAUTHENTICATED");
    wrong.assert_error_shape();
    assert!(
        !wrong.text.to_lowercase().contains("password is"),
        "{}",
        wrong.text
    );
    assert!(
        unknown.header("set-cookie").is_none() && wrong.header("set-cookie").is_none(),
        "no cookie for a failed login"
    );
    // A user without a password (invited, not yet accepted) is refused the same way.
    let admin = admin_token(&app).await;
    invite_user(&app, &admin, "pending@example.com").await;
    let pending = try_login(&app, "pending@example.com", "").await;
    assert!(
        pending.status == 401 || pending.status == 422,
        "{}",
        pending.text
    );
    let pending = try_login(&app, "pending@example.com", "some-password-here").await;
    assert_eq!(
        pending.body, wrong.body,
        "an invited user without a password"
    );
    // Email matching is case-insensitive; a right password signs in.
    let ok = try_login(&app, &ADMIN_EMAIL.to_uppercase(), ADMIN_PASSWORD).await;
    let body = ok.expect(200);
    assert_eq!(body["data"]["user"]["email"], ADMIN_EMAIL);
    assert!(
        body["data"]["token"]
            .as_str()
            .expect("token")
            .starts_with("ezf_sess_")
    );
    assert!(
        humantime::parse_rfc3339(body["data"]["expiresAt"].as_str().expect("expiresAt")).is_ok()
    );
    assert!(body["data"]["user"].get("passwordHash").is_none());
    // Missing fields are validation errors, not 500s.
    call(
        &app,
        "POST",
        "/v1/auth/login",
        None,
        Some(&json!({ "password": "x" })),
    )
    .await
    .assert_invalid("email");
    call(
        &app,
        "POST",
        "/v1/auth/login",
        None,
        Some(&json!({ "email": "a@b.example" })),
    )
    .await
    .assert_invalid("password");
}

#[tokio::test]
async fn login_is_throttled_after_the_configured_failures() {
    let app = TestApp::builder()
        .config(|c| c.control.login_attempts = 3)
        .spawn()
        .await;
    for i in 0..3 {
        let res = try_login(&app, ADMIN_EMAIL, "wrong-password-123").await;
        assert_eq!(res.status, 401, "failure {i}: {}", res.text);
    }
    let res = try_login(&app, ADMIN_EMAIL, "wrong-password-123").await;
    assert_eq!(res.status, 429, "{}", res.text);
    res.assert_error_shape();
    assert_eq!(res.code(), "RATE_LIMITED");
    let retry: u64 = res
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("seconds");
    assert!((1..=15 * 60).contains(&retry), "{retry}");
    // Throttled even with the right password.
    let res = try_login(&app, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert_eq!(
        res.status, 429,
        "the right password does not get through: {}",
        res.text
    );
    assert!(res.header("retry-after").is_some());
}

/// A login from a chosen loopback address (all of 127/8 reaches a server on 127.0.0.1).
async fn login_from(app: &TestApp, from: [u8; 4], email: &str, password: &str) -> ApiResponse {
    let client = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from(from))
        .build()
        .expect("client");
    let res = client
        .post(app.url("/v1/auth/login"))
        .json(&json!({ "email": email, "password": password }))
        .send()
        .await
        .expect("login");
    ApiResponse::read(res).await
}

#[tokio::test]
async fn login_is_throttled_per_account_and_per_address() {
    let app = TestApp::builder()
        .config(|c| c.control.login_attempts = 3)
        .spawn()
        .await;
    let admin = admin_token(&app).await;
    crate::helpers::create_user(&app, &admin, "victim@example.com", "member").await;
    let (a, b, c) = ([127, 0, 0, 2], [127, 0, 0, 3], [127, 0, 0, 4]);
    for _ in 0..3 {
        let res = login_from(&app, a, "victim@example.com", "bad-guess-000000").await;
        assert_eq!(res.status, 401, "{}", res.text);
    }
    // The account is locked wherever the attempt comes from, right password or not.
    let res = login_from(&app, b, "victim@example.com", USER_PASSWORD).await;
    assert_eq!(
        res.status, 429,
        "account lock from another address: {}",
        res.text
    );
    assert!(res.header("retry-after").is_some());
    // The address is locked for every account.
    let res = login_from(&app, a, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert_eq!(
        res.status, 429,
        "address lock for another account: {}",
        res.text
    );
    // Another account from another address is unaffected.
    let res = login_from(&app, c, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert_eq!(res.status, 200, "{}", res.text);
    // Failures below the limit are forgotten by a success on that account.
    for _ in 0..2 {
        login_from(&app, c, ADMIN_EMAIL, "wrong-password-123").await;
    }
    login_from(&app, [127, 0, 0, 5], ADMIN_EMAIL, ADMIN_PASSWORD)
        .await
        .expect(200);
    let res = login_from(&app, [127, 0, 0, 6], ADMIN_EMAIL, "wrong-password-123").await;
    assert_eq!(res.status, 401, "the counter restarted: {}", res.text);
    let res = login_from(&app, [127, 0, 0, 6], ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert_eq!(res.status, 200, "{}", res.text);
}

#[tokio::test]
async fn login_sets_the_session_cookie_as_documented() {
    let app = TestApp::spawn().await;
    let res = plain_client()
        .post(app.url("/v1/auth/login"))
        .json(&json!({ "email": ADMIN_EMAIL, "password": ADMIN_PASSWORD }))
        .send()
        .await
        .expect("login");
    let res = ApiResponse::read(res).await;
    let token = res.expect(200)["data"]["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let cookie = res.header("set-cookie").expect("Set-Cookie").to_owned();
    let lower = cookie.to_lowercase();
    assert!(
        cookie.starts_with(&format!("ezf_session={token}")),
        "{cookie}"
    );
    assert!(lower.contains("httponly"), "{cookie}");
    assert!(lower.contains("samesite=lax"), "{cookie}");
    assert!(lower.contains("max-age=3600"), "{cookie}");
    assert!(lower.contains("path=/"), "{cookie}");
    assert!(
        !lower.contains("secure"),
        "not Secure over plain http: {cookie}"
    );
    assert_eq!(res.header("cache-control"), Some("no-store"));
}

#[tokio::test]
async fn cookie_authenticated_unsafe_requests_need_our_origin_and_json() {
    let app = TestApp::spawn().await;
    // Sign in through the cookie-keeping client: from here on it carries ezf_session.
    app.client
        .post(app.url("/v1/auth/login"))
        .json(&json!({ "email": ADMIN_EMAIL, "password": ADMIN_PASSWORD }))
        .send()
        .await
        .expect("login")
        .error_for_status()
        .expect("200");
    let send = |origin: Option<&str>, ct: &str, body: &str| {
        let mut req = app
            .client
            .post(app.url("/v1/projects"))
            .header("content-type", ct)
            .body(body.to_owned());
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        async move { ApiResponse::read(req.send().await.expect("send")).await }
    };
    // The cookie works for reads.
    let res = ApiResponse::read(
        app.client
            .get(app.url("/v1/auth/session"))
            .send()
            .await
            .expect("get"),
    )
    .await;
    assert_eq!(res.expect(200)["data"]["user"]["email"], ADMIN_EMAIL);
    let before = table_counts(&app);
    for evil in [
        "https://evil.example",
        "null",
        "http://127.0.0.1",
        "http://localhost:1",
    ] {
        let res = send(Some(evil), "application/json", r#"{"name": "CSRF"}"#).await;
        assert_eq!(res.status, 403, "Origin {evil}: {}", res.text);
        res.assert_error_shape();
        assert_eq!(res.code(), "FORBIDDEN");
    }
    // A cross-site form post cannot send JSON: a non-JSON content type is refused.
    let res = send(None, "text/plain", r#"{"name": "CSRF"}"#).await;
    assert!(
        (400..500).contains(&res.status),
        "text/plain with a cookie: {}",
        res.text
    );
    let res = send(None, "application/x-www-form-urlencoded", "name=CSRF").await;
    assert!(
        (400..500).contains(&res.status),
        "form with a cookie: {}",
        res.text
    );
    assert_eq!(table_counts(&app), before, "nothing was written");
    // DELETE and PATCH are unsafe too.
    let admin = admin_token(&app).await;
    let p = create_project(&app, &admin, "Target").await;
    let target = format!("/v1/projects/{}", p["id"].as_str().expect("id"));
    let res = app
        .client
        .delete(app.url(&target))
        .header("origin", "https://evil.example")
        .send()
        .await
        .expect("delete");
    assert_eq!(res.status(), 403);
    let res = app
        .client
        .patch(app.url(&target))
        .header("origin", "https://evil.example")
        .json(&json!({ "name": "pwned" }))
        .send()
        .await
        .expect("patch");
    assert_eq!(res.status(), 403);
    assert_eq!(
        get_as(&app, &admin, &target).await.body["data"]["name"],
        "Target"
    );
    // Our own origin, or none (non-browser clients): allowed.
    let res = send(
        Some(&app.address),
        "application/json",
        r#"{"name": "Same Origin"}"#,
    )
    .await;
    assert_eq!(res.status, 201, "{}", res.text);
    let res = send(None, "application/json", r#"{"name": "No Origin"}"#).await;
    assert_eq!(res.status, 201, "{}", res.text);
    // Bearer tokens are not ambient credentials: a foreign Origin does not matter.
    let res = plain_client()
        .post(app.url("/v1/projects"))
        .bearer_auth(&admin)
        .header("origin", "https://evil.example")
        .json(&json!({ "name": "Bearer Cross Origin" }))
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), 201);
    // Logout ends the cookie session.
    let res = app
        .client
        .post(app.url("/v1/auth/logout"))
        .header("origin", &app.address)
        .header("content-type", "application/json")
        .send()
        .await
        .expect("logout");
    assert_eq!(res.status(), 204);
    let res = app
        .client
        .get(app.url("/v1/auth/session"))
        .send()
        .await
        .expect("get");
    assert_eq!(res.status(), 401);
}
