//! MCP sessions bound to their subject, and SSE: streaming, departed clients, the old transport.

use super::*;

#[tokio::test]
async fn sse_events_stream_without_buffering() {
    let app = TestApp::spawn().await;
    let up = FakeUpstream::start().await;
    app.new_server("weather", &up.url).create().await;
    let token = managed_token(&app, "weather", "mcp:execute", json!({}));
    // LF-framed events, then CRLF-framed ones: each event is passed on as it comes.
    for method in ["stream", "stream_crlf"] {
        let mut res = app
            .mcp("weather")
            .bearer(&token)
            .send_streaming(json!({"jsonrpc":"2.0","id":5,"method":method}))
            .await;
        assert_eq!(res.status(), 200);
        assert!(
            res.headers()["content-type"]
                .to_str()
                .expect("ct")
                .starts_with("text/event-stream")
        );
        // The first event arrives while the upstream is still holding back the second.
        let first = tokio::time::timeout(Duration::from_secs(10), res.chunk())
            .await
            .unwrap_or_else(|_| panic!("{method}: the first event waited for the rest"))
            .expect("chunk")
            .expect("some bytes");
        assert!(String::from_utf8_lossy(&first).contains("notifications/progress"));
        up.release.notify_one();
        let mut rest = Vec::new();
        while let Some(chunk) = res.chunk().await.expect("chunk") {
            rest.extend_from_slice(&chunk);
        }
        assert!(String::from_utf8_lossy(&rest).contains("\"done\":true"));
    }
}

#[tokio::test]
async fn sessions_are_bound_to_their_subject() {
    let app = TestApp::spawn().await;
    let up = FakeUpstream::start().await;
    app.new_server("weather", &up.url).create().await;
    let alice = managed_token(&app, "weather", "mcp:read", json!({}));
    let mallory = managed_token(&app, "weather", "mcp:read", json!({"sub": "usr_mallory"}));
    let res = app
        .mcp("weather")
        .bearer(&alice)
        .send(json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}))
        .await;
    assert_eq!(res.status, 200);
    let session = res.headers["mcp-session-id"]
        .to_str()
        .expect("sid")
        .to_owned();
    let with_session = |token: &str| {
        app.client
            .post(resource(&app, "weather"))
            .bearer_auth(token)
            .header("mcp-session-id", &session)
            .header("content-type", "application/json")
            .body(json!({"jsonrpc":"2.0","id":2,"method":"tools/list"}).to_string())
            .send()
    };
    assert_ne!(session, "sess-123", "the client holds a sealed id");
    assert_eq!(with_session(&alice).await.expect("req").status(), 200);
    let seen = up.last_headers();
    assert_eq!(
        seen.iter()
            .find(|(k, _)| k == "mcp-session-id")
            .map(|(_, v)| v.as_str()),
        Some("sess-123"),
        "the upstream sees its own id"
    );
    let res = with_session(&mallory).await.expect("req");
    assert_eq!(res.status(), 404);
    // The upstream's bare id, or one made up, is no session of anyone's here.
    for made_up in ["sess-123", "sess-123.AAAAAAAAAAAAAAAAAAAAAA"] {
        let res = app
            .client
            .post(resource(&app, "weather"))
            .bearer_auth(&alice)
            .header("mcp-session-id", made_up)
            .header("content-type", "application/json")
            .body(json!({"jsonrpc":"2.0","id":2,"method":"tools/list"}).to_string())
            .send()
            .await
            .expect("req");
        assert_eq!(res.status(), 404, "{made_up}");
    }
    assert_eq!(
        json(res).await["id"],
        2,
        "a JSON-RPC error with the request's id"
    );
    // Mallory cannot slip alice's session in as a second value, nor send one that is empty.
    let mut fresh = app
        .mcp("weather")
        .bearer(&mallory)
        .send(json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}))
        .await;
    assert_eq!(fresh.status, 200);
    let own = fresh.headers.remove("mcp-session-id").expect("sid");
    let res = app
        .client
        .post(resource(&app, "weather"))
        .bearer_auth(&mallory)
        .header("mcp-session-id", own)
        .header("mcp-session-id", &session)
        .header("content-type", "application/json")
        .body(json!({"jsonrpc":"2.0","id":3,"method":"tools/list"}).to_string())
        .send()
        .await
        .expect("req");
    assert_eq!(res.status(), 400);
    let body = json(res).await;
    assert_eq!(body["id"], 3);
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("Mcp-Session-Id")),
        "{body}"
    );
    let res = app
        .client
        .post(resource(&app, "weather"))
        .bearer_auth(&mallory)
        .header("mcp-session-id", "")
        .header("content-type", "application/json")
        .body(json!({"jsonrpc":"2.0","id":4,"method":"tools/list"}).to_string())
        .send()
        .await
        .expect("req");
    assert_eq!(res.status(), 400);
}

#[tokio::test]
async fn a_session_stays_bound_across_a_restart() {
    let mut app = TestApp::spawn().await;
    let up = FakeUpstream::start().await;
    app.new_server("weather", &up.url).create().await;
    let alice = managed_token(&app, "weather", "mcp:read", json!({}));
    let init = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{}});
    let res = app.mcp("weather").bearer(&alice).send(init).await;
    let session = res.headers["mcp-session-id"]
        .to_str()
        .expect("sid")
        .to_owned();
    let tmp = app.take_tempdir().expect("tmp");
    let dir = app.data_dir.clone();
    app.stop().await;
    let app = TestApp::builder_in(&dir).spawn().await;
    let alice = managed_token(&app, "weather", "mcp:read", json!({}));
    let mallory = managed_token(&app, "weather", "mcp:read", json!({"sub": "usr_mallory"}));
    let with_session = |token: &str| {
        app.client
            .post(resource(&app, "weather"))
            .bearer_auth(token)
            .header("mcp-session-id", &session)
            .header("content-type", "application/json")
            .body(json!({"jsonrpc":"2.0","id":2,"method":"tools/list"}).to_string())
            .send()
    };
    assert_eq!(with_session(&alice).await.expect("req").status(), 200);
    assert_eq!(with_session(&mallory).await.expect("req").status(), 404);
    drop(app);
    drop(tmp);
}

/// A raw upstream that answers one SSE event, then waits for its connection to close and
/// counts that. (An actix upstream would only notice the close when it next wrote.)
async fn raw_sse_upstream() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/mcp", listener.local_addr().expect("addr"));
    let closed = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = closed.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n\r\n";
                if sock.write_all(head.as_bytes()).await.is_err()
                    || sock.write_all(b"event: ping\ndata: {}\n\n").await.is_err()
                {
                    return;
                }
                // Silence; the body ends when the connection does.
                loop {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                }
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            });
        }
    });
    (url, closed)
}

#[tokio::test]
async fn a_departed_sse_client_releases_its_upstream_connection() {
    let app = TestApp::builder()
        .config(|c| c.gateway.sse_keepalive = ezforge::config::Duration(Duration::from_millis(100)))
        .spawn()
        .await;
    let (upstream, closed) = raw_sse_upstream().await;
    app.new_server("weather", &upstream).create().await;
    let token = managed_token(&app, "weather", "mcp:read", json!({}));
    let client = reqwest::Client::new();
    let mut res = client
        .get(resource(&app, "weather"))
        .bearer_auth(&token)
        .header("accept", "text/event-stream")
        .send()
        .await
        .expect("stream");
    assert_eq!(res.status(), 200);
    let first = res.chunk().await.expect("chunk").expect("bytes");
    assert!(String::from_utf8_lossy(&first).contains("event: ping"));
    // While the upstream is quiet, keepalive comments arrive at event boundaries.
    let comment = tokio::time::timeout(Duration::from_secs(10), res.chunk())
        .await
        .expect("a keepalive comes")
        .expect("chunk")
        .expect("bytes");
    assert_eq!(&comment[..], b": keepalive\n\n");
    assert_eq!(closed.load(std::sync::atomic::Ordering::SeqCst), 0);
    drop(res);
    drop(client);
    // The next keepalive fails to write; the gateway drops the stream and closes the upstream
    // connection.
    let mut n = 0;
    for _ in 0..200 {
        n = closed.load(std::sync::atomic::Ordering::SeqCst);
        if n == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        n, 1,
        "the upstream connection was closed after the client left"
    );
}

#[tokio::test]
async fn the_old_sse_transport_works_through_the_front_door() {
    let app = TestApp::spawn().await;
    let up = FakeUpstream::start().await;
    app.new_server("legacy", &up.url).create().await;
    let token = managed_token(&app, "legacy", "mcp:execute", json!({}));
    let res = app
        .client
        .get(format!("{}/sse", resource(&app, "legacy")))
        .bearer_auth(&token)
        .header("accept", "text/event-stream")
        .header("x-test-legacy", "1")
        .send()
        .await
        .expect("sse");
    assert_eq!(res.status(), 200);
    assert_eq!(
        up.last_headers()
            .iter()
            .find(|(k, _)| k == ":path")
            .map(|(_, v)| v.as_str()),
        Some("/mcp/sse")
    );
    let body = res.text().await.expect("body");
    // The endpoint now names the front door's path for this server, not the upstream's, and
    // the session sealed for this caller (see gateway_confusion.rs).
    let endpoint = body
        .lines()
        .find_map(|l| l.strip_prefix("data: /mcp/legacy/messages?sessionId="))
        .unwrap_or_else(|| panic!("{body}"));
    assert!(endpoint.starts_with("abc."), "{body}");
    let res = app
        .client
        .post(format!(
            "{}/messages?sessionId={endpoint}",
            resource(&app, "legacy")
        ))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}).to_string())
        .send()
        .await
        .expect("post");
    assert_eq!(res.status(), 200);
    assert_eq!(
        up.last_headers()
            .iter()
            .find(|(k, _)| k == ":path")
            .map(|(_, v)| v.as_str()),
        Some("/mcp/messages?sessionId=abc"),
        "forwarded under the upstream's base, with the upstream's own id"
    );
}
