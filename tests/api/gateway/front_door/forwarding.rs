//! What is forwarded and how: credentials stripped, identity added, upstream errors, host routing,
//! HTTP/2, the access log, paths, upstream connections.

use super::*;

#[tokio::test]
async fn valid_token_is_proxied_without_credentials_and_with_identity() {
    let app = TestApp::spawn().await;
    let up = FakeUpstream::start().await;
    app.new_server("weather", &up.url).create().await;
    let token = managed_token(&app, "weather", "mcp:read", json!({}));
    let res = app
        .client
        .post(resource(&app, "weather"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .header("cookie", "ezf_session=secret-cookie")
        .header("x-ezforge-subject", "forged")
        .header(
            "x_ezforge_subject",
            "forged, read by CGI-style servers as the same",
        )
        .header("x-forwarded-port", "1")
        .header("mcp_session_id", "an upstream id, unchecked")
        .header("mcp-protocol-version", "2025-06-18")
        .body(json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}).to_string())
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 200);
    let body = json(res).await;
    assert_eq!(body["result"]["tools"][0]["name"], "get_weather");
    let seen = up.last_headers();
    let get = |n: &str| seen.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    assert_eq!(
        get("authorization"),
        None,
        "the client's token is never forwarded"
    );
    assert_eq!(get("cookie"), None, "cookies are never forwarded");
    assert_eq!(
        get("x_ezforge_subject"),
        None,
        "no alias of an identity header"
    );
    assert_eq!(
        get("x-forwarded-port"),
        None,
        "no forwarding header of the client's"
    );
    assert_eq!(get("x-ezforge-subject").as_deref(), Some("usr_alice"));
    assert_eq!(get("x-ezforge-client-id").as_deref(), Some("client_test"));
    assert_eq!(get("x-ezforge-scopes").as_deref(), Some("mcp:read"));
    assert_eq!(get("mcp-protocol-version").as_deref(), Some("2025-06-18"));
    assert_eq!(
        get("host").as_deref(),
        Some(format!("127.0.0.1:{}", up.port).as_str()),
        "the upstream's own Host"
    );
    assert_eq!(get("x-forwarded-proto").as_deref(), Some("http"));
    assert!(get("x-forwarded-for").is_some());
}

#[tokio::test]
async fn upstream_down_is_502_and_slow_is_504_with_json_rpc_bodies() {
    let app = TestApp::builder()
        .config(|c| {
            c.gateway.upstream_timeout = ezforge::config::Duration(Duration::from_millis(500));
            c.gateway.upstream_connect_timeout =
                ezforge::config::Duration(Duration::from_millis(300));
        })
        .spawn()
        .await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let dead = format!(
        "http://127.0.0.1:{}/mcp",
        closed.local_addr().expect("addr").port()
    );
    drop(closed);
    app.new_server("down", &dead)
        .tool_scopes(json!({"hang": "mcp:read"}))
        .create()
        .await;
    let up = FakeUpstream::start().await;
    app.new_server("slow", &up.url)
        .tool_scopes(json!({"hang": "mcp:read"}))
        .create()
        .await;
    let t = managed_token(&app, "down", "mcp:read", json!({}));
    let res = app
        .mcp("down")
        .bearer(&t)
        .send(json!({"jsonrpc":"2.0","id":"abc","method":"tools/list"}))
        .await;
    assert_eq!(res.status, 502);
    let body = res.json();
    assert_eq!(body["id"], "abc");
    assert!(
        !body.to_string().contains("127.0.0.1"),
        "names no internal host: {body}"
    );
    let t = managed_token(&app, "slow", "mcp:execute", json!({}));
    let res = app
        .mcp("slow")
        .bearer(&t)
        .send(json!({"jsonrpc":"2.0","id":9,"method":"hang"}))
        .await;
    assert_eq!(res.status, 504);
    assert_eq!(res.json()["id"], 9);

    // An upstream that takes the TCP connection but never completes the TLS handshake: the
    // connect timeout runs out, which is "slow" (504), not "down".
    let mute = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let mute_url = format!("https://{}/mcp", mute.local_addr().expect("addr"));
    let held = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = mute.accept().await {
            held.push(sock);
        }
    });
    app.new_server("mute", &mute_url).create().await;
    let t = managed_token(&app, "mute", "mcp:read", json!({}));
    let res = app
        .mcp("mute")
        .bearer(&t)
        .send(json!({"jsonrpc":"2.0","id":3,"method":"tools/list"}))
        .await;
    assert_eq!(res.status, 504);
    assert_eq!(res.json()["id"], 3);
    held.abort();
}

#[tokio::test]
async fn host_routing_serves_root_metadata_and_proxies_sub_paths() {
    let app = TestApp::builder()
        .config(|c| {
            c.gateway.routing = ezforge::config::Routing::Host;
            c.gateway.server_domain = Some("mcp.example.test".into());
        })
        .spawn()
        .await;
    let up = FakeUpstream::start().await;
    app.new_server("weather", &up.url).create().await;
    let host = "weather.mcp.example.test";
    let res = app
        .client
        .get(app.url("/.well-known/oauth-protected-resource"))
        .header("host", host)
        .send()
        .await
        .expect("metadata");
    assert_eq!(res.status(), 200);
    let doc = json(res).await;
    assert_eq!(doc["resource"], "https://weather.mcp.example.test");
    // A browser client's preflight for it is answered too (it was proxied, and refused 401).
    let res = app
        .client
        .request(
            reqwest::Method::OPTIONS,
            app.url("/.well-known/oauth-protected-resource"),
        )
        .header("host", host)
        .header("origin", "https://app.example")
        .header("access-control-request-method", "GET")
        .send()
        .await
        .expect("preflight");
    assert_eq!(res.status(), 204);
    assert_eq!(
        res.headers()
            .get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok()),
        Some("*")
    );
    // The control API is not reachable on a server's host.
    let res = app
        .client
        .get(app.url("/v1/health"))
        .header("host", host)
        .send()
        .await
        .expect("req");
    assert_eq!(res.status(), 401, "proxied path, so a token is required");
    let now = ezforge::domain::now();
    let keys = app.state.keys.current();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some(keys.active.kid.clone());
    header.typ = Some("at+jwt".into());
    let claims = json!({"iss": app.address, "sub": "u", "aud": "https://weather.mcp.example.test", "scope": "mcp:read", "exp": now + 600});
    let token = jsonwebtoken::encode(&header, &claims, &keys.active.encoding).expect("sign");
    let res = app
        .client
        .post(app.url("/messages"))
        .header("host", host)
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}).to_string())
        .send()
        .await
        .expect("proxied");
    assert_eq!(res.status(), 200);
    // The main host still serves the control API.
    assert_eq!(app.get("/v1/health").await.status(), 200);
}

#[tokio::test]
async fn host_routing_works_over_http2() {
    // Over HTTP/2 the host comes as `:authority`, with no Host header.
    let host = "weather.mcp.example.test";
    let app = TestApp::builder()
        .config(|c| {
            c.gateway.routing = ezforge::config::Routing::Host;
            c.gateway.server_domain = Some("mcp.example.test".into());
            c.tls.mode = ezforge::config::TlsMode::SelfSigned;
            c.tls.names = vec![host.into()];
        })
        .spawn()
        .await;
    let up = FakeUpstream::start().await;
    app.new_server("weather", &up.url).create().await;
    let pem = std::fs::read(app.data_dir.join("tls/cert.pem")).expect("cert");
    let h2 = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("pem"))
        .resolve(host, ([127, 0, 0, 1], app.port).into())
        .build()
        .expect("client");
    let res = h2
        .get(format!(
            "https://{host}:{}/.well-known/oauth-protected-resource",
            app.port
        ))
        .send()
        .await
        .expect("metadata over HTTP/2");
    assert_eq!(res.version(), reqwest::Version::HTTP_2);
    assert_eq!(res.status(), 200);
    assert_eq!(
        json(res).await["resource"],
        "https://weather.mcp.example.test"
    );
    let now = ezforge::domain::now();
    let keys = app.state.keys.current();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some(keys.active.kid.clone());
    header.typ = Some("at+jwt".into());
    let claims = json!({"iss": app.address, "sub": "u", "aud": "https://weather.mcp.example.test", "scope": "mcp:read", "exp": now + 600});
    let token = jsonwebtoken::encode(&header, &claims, &keys.active.encoding).expect("sign");
    let res = h2
        .post(format!("https://{host}:{}/messages", app.port))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}).to_string())
        .send()
        .await
        .expect("proxied over HTTP/2");
    assert_eq!(res.status(), 200);
    let seen = up.last_headers();
    let forwarded = seen.iter().find(|(k, _)| k == "x-forwarded-host");
    assert_eq!(
        forwarded.map(|(_, v)| v.as_str()),
        Some(format!("{host}:{}", app.port).as_str())
    );
}

#[tokio::test]
async fn the_access_log_records_requests_in_batches() {
    let mut app = TestApp::spawn().await;
    let up = FakeUpstream::start().await;
    app.new_server("weather", &up.url).create().await;
    let t = managed_token(&app, "weather", "mcp:read", json!({}));
    assert_eq!(
        app.mcp("weather")
            .bearer(&t)
            .send(json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}))
            .await
            .status,
        200
    );
    assert_eq!(
        app.mcp("weather")
            .bearer("bad")
            .send(json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}))
            .await
            .status,
        401
    );
    let tmp = app.take_tempdir().expect("tmp");
    let db = app.db_path();
    app.stop().await;
    let conn = rusqlite::Connection::open(db).expect("open");
    let rows: Vec<(String, Option<String>, i64, Option<String>)> = conn
        .prepare("SELECT method, subject, status, auth_failure FROM request_log ORDER BY id")
        .expect("prepare")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(
        rows[0],
        ("tools/list".into(), Some("usr_alice".into()), 200, None)
    );
    assert_eq!(rows[1].2, 401);
    assert_eq!(rows[1].3.as_deref(), Some("malformed"));
    drop(tmp);
}

#[tokio::test]
async fn paths_climbing_above_the_upstreams_base_are_refused() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = TestApp::spawn().await;
    let up = FakeUpstream::start().await;
    app.new_server("weather", &up.url).create().await;
    let token = managed_token(&app, "weather", "mcp:read", json!({}));
    // Sent raw: HTTP clients resolve dot segments before sending.
    for path in [
        "/mcp/weather/../../admin",
        "/mcp/weather/%2E%2e/admin",
        "/mcp/weather/a%2Fb",
    ] {
        let mut sock = tokio::net::TcpStream::connect(("127.0.0.1", app.port))
            .await
            .expect("connect");
        let body = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
        let req = format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        sock.write_all(req.as_bytes()).await.expect("write");
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), sock.read_to_end(&mut answer))
            .await
            .expect("an answer")
            .expect("read");
        let text = String::from_utf8_lossy(&answer);
        assert!(text.starts_with("HTTP/1.1 400"), "{path}: {text}");
        assert!(text.contains("dot segments"), "{path}: {text}");
    }
    assert_eq!(up.requests(), 0, "nothing reached the upstream");
}

/// A raw keep-alive upstream counting the connections it accepts. The tool a request calls
/// picks the answer: `plain` (Content-Length), `chunked`, or `close` (answers, then closes).
async fn keepalive_upstream() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/mcp", listener.local_addr().expect("addr"));
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut buf = vec![0u8; 16 * 1024];
                // Connections that carry a request (ezforge's reachability probe opens one and
                // sends nothing).
                let mut counted = false;
                loop {
                    // One request: the head, then Content-Length bytes of body.
                    let head_end = loop {
                        if let Some(i) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        match sock.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => seen.extend_from_slice(&buf[..n]),
                        }
                    };
                    if !counted {
                        counted = true;
                        count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                    let head = String::from_utf8_lossy(&seen[..head_end]).to_ascii_lowercase();
                    let length: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    while seen.len() < head_end + length {
                        match sock.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => seen.extend_from_slice(&buf[..n]),
                        }
                    }
                    let body: Vec<u8> = seen.drain(..head_end + length).skip(head_end).collect();
                    let body = String::from_utf8_lossy(&body).into_owned();
                    let answer = r#"{"jsonrpc":"2.0","id":7,"result":{"content":[]}}"#;
                    let (reply, close) = if body.contains("\"chunked\"") {
                        let (a, b) = answer.split_at(20);
                        (
                            format!(
                                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
                                a.len(),
                                b.len()
                            ),
                            false,
                        )
                    } else {
                        let close = body.contains("\"close\"");
                        (
                            format!(
                                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{}\r\n{answer}",
                                answer.len(),
                                if close { "connection: close\r\n" } else { "" }
                            ),
                            close,
                        )
                    };
                    if sock.write_all(reply.as_bytes()).await.is_err() || close {
                        return;
                    }
                }
            });
        }
    });
    (url, accepted)
}

#[tokio::test]
async fn upstream_connections_are_reused_and_closed_ones_replaced() {
    let app = TestApp::spawn().await;
    let (upstream, accepted) = keepalive_upstream().await;
    app.new_server("pool", &upstream).create().await;
    let token = managed_token(&app, "pool", "mcp:read mcp:write mcp:execute", json!({}));
    let answer = json!({"jsonrpc":"2.0","id":7,"result":{"content":[]}});
    let accepted_now = || accepted.load(std::sync::atomic::Ordering::SeqCst);
    for tool in ["plain", "plain", "chunked", "plain", "chunked"] {
        let res = app.mcp("pool").bearer(&token).send(call(tool)).await;
        assert_eq!(res.status, 200, "{tool}");
        assert_eq!(res.json(), answer, "{tool}");
    }
    assert_eq!(
        accepted_now(),
        1,
        "one keep-alive connection served them all"
    );

    // An upstream closing the connection after its answer: the next request gets a new one.
    for tool in ["close", "plain", "close", "close", "plain"] {
        let res = app.mcp("pool").bearer(&token).send(call(tool)).await;
        assert_eq!(res.status, 200, "{tool}");
        assert_eq!(res.json(), answer, "{tool}");
    }
    assert_eq!(accepted_now(), 4);
}
