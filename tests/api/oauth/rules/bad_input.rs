//! BYOA mode, rate limits, and bad input at the token, authorize and registration endpoints.

use super::*;

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
    let reply = ApiResponse::read(
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
    let reply = ApiResponse::read(
        client
            .get(w.app.url("/oauth/token"))
            .send()
            .await
            .expect("get"),
    )
    .await;
    assert_eq!(reply.status, 405, "{}", reply.text);
    assert_eq!(reply.error(), "invalid_request");
    let reply = ApiResponse::read(
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
