//! Limits: body size, origins, rate limits (per server, per address), slow bodies.

use super::*;

#[tokio::test]
async fn bodies_over_the_limit_are_413_and_bad_bodies_400() {
    let app = TestApp::builder()
        .config(|c| c.gateway.body_limit = ezforge::config::ByteSize(1024))
        .spawn()
        .await;
    let up = FakeUpstream::start().await;
    app.new_server("weather", &up.url).create().await;
    let t = managed_token(&app, "weather", "mcp:execute", json!({}));
    let big = json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{"pad":"x".repeat(2000)}}});
    assert_eq!(app.mcp("weather").bearer(&t).send(big).await.status, 413);
    for body in ["not json", "[[[[[[[[[[", "{\"method\": 5}", "42"] {
        let res = app
            .client
            .post(resource(&app, "weather"))
            .bearer_auth(&t)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request");
        assert_eq!(res.status(), 400, "{body}");
    }
    let deep = format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"params\":{}}}",
        "[".repeat(900)
    );
    let res = app
        .client
        .post(resource(&app, "weather"))
        .bearer_auth(&t)
        .body(deep)
        .send()
        .await
        .expect("req");
    assert_eq!(res.status(), 400);
    let invalid_utf8 = vec![b'{', 0xff, 0xfe, b'}'];
    let res = app
        .client
        .post(resource(&app, "weather"))
        .bearer_auth(&t)
        .body(invalid_utf8)
        .send()
        .await
        .expect("req");
    assert_eq!(res.status(), 400);
    assert_eq!(up.requests(), 0);
}

#[tokio::test]
async fn foreign_origins_are_refused_and_preflight_is_answered() {
    let app = TestApp::spawn().await;
    let up = FakeUpstream::start().await;
    app.new_server("weather", &up.url).create().await;
    let t = managed_token(&app, "weather", "mcp:read", json!({}));
    let with_origin = |origin: &str| {
        app.client
            .post(resource(&app, "weather"))
            .bearer_auth(&t)
            .header("origin", origin)
            .header("content-type", "application/json")
            .body(json!({"jsonrpc":"2.0","id":1,"method":"ping"}).to_string())
            .send()
    };
    assert_eq!(
        with_origin("https://evil.example")
            .await
            .expect("req")
            .status(),
        403
    );
    let ok = with_origin(&app.address).await.expect("req");
    assert_eq!(ok.status(), 200);
    assert_eq!(
        ok.headers()["access-control-allow-origin"],
        app.address.as_str()
    );
    let pre = app
        .client
        .request(reqwest::Method::OPTIONS, resource(&app, "weather"))
        .header("origin", "http://localhost:6274")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .expect("preflight");
    assert_eq!(pre.status(), 204);
    let expose = pre.headers()["access-control-expose-headers"]
        .to_str()
        .expect("h")
        .to_owned();
    assert!(expose.contains("WWW-Authenticate"), "{expose}");
}

/// An app whose front door allows `per_minute` with bursts of `burst`, serving `weather`.
async fn weather_limited_to(per_minute: u32, burst: u32) -> (TestApp, FakeUpstream) {
    let app = TestApp::builder()
        .config(move |c| c.gateway.rate_limit = ezforge::config::RateLimit { per_minute, burst })
        .spawn()
        .await;
    let up = FakeUpstream::start().await;
    app.new_server("weather", &up.url).create().await;
    (app, up)
}

#[tokio::test]
async fn rate_limits_answer_429_then_recover() {
    // 120/min refills a token every 500 ms on top of the burst of 3. However slowly this
    // machine answers, no more pass before the first 429 than the burst plus what refilled.
    let (app, _up) = weather_limited_to(120, 3).await;
    let t = managed_token(&app, "weather", "mcp:read", json!({}));
    let ping = json!({"jsonrpc":"2.0","id":3,"method":"ping"});
    let started = std::time::Instant::now();
    let mut passed = 0u128;
    let res = loop {
        let res = app.mcp("weather").bearer(&t).send(ping.clone()).await;
        if res.status != 200 {
            break res;
        }
        passed += 1;
        let refilled = started.elapsed().as_millis() / 500;
        assert!(
            passed <= 3 + refilled,
            "{passed} passed, burst 3 + {refilled} refilled"
        );
    };
    assert!(passed >= 3, "the burst passes: {passed}");
    assert_eq!(res.status, 429);
    assert!(res.headers.contains_key("retry-after"));
    assert_eq!(res.json()["id"], 3);
    // Another subject has its own bucket.
    let other = managed_token(&app, "weather", "mcp:read", json!({"sub": "usr_bob"}));
    assert_eq!(
        app.mcp("weather")
            .bearer(&other)
            .send(ping.clone())
            .await
            .status,
        200
    );
    // Poll until the bucket has a token again (500 ms; each poll a round trip).
    let mut status = 429;
    let polling = std::time::Instant::now();
    while polling.elapsed() < Duration::from_secs(30) {
        status = app
            .mcp("weather")
            .bearer(&t)
            .send(ping.clone())
            .await
            .status;
        if status == 200 {
            break;
        }
    }
    assert_eq!(status, 200, "recovers");
}

#[tokio::test]
async fn requests_without_a_good_token_are_limited_by_address() {
    let (app, up) = weather_limited_to(1, 3).await;
    let ping = json!({"jsonrpc":"2.0","id":3,"method":"ping"});
    let good = managed_token(&app, "weather", "mcp:read", json!({}));
    assert_eq!(
        app.mcp("weather")
            .bearer(&good)
            .send(ping.clone())
            .await
            .status,
        200
    );
    // No token: 401 while the address has room, then 429.
    for _ in 0..3 {
        assert_eq!(app.mcp("weather").send(ping.clone()).await.status, 401);
    }
    let res = app.mcp("weather").send(ping.clone()).await;
    assert_eq!(res.status, 429);
    assert!(res.headers.contains_key("retry-after"));
    // A refused token counts like none.
    let forged = format!(
        "{}x",
        managed_token(&app, "weather", "mcp:read", json!({"sub": "usr_x"}))
    );
    assert_eq!(
        app.mcp("weather")
            .bearer(&forged)
            .send(ping.clone())
            .await
            .status,
        429
    );
    // Good tokens are limited on their own buckets, new or not: others at the same address
    // (behind one proxy) are not held back.
    let fresh = managed_token(&app, "weather", "mcp:read", json!({"sub": "usr_new"}));
    assert_eq!(
        app.mcp("weather")
            .bearer(&fresh)
            .send(ping.clone())
            .await
            .status,
        200
    );
    assert_eq!(
        app.mcp("weather").bearer(&good).send(ping).await.status,
        200
    );
    assert_eq!(up.requests(), 3, "only good tokens' requests went through");
}

#[tokio::test]
async fn a_server_can_have_its_own_rate_limit() {
    let up = FakeUpstream::start().await;
    let upstream = up.url.clone();
    let app = TestApp::builder()
        .config(move |c| {
            c.servers = vec![ezforge::config::ServerDecl {
                project: "ops".into(),
                slug: "tight".into(),
                name: None,
                upstream: Some(upstream),
                auth_mode: None,
                byoa: None,
                tool_scopes: Default::default(),
                rate_limit: Some(ezforge::config::RateLimit {
                    per_minute: 1,
                    burst: 2,
                }),
            }];
        })
        .spawn()
        .await;
    app.new_server("roomy", &up.url).create().await;
    let ping = json!({"jsonrpc":"2.0","id":1,"method":"ping"});
    let tight = managed_token(&app, "tight", "mcp:read", json!({}));
    assert_eq!(
        app.mcp("tight")
            .bearer(&tight)
            .send(ping.clone())
            .await
            .status,
        200
    );
    assert_eq!(
        app.mcp("tight")
            .bearer(&tight)
            .send(ping.clone())
            .await
            .status,
        200
    );
    assert_eq!(
        app.mcp("tight")
            .bearer(&tight)
            .send(ping.clone())
            .await
            .status,
        429,
        "the server's own limit"
    );
    let roomy = managed_token(&app, "roomy", "mcp:read", json!({}));
    for _ in 0..5 {
        assert_eq!(
            app.mcp("roomy")
                .bearer(&roomy)
                .send(ping.clone())
                .await
                .status,
            200,
            "the global limit elsewhere"
        );
    }
    // Through the API: rateLimit on a server.
    let session = crate::helpers::admin_token(&app).await;
    // Zero, and sizes that overflowed the limiter's arithmetic (a panic on every routing-table
    // rebuild in debug builds), are refused.
    for bad in [
        json!({"perMinute": 0, "burst": 1}),
        json!({"perMinute": 1, "burst": 4_294_967_295_u32}),
        json!({"perMinute": 100_000_001, "burst": 1}),
    ] {
        let res = reqwest::Client::new()
            .patch(app.url("/v1/servers/roomy"))
            .bearer_auth(&session)
            .json(&json!({ "rateLimit": bad }))
            .send()
            .await
            .expect("patch");
        assert_eq!(res.status(), 422, "{bad}");
        let body = json(res).await;
        assert!(
            body["error"]["details"].to_string().contains("rateLimit"),
            "{body}"
        );
    }
    let res = reqwest::Client::new()
        .patch(app.url("/v1/servers/roomy"))
        .bearer_auth(&session)
        .json(&json!({"rateLimit": {"perMinute": 1, "burst": 1}}))
        .send()
        .await
        .expect("patch");
    assert_eq!(res.status(), 200);
    assert_eq!(
        json(res).await["data"]["rateLimit"],
        json!({"perMinute": 1, "burst": 1})
    );
    assert_eq!(
        app.mcp("roomy")
            .bearer(&roomy)
            .send(ping.clone())
            .await
            .status,
        200
    );
    assert_eq!(app.mcp("roomy").bearer(&roomy).send(ping).await.status, 429);
}

#[tokio::test]
async fn a_client_trickling_its_body_gets_408() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = TestApp::builder()
        .config(|c| c.gateway.body_timeout = ezforge::config::Duration(Duration::from_millis(300)))
        .spawn()
        .await;
    let up = FakeUpstream::start().await;
    app.new_server("weather", &up.url).create().await;
    let token = managed_token(&app, "weather", "mcp:read", json!({}));
    let mut sock = tokio::net::TcpStream::connect(("127.0.0.1", app.port))
        .await
        .expect("connect");
    let head = format!(
        "POST /mcp/weather HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"jsonrpc\""
    );
    sock.write_all(head.as_bytes()).await.expect("write");
    // ...and nothing more. The gateway gives up on the body and answers.
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    let read = async {
        while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
            match sock.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("an answer, not a stuck worker");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert_eq!(up.requests(), 0);
}
