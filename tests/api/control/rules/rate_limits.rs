//! Rate limits and their headers, and `/api/v1` mirroring `/v1`.

use super::*;

fn rate_headers(res: &ApiResponse) -> (u64, u64, i64) {
    let num = |h: &str| -> i64 {
        res.header(h)
            .unwrap_or_else(|| panic!("{h} missing on {} {}", res.status, res.text))
            .parse()
            .unwrap_or_else(|_| panic!("{h} is not a number"))
    };
    (
        num("x-ratelimit-limit") as u64,
        num("x-ratelimit-remaining") as u64,
        num("x-ratelimit-reset"),
    )
}

#[tokio::test]
async fn every_response_carries_rate_limit_headers() {
    let app = TestApp::builder()
        .config(|c| {
            // One slot back per second: two requests in a row always see the count drop.
            c.control.rate_limit.per_minute = 60;
            c.control.rate_limit.burst = 500;
        })
        .spawn()
        .await;
    let (admin, project, _) = basics(&app).await;
    let responses = [
        call(&app, "GET", "/v1/health", None, None).await,
        call(&app, "GET", "/v1/projects", None, None).await,
        get_as(&app, &admin, "/v1/projects").await,
        get_as(&app, &admin, "/v1/projects/nope").await,
        post_as(&app, &admin, "/v1/projects", json!({ "name": "" })).await,
        post_as(&app, &admin, "/v1/projects", json!({ "bogus": 1 })).await,
        call(&app, "PUT", "/v1/projects", Some(&admin), None).await,
        get_as(&app, &admin, "/v1/no/such/route").await,
        delete_as(&app, &admin, &format!("/v1/projects/{project}")).await,
        get_as(&app, &admin, "/api/v1/projects").await,
        call(&app, "GET", "/v1/servers", Some("ezf_live_unknown"), None).await,
    ];
    let t = now();
    for res in &responses {
        let (limit, remaining, reset) = rate_headers(res);
        assert_eq!(limit, 60, "X-RateLimit-Limit is the per-minute limit");
        assert!(remaining <= 500, "{remaining}");
        assert!(
            reset >= t - 5 && reset <= t + 120,
            "reset is epoch seconds soon: {reset} vs {t}"
        );
    }
    // Remaining counts down for one caller.
    let a = rate_headers(&get_as(&app, &admin, "/v1/projects").await).1;
    let b = rate_headers(&get_as(&app, &admin, "/v1/projects").await).1;
    assert!(b < a, "remaining decreases: {a} then {b}");
}

#[tokio::test]
async fn requests_past_the_rate_limit_are_429_per_caller() {
    let app = TestApp::builder()
        .config(|c| {
            c.control.rate_limit.per_minute = 6;
            c.control.rate_limit.burst = 3;
        })
        .spawn()
        .await;
    // Sign in (counts against the address), then spend the session's burst.
    let admin = admin_token(&app).await;
    let mut statuses = Vec::new();
    let mut last = None;
    for _ in 0..4 {
        let res = get_as(&app, &admin, "/v1/projects").await;
        statuses.push(res.status);
        last = Some(res);
    }
    assert_eq!(statuses, [200, 200, 200, 429]);
    let res = last.expect("response");
    res.assert_error_shape();
    assert_eq!(res.code(), "RATE_LIMITED");
    let retry: u64 = res
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("secs");
    assert!((1..=60).contains(&retry), "{retry}");
    let (limit, remaining, _) = rate_headers(&res);
    assert_eq!((limit, remaining), (6, 0));
    // Another caller has its own bucket, and /api/v1 shares the caller's.
    let other = call(&app, "GET", "/v1/health", None, None).await;
    assert_eq!(other.status, 200);
    let mirrored = get_as(&app, &admin, "/api/v1/projects").await;
    assert_eq!(mirrored.status, 429, "the same caller under /api/v1");
}

#[tokio::test]
async fn made_up_credentials_count_against_their_address() {
    let app = TestApp::builder()
        .config(|c| {
            c.control.rate_limit.per_minute = 6;
            c.control.rate_limit.burst = 4;
        })
        .spawn()
        .await;
    // The sign-in is the address's first request; the session it opens has its own bucket.
    let admin = admin_token(&app).await;
    // Each made-up token would have had a fresh bucket: they all count against the address.
    let mut statuses = Vec::new();
    for i in 0..4 {
        let res = get_as(&app, &format!("ezf_live_made_up_{i}"), "/v1/projects").await;
        statuses.push(res.status);
    }
    assert_eq!(statuses, [401, 401, 401, 429]);
    let res = call(&app, "GET", "/v1/health", None, None).await;
    assert_eq!(res.status, 429, "the address's bucket is spent");
    // The verified session is not held back by its address.
    let res = get_as(&app, &admin, "/v1/projects").await;
    assert_eq!(res.status, 200, "{}", res.text);
    // Nor is a key used for the first time from the spent address: it verifies, and then has a
    // bucket of its own.
    let project = create_project(&app, &admin, "limited").await;
    let key = create_key(
        &app,
        &admin,
        project["id"].as_str().expect("id"),
        &["servers:read"],
    )
    .await;
    let res = get_as(&app, &key, "/v1/servers").await;
    assert_eq!(res.status, 200, "{}", res.text);
    let (_, remaining, _) = rate_headers(&res);
    assert_eq!(remaining, 3, "its own bucket");
}

#[tokio::test]
async fn api_v1_mirrors_v1() {
    let app = roomy().await;
    let res = call(
        &app,
        "POST",
        "/api/v1/auth/login",
        None,
        Some(&json!({ "email": ADMIN_EMAIL, "password": ADMIN_PASSWORD })),
    )
    .await;
    let token = res.expect(200)["data"]["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let p = post_as(
        &app,
        &token,
        "/api/v1/projects",
        json!({ "name": "Mirror" }),
    )
    .await;
    let id = p.expect(201)["data"]["id"].as_str().expect("id").to_owned();
    let s = post_as(
        &app,
        &token,
        &format!("/api/v1/projects/{id}/servers"),
        json!({ "name": "Mirror Server" }),
    )
    .await;
    let sid = s.expect(201)["data"]["id"].as_str().expect("id").to_owned();
    for path in [
        format!("/projects/{id}"),
        format!("/servers/{sid}"),
        format!("/servers/{sid}/auth"),
        "/projects".to_owned(),
        "/auth/session".to_owned(),
    ] {
        let a = get_as(&app, &token, &format!("/v1{path}")).await;
        let b = get_as(&app, &token, &format!("/api/v1{path}")).await;
        assert_eq!(a.status, 200, "{path}");
        assert_eq!(a.body, b.body, "{path}: same answer under both prefixes");
    }
    for (method, path, body) in [
        ("GET", "/projects/nope".to_owned(), None),
        ("POST", "/projects".to_owned(), Some(json!({ "name": "" }))),
        ("POST", "/projects".to_owned(), Some(json!({ "bad": 1 }))),
        ("GET", "/users?limit=0".to_owned(), None),
    ] {
        let a = call(
            &app,
            method,
            &format!("/v1{path}"),
            Some(&token),
            body.as_ref(),
        )
        .await;
        let b = call(
            &app,
            method,
            &format!("/api/v1{path}"),
            Some(&token),
            body.as_ref(),
        )
        .await;
        assert_eq!((a.status, &a.body), (b.status, &b.body), "{method} {path}");
    }
    let health = call(&app, "GET", "/api/v1/health", None, None).await;
    assert_eq!(health.expect(200)["status"], "ok");
    let res = delete_as(&app, &token, &format!("/api/v1/servers/{sid}")).await;
    res.expect(204);
    assert_eq!(
        get_as(&app, &token, &format!("/v1/servers/{sid}"))
            .await
            .status,
        404
    );
    let res = call(&app, "POST", "/api/v1/auth/logout", Some(&token), None).await;
    res.expect(204);
    assert_eq!(get_as(&app, &token, "/v1/auth/session").await.status, 401);
}
