//! Challenges (401, 403) are the OAuth flow, not errors: the metrics window API, Prometheus and
//! the CLI count them apart from errors (5xx and the other 4xx).

use std::collections::HashMap;

use serde_json::{Value, json};

use crate::deploy::deployments::{deploy, poll_get, token, world_with};
use crate::fakes::FakeUpstream;
use crate::helpers::TestApp;

/// `name{labels} value` lines of a Prometheus scrape.
async fn scrape(app: &TestApp) -> (String, HashMap<String, f64>) {
    let text = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let samples = text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect();
    (text, samples)
}

#[tokio::test]
async fn challenges_are_counted_apart_from_errors() {
    let (app, admin, _) = world_with("tally", |c| c.metrics.enabled = true).await;
    let up = FakeUpstream::start().await;
    deploy(&app, &admin, "tally", json!({ "upstreamUrl": up.url }))
        .await
        .expect(201);
    let list = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"});
    let reader = token(&app, "tally", "mcp:read");
    // The answers are left unread: a read one would hand the front door's upstream connection
    // back to its pool, where it outlives the fake upstream dropped below (a process that dies
    // takes its connections with it; the fake's stay open).
    let send = async |t: Option<&str>, session: Option<&str>, body: Value| {
        app.mcp("tally")
            .bearer_opt(t)
            .session(session)
            .send_streaming(body)
            .await
            .status()
            .as_u16()
    };
    // Four good requests.
    for _ in 0..4 {
        assert_eq!(send(Some(&reader), None, list.clone()).await, 200);
    }
    // Three challenges: no token, a refused token (401), too little scope (403).
    assert_eq!(send(None, None, list.clone()).await, 401);
    assert_eq!(send(Some("not-a-token"), None, list.clone()).await, 401);
    let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "drop_tables", "arguments": {}}});
    assert_eq!(send(Some(&reader), None, call).await, 403);
    // Two client errors: a body that is not JSON-RPC, a session nobody opened.
    assert_eq!(send(Some(&reader), None, json!({"hello": 1})).await, 400);
    assert_eq!(
        send(Some(&reader), Some("made-up.session"), list.clone()).await,
        404
    );
    // One server error: the upstream cannot be reached. The server is pointed at a port
    // nothing listens on (a stopped fake may still answer on a connection the front door
    // pooled, so stopping it would race).
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    crate::helpers::patch_as(
        &app,
        &admin,
        "/v1/servers/tally",
        json!({ "upstreamUrl": format!("http://127.0.0.1:{closed}/mcp") }),
    )
    .await
    .expect(200);
    assert_eq!(send(Some(&reader), None, list.clone()).await, 502);
    drop(up);

    let m = poll_get(
        &app,
        &admin,
        "/v1/servers/tally/metrics?window=1h",
        "ten requests in the metrics",
        |r| (r.body["data"]["requests"] == 10).then(|| r.body["data"].clone()),
    )
    .await;
    assert_eq!(m["errors"], json!({"4xx": 2, "5xx": 1}), "{m}");
    assert_eq!(m["errorRate"], 0.3, "{m}");
    assert_eq!(m["challenges"], json!({"401": 2, "403": 1}), "{m}");
    assert_eq!(m["challengeRate"], 0.3, "{m}");
    assert_eq!(m["upstream"]["errors"], 1, "{m}");

    let (text, samples) = scrape(&app).await;
    let get = |series: &str| samples.get(series).copied();
    assert_eq!(
        get("ezforge_requests_total{server=\"tally\",class=\"4xx\"}"),
        Some(5.0),
        "the status classes are unchanged: {text}"
    );
    assert_eq!(
        get("ezforge_challenges_total{server=\"tally\",status=\"401\"}"),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        get("ezforge_challenges_total{server=\"tally\",status=\"403\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        get("ezforge_request_errors_total{server=\"tally\",class=\"4xx\"}"),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        get("ezforge_request_errors_total{server=\"tally\",class=\"5xx\"}"),
        Some(1.0),
        "{text}"
    );
}
