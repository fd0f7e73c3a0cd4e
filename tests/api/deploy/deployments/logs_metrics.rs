//! Logs, access-log rows, metrics and Prometheus of deployed servers.

use super::*;

/// 5 tools/list, 2 tools/call get_weather, 3 refused tokens, through a fake upstream.
async fn burst(app: &TestApp, slug: &str) {
    let t = token(app, slug, "mcp:read mcp:write mcp:execute");
    for _ in 0..5 {
        let r = app
            .mcp(slug)
            .bearer(&t)
            .send(json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}))
            .await;
        assert_eq!(r.status, 200);
    }
    for _ in 0..2 {
        let r = app
            .mcp(slug)
            .bearer(&t)
            .send(tool_call("get_weather", json!({})))
            .await;
        assert_eq!(r.status, 200);
    }
    for _ in 0..3 {
        let r = app
            .mcp(slug)
            .bearer("not-a-token")
            .send(json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}))
            .await;
        assert_eq!(r.status, 401);
    }
}

#[tokio::test]
async fn access_log_rows_are_bounded_and_carry_the_answered_request_id() {
    let (app, admin, _) = world("bounded").await;
    let up = FakeUpstream::start().await;
    deploy(&app, &admin, "bounded", json!({ "upstreamUrl": up.url }))
        .await
        .expect(201);
    // No token, a 100 KiB method name and an X-Request-Id too long to be used.
    let long_method = "m".repeat(100 * 1024);
    let res = app
        .client
        .post(format!("{}/mcp/bounded", app.address))
        .header("content-type", "application/json")
        .header("x-request-id", "r".repeat(300))
        .body(json!({"jsonrpc":"2.0","id":1,"method": long_method}).to_string())
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 401);
    let answered = res.headers()["x-request-id"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert_eq!(answered.len(), 24, "a new id: {answered}");
    let entry = poll_get(
        &app,
        &admin,
        "/v1/servers/bounded/logs?level=warn",
        "the refused request in the log",
        |r| r.body["data"].as_array().and_then(|a| a.first().cloned()),
    )
    .await;
    assert_eq!(entry["status"], 401);
    assert_eq!(entry["requestId"], answered.as_str());
    let method = entry["method"].as_str().expect("method");
    assert_eq!(method, "m".repeat(128), "cut to 128 bytes");
}

#[tokio::test]
async fn metrics_and_logs_describe_a_known_burst() {
    let (app, admin, server) = world("burst").await;
    let up = FakeUpstream::start().await;
    deploy(&app, &admin, "burst", json!({ "upstreamUrl": up.url }))
        .await
        .expect(201);
    burst(&app, "burst").await;

    let m = poll_get(
        &app,
        &admin,
        "/v1/servers/burst/metrics?window=1h",
        "ten requests in the metrics",
        |m| (m.body["data"]["requests"] == 10).then_some(m.body["data"].clone()),
    )
    .await;
    assert_eq!(m["window"], "1h");
    // The three refused tokens are challenges, not errors.
    assert_eq!(m["errors"], json!({"4xx": 0, "5xx": 0}));
    assert_eq!(m["errorRate"], 0.0);
    assert_eq!(m["challenges"], json!({"401": 3, "403": 0}));
    assert_eq!(m["challengeRate"], 0.3);
    assert_eq!(m["methods"]["tools/list"], 8);
    assert_eq!(m["methods"]["tools/call"], 2);
    assert_eq!(m["tools"], json!({"get_weather": 2}));
    assert_eq!(
        m["authFailures"]
            .as_object()
            .map(|o| o.values().filter_map(Value::as_i64).sum::<i64>()),
        Some(3)
    );
    for p in ["p50", "p95", "p99"] {
        assert!(m["latencyMs"][p].as_f64().is_some_and(|v| v >= 0.0), "{m}");
    }
    assert!(m["latencyMs"]["p50"].as_f64() <= m["latencyMs"]["p99"].as_f64());
    assert_eq!(m["upstream"]["status"], "healthy");
    for w in ["24h", "7d"] {
        let r = get_as(
            &app,
            &admin,
            &format!("/v1/servers/burst/metrics?window={w}"),
        )
        .await;
        assert_eq!(r.expect(200)["data"]["requests"], 10);
    }
    assert_eq!(
        get_as(&app, &admin, "/v1/servers/burst/metrics?window=2h")
            .await
            .status,
        400
    );

    // Logs: newest first, filtered by level and text, paged by cursor.
    let warn = get_as(&app, &admin, "/v1/servers/burst/logs?level=warn").await;
    let warn = warn.expect(200)["data"].as_array().expect("array").clone();
    assert_eq!(warn.len(), 3, "{warn:?}");
    assert!(
        warn.iter()
            .all(|e| e["status"] == 401 && e["source"] == "access")
    );
    let weather = get_as(&app, &admin, "/v1/servers/burst/logs?search=get_weather").await;
    assert_eq!(
        weather.expect(200)["data"].as_array().map(Vec::len),
        Some(2)
    );
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/servers/burst/logs?limit=4&before={c}"),
            None => "/v1/servers/burst/logs?limit=4".into(),
        };
        let page = get_as(&app, &admin, &path).await;
        let page = page.expect(200).clone();
        seen.extend(page["data"].as_array().expect("array").iter().cloned());
        match page["meta"]["cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let access: Vec<&Value> = seen.iter().filter(|e| e["source"] == "access").collect();
    assert_eq!(access.len(), 10);
    let times: Vec<&str> = seen
        .iter()
        .map(|e| e["timestamp"].as_str().expect("ts"))
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {times:?}"
    );
    let ids: std::collections::HashSet<&str> =
        seen.iter().map(|e| e["id"].as_str().expect("id")).collect();
    assert_eq!(ids.len(), seen.len(), "no entry twice across pages");
    assert!(
        seen.iter().any(|e| e["source"] == "deploy"),
        "deployment events are logged"
    );
    for bad in [
        "limit=0",
        "limit=201",
        "level=loud",
        "before=%%%",
        "before=bm90LWEtY3Vyc29y",
        "search=",
    ] {
        let r = get_as(&app, &admin, &format!("/v1/servers/burst/logs?{bad}")).await;
        if bad == "search=" {
            assert_eq!(r.status, 200);
        } else {
            assert_eq!(r.status, 400, "{bad}: {}", r.text);
        }
    }

    // Scopes: logs with logs:read or servers:read; metrics with metrics:read.
    let project = server["projectId"].as_str().expect("project");
    let logs_key = create_key(&app, &admin, project, &["logs:read"]).await;
    let servers_key = create_key(&app, &admin, project, &["servers:read"]).await;
    let metrics_key = create_key(&app, &admin, project, &["metrics:read"]).await;
    for (key, path, want) in [
        (&logs_key, "/v1/servers/burst/logs", 200),
        (&servers_key, "/v1/servers/burst/logs", 200),
        (&metrics_key, "/v1/servers/burst/logs", 403),
        (&metrics_key, "/v1/servers/burst/metrics", 200),
        (&logs_key, "/v1/servers/burst/metrics", 403),
        (&servers_key, "/v1/servers/burst/logs/stream", 403),
    ] {
        assert_eq!(get_as(&app, key, path).await.status, want, "{path}");
    }

    // Usage: this month's requests, counted once each.
    let billing_key = create_key(&app, &admin, project, &["billing:read"]).await;
    let b = get_as(&app, &billing_key, "/v1/billing").await;
    let b = b.expect(200)["data"].clone();
    assert_eq!(b["plan"], "self_hosted");
    assert_eq!(b["usage"]["requestCount"], 10, "{b}");
    assert!(b["usage"]["bandwidthBytes"].as_i64() > Some(0), "{b}");
    assert!(b["limits"]["requestsPerMonth"].is_null());
    assert_eq!(get_as(&app, &logs_key, "/v1/billing").await.status, 403);
}

#[tokio::test]
async fn the_log_stream_tails_new_entries() {
    let (app, admin, _) = world("tail").await;
    let up = FakeUpstream::start().await;
    deploy(&app, &admin, "tail", json!({ "upstreamUrl": up.url }))
        .await
        .expect(201);
    let res = crate::helpers::plain_client()
        .get(app.url("/v1/servers/tail/logs/stream?search=tools/list"))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("stream");
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .expect("ct")
            .starts_with("text/event-stream")
    );
    let mut body = res.bytes_stream();
    let opening = body.next().await.expect("chunk").expect("bytes");
    assert!(
        String::from_utf8_lossy(&opening).starts_with(':'),
        "opening comment"
    );
    // Now the stream is subscribed: a request shows up as an event.
    let t = token(&app, "tail", "mcp:read");
    let ping = app
        .mcp("tail")
        .bearer(&t)
        .send(json!({"jsonrpc":"2.0","id":1,"method":"ping"}))
        .await;
    assert_eq!(ping.status, 200);
    let list = app
        .mcp("tail")
        .bearer(&t)
        .send(json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}))
        .await;
    assert_eq!(list.status, 200);
    let mut text = String::new();
    while !text.contains("\n\n") || !text.contains("event: log") {
        let chunk = tokio::time::timeout(Duration::from_secs(10), body.next())
            .await
            .expect("an event within 10 s")
            .expect("chunk")
            .expect("bytes");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    let data = text
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .expect("data line");
    let entry: Value = serde_json::from_str(data).expect("entry json");
    assert_eq!(
        entry["method"], "tools/list",
        "the ping was filtered out: {entry}"
    );
    assert_eq!(entry["status"], 200);
}

/// Opens `/logs/stream` for `slug` as `token` and reads its opening comment.
async fn open_tail(
    app: &TestApp,
    token: &str,
    slug: &str,
) -> impl futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin {
    let res = crate::helpers::plain_client()
        .get(app.url(&format!("/v1/servers/{slug}/logs/stream")))
        .bearer_auth(token)
        .send()
        .await
        .expect("stream");
    assert_eq!(res.status(), 200);
    let mut body = res.bytes_stream();
    let opening = body.next().await.expect("chunk").expect("bytes");
    assert!(String::from_utf8_lossy(&opening).starts_with(':'));
    body
}

/// Reads until the stream ends (within 10 s).
async fn ends(mut body: impl futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(_)) = body.next().await {}
    })
    .await
    .expect("the stream ends");
}

#[tokio::test]
async fn a_log_stream_ends_when_its_caller_loses_access() {
    let (app, admin, server) = world("revoked").await;
    let project = server["projectId"].as_str().expect("project");
    let up = FakeUpstream::start().await;
    deploy(&app, &admin, "revoked", json!({ "upstreamUrl": up.url }))
        .await
        .expect(201);

    // A revoked API key.
    let key = create_key_data(&app, &admin, project, &["logs:read"]).await;
    let value = key["key"].as_str().expect("key");
    let tail = open_tail(&app, value, "revoked").await;
    let other = open_tail(&app, &admin, "revoked").await;
    let r = delete_as(
        &app,
        &admin,
        &format!("/v1/keys/{}", key["id"].as_str().expect("id")),
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.text);
    ends(tail).await;

    // A session that signs out.
    let session = admin_token(&app).await;
    let tail = open_tail(&app, &session, "revoked").await;
    let r = post_as(&app, &session, "/v1/auth/logout", json!({})).await;
    assert!(r.status < 300, "{}", r.text);
    ends(tail).await;

    // Meanwhile the admin's stream, checked again each time, goes on.
    let mut other = other;
    let t = token(&app, "revoked", "mcp:read");
    let list = json!({"jsonrpc":"2.0","id":1,"method":"tools/list"});
    assert_eq!(app.mcp("revoked").bearer(&t).send(list).await.status, 200);
    let mut text = String::new();
    while !text.contains("event: log") {
        let chunk = tokio::time::timeout(Duration::from_secs(10), other.next())
            .await
            .expect("an event within 10 s")
            .expect("chunk")
            .expect("bytes");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }

    // The server is deleted.
    let r = delete_as(&app, &admin, "/v1/servers/revoked").await;
    assert_eq!(r.status, 204, "{}", r.text);
    ends(other).await;
}

#[tokio::test]
async fn prometheus_metrics_are_off_by_default_and_parse_when_on() {
    let app = TestApp::spawn().await;
    assert_eq!(app.get("/metrics").await.status(), 404);
    drop(app);

    let (app, admin, _) = world_with("prom", |c| {
        c.metrics.enabled = true;
        c.metrics.bearer_token = Some(ezforge::domain::Secret::new("scrape-token"));
    })
    .await;
    let up = FakeUpstream::start().await;
    deploy(&app, &admin, "prom", json!({ "upstreamUrl": up.url }))
        .await
        .expect(201);
    burst(&app, "prom").await;
    assert_eq!(app.get("/metrics").await.status(), 401);
    let res = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth("scrape-token")
        .send()
        .await
        .expect("metrics");
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .expect("ct")
            .starts_with("text/plain; version=0.0.4")
    );
    let text = res.text().await.expect("text");
    let mut samples = std::collections::HashMap::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix('#') {
            assert!(
                rest.starts_with(" HELP ") || rest.starts_with(" TYPE "),
                "comment: {line}"
            );
            continue;
        }
        // name{labels} value
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("sample: {line}"));
        let name_end = series.find('{').unwrap_or(series.len());
        let name = &series[..name_end];
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "metric name: {line}"
        );
        if name_end < series.len() {
            assert!(series.ends_with('}'), "labels: {line}");
        }
        let v: f64 = value.parse().unwrap_or_else(|_| panic!("value: {line}"));
        samples.insert(series.to_owned(), v);
    }
    assert_eq!(
        samples.get("ezforge_requests_total{server=\"prom\",class=\"2xx\"}"),
        Some(&7.0),
        "{text}"
    );
    assert_eq!(
        samples.get("ezforge_requests_total{server=\"prom\",class=\"4xx\"}"),
        Some(&3.0)
    );
    assert_eq!(
        samples.get("ezforge_challenges_total{server=\"prom\",status=\"401\"}"),
        Some(&3.0)
    );
    assert_eq!(
        samples.get("ezforge_request_errors_total{server=\"prom\",class=\"4xx\"}"),
        None,
        "challenges are not errors: {text}"
    );
    assert_eq!(
        samples.get("ezforge_request_duration_seconds_count{server=\"prom\"}"),
        Some(&10.0)
    );
    assert_eq!(
        samples.get("ezforge_request_duration_seconds_bucket{server=\"prom\",le=\"+Inf\"}"),
        Some(&10.0)
    );
    for name in [
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
        "process_start_time_seconds",
    ] {
        assert!(
            samples.get(name).is_some_and(|v| *v > 0.0),
            "{name} in {text}"
        );
    }
}

#[tokio::test]
async fn log_retention_drops_old_entries_and_keeps_the_newest() {
    let app = TestApp::spawn().await;
    let now = ezforge::domain::now_ms();
    let rows: Vec<ezforge::store::server_log::ServerLogRow> = (0..10)
        .map(|i| ezforge::store::server_log::ServerLogRow {
            at_ms: if i < 3 {
                now - 10 * 86_400_000
            } else {
                now - 1000 + i
            },
            server_id: "srv_x".into(),
            level: "info",
            source: "process",
            message: format!("line {i}"),
        })
        .collect();
    let left = app
        .state
        .store
        .run(move |c| {
            ezforge::store::server_log::insert_many(c, &rows)?;
            // Older than 7 days go; then at most 5 stay.
            let removed = ezforge::store::server_log::retain(c, now - 7 * 86_400_000, 5)?;
            assert_eq!(removed, 5);
            let kept: Vec<String> = c
                .prepare("SELECT message FROM server_log ORDER BY id")?
                .query_map([], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            Ok::<_, ezforge::store::StoreError>(kept)
        })
        .await
        .expect("store");
    assert_eq!(left, ["line 5", "line 6", "line 7", "line 8", "line 9"]);
}
