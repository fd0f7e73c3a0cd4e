//! The per-method and per-tool scope policy: annotations, overrides, batches, `Mcp-Method` headers.

use super::*;

#[tokio::test]
async fn tool_policy_follows_annotations_and_overrides() {
    let app = TestApp::spawn().await;
    let up = FakeUpstream::start().await;
    app.new_server("weather", &up.url)
        .tool_scopes(json!({"get_weather": "mcp:execute"}))
        .create()
        .await;
    let read = managed_token(&app, "weather", "mcp:read", json!({}));
    let write = managed_token(&app, "weather", "mcp:write", json!({}));
    // Before tools/list the gateway knows nothing: unannotated tools need mcp:execute.
    assert_eq!(
        app.mcp("weather")
            .bearer(&write)
            .send(call("delete_repo"))
            .await
            .status,
        403
    );
    // The gateway learns annotations from the tools/list answer it proxies.
    assert_eq!(
        app.mcp("weather")
            .bearer(&read)
            .send(json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}))
            .await
            .status,
        200
    );
    assert_eq!(
        app.mcp("weather")
            .bearer(&write)
            .send(call("delete_repo"))
            .await
            .status,
        200,
        "destructive -> mcp:write"
    );
    assert_eq!(
        app.mcp("weather")
            .bearer(&read)
            .send(call("delete_repo"))
            .await
            .status,
        403
    );
    // The override beats the read-only annotation.
    assert_eq!(
        app.mcp("weather")
            .bearer(&read)
            .send(call("get_weather"))
            .await
            .status,
        403
    );
    assert_eq!(
        app.mcp("weather")
            .bearer(&write)
            .send(call("mystery"))
            .await
            .status,
        403
    );
    let exec = managed_token(&app, "weather", "mcp:execute", json!({}));
    for tool in ["get_weather", "delete_repo", "mystery"] {
        assert_eq!(
            app.mcp("weather")
                .bearer(&exec)
                .send(call(tool))
                .await
                .status,
            200,
            "{tool}"
        );
    }
}

#[tokio::test]
async fn annotations_learned_from_one_upstream_do_not_carry_over_to_the_next() {
    let app = TestApp::spawn().await;
    let (first, second) = (FakeUpstream::start().await, FakeUpstream::start().await);
    app.new_server("weather", &first.url).create().await;
    let read = managed_token(&app, "weather", "mcp:read", json!({}));
    let call =
        json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"get_weather"}});
    let list = json!({"jsonrpc":"2.0","id":1,"method":"tools/list"});
    assert_eq!(
        app.mcp("weather")
            .bearer(&read)
            .send(list.clone())
            .await
            .status,
        200
    );
    assert_eq!(
        app.mcp("weather")
            .bearer(&read)
            .send(call.clone())
            .await
            .status,
        200,
        "read-only as the first upstream says"
    );
    // Another upstream: what the first said no longer counts.
    let admin = app.admin().await;
    crate::helpers::patch_as(
        &app,
        &admin,
        "/v1/servers/weather",
        json!({ "upstreamUrl": second.url }),
    )
    .await
    .expect(200);
    assert_eq!(
        app.mcp("weather")
            .bearer(&read)
            .send(call.clone())
            .await
            .status,
        403,
        "unknown again until the new upstream lists its tools"
    );
    assert_eq!(
        app.mcp("weather").bearer(&read).send(list).await.status,
        200
    );
    assert_eq!(
        app.mcp("weather").bearer(&read).send(call).await.status,
        200
    );
    assert_eq!(
        second.requests(),
        2,
        "the new upstream answered what was let through"
    );
}

#[tokio::test]
async fn annotations_are_learned_from_sse_answers_too() {
    let app = TestApp::spawn().await;
    let up = FakeUpstream::start().await;
    app.new_server("weather", &up.url).create().await;
    let read = managed_token(&app, "weather", "mcp:read", json!({}));
    assert_eq!(
        app.mcp("weather")
            .bearer(&read)
            .send(call("get_weather"))
            .await
            .status,
        403
    );
    // The fake answers tools/list as an SSE stream (CRLF-framed) when asked to.
    let res = app
        .client
        .post(resource(&app, "weather"))
        .bearer_auth(&read)
        .header("content-type", "application/json")
        .header("x-test-sse", "1")
        .body(json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}).to_string())
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .expect("ct")
            .starts_with("text/event-stream")
    );
    let _ = res.bytes().await.expect("body");
    assert_eq!(
        app.mcp("weather")
            .bearer(&read)
            .send(call("get_weather"))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn batches_need_every_scope() {
    let app = TestApp::spawn().await;
    let up = FakeUpstream::start().await;
    app.new_server("weather", &up.url)
        .tool_scopes(json!({"nuke": "admin:danger"}))
        .create()
        .await;
    let read = managed_token(&app, "weather", "mcp:read", json!({}));
    let batch = json!([
        {"jsonrpc":"2.0","id":1,"method":"tools/list"},
        {"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"nuke"}},
    ]);
    let res = app.mcp("weather").bearer(&read).send(batch.clone()).await;
    assert_eq!(res.status, 403);
    let h = res.www_authenticate();
    assert!(
        h.contains("scope=\"admin:danger mcp:read\""),
        "names everything the batch needs: {h}"
    );
    let both = managed_token(&app, "weather", "mcp:read admin:danger", json!({}));
    let res = app.mcp("weather").bearer(&both).send(batch).await;
    assert_eq!(res.status, 200);
    assert_eq!(res.json().as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn mcp_method_and_name_headers_must_restate_the_body() {
    let app = TestApp::spawn().await;
    let up = FakeUpstream::start().await;
    app.new_server("weather", &up.url).create().await;
    let t = managed_token(&app, "weather", "mcp:read mcp:execute", json!({}));
    let send = |headers: &'static [(&'static str, &'static str)], body: Value| {
        let mut req = app
            .client
            .post(resource(&app, "weather"))
            .bearer_auth(&t)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(body.to_string());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send()
    };
    let get = json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_weather"}});
    for (headers, status) in [
        (
            &[("mcp-method", "tools/call"), ("mcp-name", "get_weather")][..],
            200,
        ),
        (&[("mcp-method", "tools/call")][..], 200),
        // Saying one thing to the upstream while the policy reads another.
        (&[("mcp-method", "tools/list")][..], 400),
        (
            &[("mcp-method", "tools/call"), ("mcp-name", "mystery")][..],
            400,
        ),
        (
            &[("mcp-name", "get_weather"), ("mcp-name", "get_weather")][..],
            400,
        ),
    ] {
        let res = send(headers, get.clone()).await.expect("send");
        assert_eq!(res.status(), status, "{headers:?}");
        if status == 400 {
            let body = json(res).await;
            assert_eq!(body["error"]["code"], -32020, "HeaderMismatch: {body}");
            assert_eq!(body["id"], 1, "{body}");
        }
    }
    // A tools/call that names no tool cannot pick one by header.
    let nameless = json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}});
    let res = send(&[("mcp-name", "delete_repo")], nameless)
        .await
        .expect("send");
    assert_eq!(res.status(), 400);
    let before = up.requests();
    let batch =
        json!([{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"ping"}]);
    let res = send(&[("mcp-method", "ping")], batch).await.expect("send");
    assert_eq!(res.status(), 400, "a batch has no one method");
    assert_eq!(json(res).await["error"]["code"], -32020);
    assert_eq!(
        up.requests(),
        before,
        "nothing refused reached the upstream"
    );
}
