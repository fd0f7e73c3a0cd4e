//! Issue 18: what the front door's policy reads is what the upstream reads. Bodies that decoders
//! read differently are refused; those forwarded are decoded here by Python's `json` and by
//! Node's `JSON.parse`, run as programs, which must read the method and tool the policy read.
//! (Go's `encoding/json` is modelled in `src/gateway/jsonrpc/tests.rs`: no Go here.)

use std::process::Stdio;

use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use crate::fakes::FakeUpstream;
use crate::gateway::front_door::managed_token;
use crate::helpers::{ApiResponse, TestApp, json};

async fn post_raw(app: &TestApp, token: &str, body: impl Into<reqwest::Body>) -> ApiResponse {
    app.mcp("weather").bearer(token).send_bytes(body).await
}

/// Runs `program args…` with `input` on stdin; its stdout as JSON, or `None` (said in the
/// test's output) when the program is not installed here.
async fn decode_with(program: &str, args: &[&str], input: &[u8]) -> Option<Value> {
    let child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            println!("{program} is not available here ({e}); its decoding was not checked");
            return None;
        }
    };
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(input).await.expect("write");
    drop(stdin);
    let out = child.wait_with_output().await.expect("wait");
    assert!(
        out.status.success(),
        "{program} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(serde_json::from_slice(&out.stdout).expect("the decoder prints JSON"))
}

/// `[[method, params.name], …]` as Python's `json` reads a body.
const PYTHON: &str = r#"
import json, sys
v = json.load(sys.stdin)
ms = v if isinstance(v, list) else [v]
print(json.dumps([[m.get("method"), (m.get("params") or {}).get("name")] for m in ms]))
"#;

/// The same, as JavaScript's `JSON.parse` reads it.
const NODE: &str = r#"
let s = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', d => s += d).on('end', () => {
  const v = JSON.parse(s);
  const ms = Array.isArray(v) ? v : [v];
  console.log(JSON.stringify(ms.map(m => [m.method ?? null, (m.params || {}).name ?? null])));
});
"#;

#[tokio::test]
async fn bodies_decoders_read_differently_never_reach_the_upstream() {
    let app = TestApp::spawn().await;
    let up = FakeUpstream::start().await;
    app.new_server("weather", &up.url)
        .tool_scopes(json!({"read_thing": "mcp:read", "nuke": "admin:danger"}))
        .create()
        .await;
    let read = managed_token(&app, "weather", "mcp:read", json!({}));
    let ping = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    // The issue's cases, and the other keys and places the policy reads; each also as the
    // second message of a batch.
    let hostile: Vec<(String, &str)> = vec![
        (
            r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"read_thing","Name":"nuke"}}"#.into(),
            "\"Name\"",
        ),
        (
            r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"NAME":"nuke"}}"#.into(),
            "\"NAME\"",
        ),
        (
            r#"{"jsonrpc":"2.0","id":2,"method":"ping","Method":"tools/call","params":{"name":"nuke"}}"#.into(),
            "\"Method\"",
        ),
        (
            r#"{"jsonrpc":"2.0","id":2,"METHOD":"tools/call","params":{"name":"nuke"}}"#.into(),
            "\"METHOD\"",
        ),
        (
            "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\",\"params\":{\"name\":\"read_thing\"},\"param\u{17f}\":{\"name\":\"nuke\"}}".into(),
            "\"param\u{17f}\"",
        ),
        (
            r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"read_thing","name":"nuke"}}"#.into(),
            "\"name\" appears twice",
        ),
        (
            r#"{"jsonrpc":"2.0","id":2,"method":"tools/list","method":"tools/call","params":{"name":"nuke"}}"#.into(),
            "\"method\" appears twice",
        ),
    ];
    for (body, names) in &hostile {
        for body in [body.clone(), format!("[{ping},{body}]")] {
            let before = up.requests();
            let res = post_raw(&app, &read, body.clone()).await;
            assert_eq!(res.status, 400, "{body}");
            let answer = res.json();
            assert_eq!(answer["error"]["code"], -32600, "{body}: {answer}");
            assert_eq!(answer["id"], Value::Null, "{answer}");
            let message = answer["error"]["message"].as_str().unwrap_or("");
            assert!(message.contains(names), "names the key: {message}");
            assert_eq!(up.requests(), before, "{body} reached the upstream");
        }
    }
    // What the policy accepts reaches the upstream byte for byte, and the decoders read the
    // method and tool the policy read (here, read_thing, allowed with mcp:read).
    let accepted: Vec<(&str, Value)> = vec![
        (
            r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"read_thing","arguments":{"Name":"x","name":"y"}}}"#,
            json!([["tools/call", "read_thing"]]),
        ),
        // Escapes; look-alikes that fold to no ASCII letter (Cyrillic а, dotless ı).
        (
            r#"{"jsonrpc":"2.0","id":4,"method":"tools\/call","params":{"n\u0061me":"read_thing","n\u0430me":"nuke","\u0131d":1}}"#,
            json!([["tools/call", "read_thing"]]),
        ),
        (
            r#"[{"jsonrpc":"2.0","id":5,"method":"ping"},{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"read_thing"}}]"#,
            json!([["ping", null], ["tools/call", "read_thing"]]),
        ),
    ];
    for (body, expected) in accepted {
        let res = post_raw(&app, &read, body).await;
        assert_eq!(res.status, 200, "{body}");
        let forwarded = up
            .raw
            .lock()
            .expect("lock")
            .last()
            .cloned()
            .expect("a body");
        assert_eq!(&forwarded[..], body.as_bytes(), "forwarded unchanged");
        if let Some(py) = decode_with("python3", &["-c", PYTHON], &forwarded).await {
            assert_eq!(py, expected, "Python reads {body}");
        }
        if let Some(js) = decode_with("node", &["-e", NODE], &forwarded).await {
            assert_eq!(js, expected, "JavaScript reads {body}");
        }
    }
    // And the refusals were needed: Python and JavaScript read the duplicate's last value,
    // where a first-wins reading (many streaming decoders) would have seen read_thing.
    let dup = br#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"read_thing","name":"nuke"}}"#;
    for (program, args) in [("python3", ["-c", PYTHON]), ("node", ["-e", NODE])] {
        if let Some(v) = decode_with(program, &args, dup).await {
            assert_eq!(v, json!([["tools/call", "nuke"]]), "{program}");
        }
    }
}

#[tokio::test]
async fn a_body_must_be_json_rpc_and_shallow() {
    let app = TestApp::spawn().await;
    let up = FakeUpstream::start().await;
    app.new_server("weather", &up.url).create().await;
    let t = managed_token(&app, "weather", "mcp:execute", json!({}));
    let deep_objects = format!("{}1{}", "{\"a\":".repeat(100_000), "}".repeat(100_000));
    let deep_args = format!(
        r#"{{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{{"name":"x","arguments":{}1{}}}}}"#,
        "[".repeat(100),
        "]".repeat(100)
    );
    let ok = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    let cases: Vec<(String, i64)> = vec![
        (String::new(), -32700),
        ("not json".into(), -32700),
        (r#"{"jsonrpc":"2.0","id":1,"method":"ping""#.into(), -32700),
        (deep_objects, -32600),
        (deep_args.clone(), -32600),
        (format!("[{ok},{deep_args}]"), -32600),
        ("{}".into(), -32600),
        (r#"{"jsonrpc":"2.0","id":1}"#.into(), -32600),
        (r#"{"id":1,"method":"ping"}"#.into(), -32600),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"ping","result":{}}"#.into(),
            -32600,
        ),
        (
            r#"{"jsonrpc":"2.0","id":[1],"method":"ping"}"#.into(),
            -32600,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"x","params":[1,2]}"#.into(),
            -32600,
        ),
        ("[]".into(), -32600),
        (format!("[{ok},42]"), -32600),
        (format!("[{ok},{{}}]"), -32600),
    ];
    for (body, code) in cases {
        let res = post_raw(&app, &t, body.clone()).await;
        assert_eq!(res.status, 400, "{:.80}", body);
        let answer = res.json();
        assert_eq!(answer["error"]["code"], code, "{:.80}: {answer}", body);
        assert_eq!(answer["jsonrpc"], "2.0");
    }
    assert_eq!(up.requests(), 0, "nothing refused reached the upstream");
    // Real tool arguments nest far less than the bound; responses and notifications pass.
    let nested_args = format!(
        r#"{{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{{"name":"x","arguments":{}1{}}}}}"#,
        "[".repeat(40),
        "]".repeat(40)
    );
    for body in [
        nested_args.as_str(),
        r#"{"jsonrpc":"2.0","id":"s1","result":{}}"#,
        r#"{"jsonrpc":"2.0","id":"s2","error":{"code":-1,"message":"declined"}}"#,
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    ] {
        let res = post_raw(&app, &t, body.to_owned()).await;
        assert!((200..300).contains(&res.status), "{body}: {}", res.status);
    }
    assert_eq!(up.requests(), 4);
}

#[tokio::test]
async fn refusals_are_in_the_access_log_with_their_reason() {
    let app = TestApp::spawn().await;
    let up = FakeUpstream::start().await;
    app.new_server("weather", &up.url).create().await;
    let t = managed_token(&app, "weather", "mcp:execute", json!({}));
    post_raw(&app, &t, "nope").await;
    post_raw(
        &app,
        &t,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","Name":"b"}}"#,
    )
    .await;
    let res = app
        .client
        .post(format!("{}/mcp/weather", app.address))
        .bearer_auth(&t)
        .header("mcp-method", "tools/list")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a"}}"#)
        .send()
        .await
        .expect("req");
    assert_eq!(res.status(), 400);
    let res = app
        .client
        .post(format!("{}/mcp/weather", app.address))
        .bearer_auth(&t)
        .header("mcp-session-id", "made-up")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)
        .send()
        .await
        .expect("req");
    assert_eq!(res.status(), 404);
    // What the operator reads: each refusal with its reason, in the server's log.
    let admin = crate::helpers::admin_token(&app).await;
    let logs = crate::helpers::get_as(&app, &admin, "/v1/servers/weather/logs?limit=100").await;
    let mut reasons: Vec<(i64, String)> = logs.expect(200)["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter(|e| e["source"] == "access")
        .map(|e| {
            let status = e["status"].as_i64().unwrap_or_default();
            (status, e["message"].as_str().unwrap_or_default().to_owned())
        })
        .collect();
    reasons.reverse(); // oldest first
    assert_eq!(reasons.len(), 4, "{reasons:?}");
    assert!(reasons[0].1.contains("(invalid_json: "), "{reasons:?}");
    assert!(
        reasons[1].1.contains("(invalid_request: the key \"Name\""),
        "{reasons:?}"
    );
    assert!(reasons[2].1.contains("(header_mismatch: "), "{reasons:?}");
    assert!(reasons[3].1.contains("(unknown_session: "), "{reasons:?}");
    assert!(reasons.iter().all(|(s, _)| (400..500).contains(s)));
}

/// Opens the 2024 transport's stream at `legacy` as `token`; the endpoint it announces.
async fn legacy_endpoint(app: &TestApp, token: &str, param: &str) -> String {
    let res = app
        .client
        .get(format!("{}/mcp/legacy/sse", app.address))
        .bearer_auth(token)
        .header("accept", "text/event-stream")
        .header("x-test-legacy", param)
        .send()
        .await
        .expect("sse");
    assert_eq!(res.status(), 200);
    let body = res.text().await.expect("body");
    body.lines()
        .find_map(|l| l.strip_prefix("data: "))
        .unwrap_or_else(|| panic!("no endpoint event: {body}"))
        .to_owned()
}

/// A managed server `legacy` in front of a fake upstream speaking the 2024 transport, and
/// tokens for two subjects: (app, upstream, alice's, mallory's).
async fn legacy_world() -> (TestApp, FakeUpstream, String, String) {
    let app = TestApp::spawn().await;
    let up = FakeUpstream::start().await;
    app.new_server("legacy", &up.url).create().await;
    let alice = managed_token(&app, "legacy", "mcp:execute", json!({}));
    let mallory = managed_token(&app, "legacy", "mcp:execute", json!({"sub": "usr_mallory"}));
    (app, up, alice, mallory)
}

/// POSTs a `tools/list` (id 5) to `path` on the front door as `token`.
fn post_message(
    app: &TestApp,
    token: &str,
    path: &str,
) -> impl std::future::Future<Output = reqwest::Response> + use<> {
    let req = app
        .client
        .post(format!("{}{path}", app.address))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(r#"{"jsonrpc":"2.0","id":5,"method":"tools/list"}"#);
    async move { req.send().await.expect("post") }
}

/// The path and query of the last request the upstream received.
fn upstream_path(up: &FakeUpstream) -> String {
    up.last_headers()
        .into_iter()
        .find(|(k, _)| k == ":path")
        .map(|(_, v)| v)
        .unwrap_or_default()
}

#[tokio::test]
async fn legacy_sse_sessions_are_bound_to_the_subject_that_opened_them() {
    let (app, up, alice, mallory) = legacy_world().await;
    let post = |token: &str, path: &str| post_message(&app, token, path);
    // The TypeScript SDK's spelling and the Python SDK's.
    for param in ["sessionId", "session_id"] {
        let alices = legacy_endpoint(&app, &alice, param).await;
        let prefix = format!("/mcp/legacy/messages?{param}=");
        let sealed = alices
            .strip_prefix(&prefix)
            .unwrap_or_else(|| panic!("{alices}"));
        assert!(
            sealed.starts_with("abc.") && sealed.len() > "abc.".len() + 16,
            "the upstream's id, sealed: {alices}"
        );
        let res = post(&alice, &alices).await;
        assert_eq!(res.status(), 200, "{alices}");
        assert_eq!(
            upstream_path(&up),
            format!("/mcp/messages?{param}=abc"),
            "the upstream gets its own id"
        );
        let before = up.requests();
        // Another subject cannot post into alice's stream, with her sealed id or the bare one;
        // nor can alice with the bare id or a made-up one.
        for (who, path) in [
            (&mallory, alices.clone()),
            (&mallory, format!("{prefix}abc")),
            (&alice, format!("{prefix}abc")),
            (&alice, format!("{prefix}abc.AAAAAAAAAAAAAAAAAAAAAA")),
        ] {
            let res = post(who, &path).await;
            assert_eq!(res.status(), 404, "{path}");
            let answer = json(res).await;
            assert_eq!(answer["error"]["code"], -32001, "{answer}");
            assert_eq!(answer["id"], 5, "{answer}");
        }
        assert_eq!(
            up.requests(),
            before,
            "no refused message reached the upstream"
        );
        // Mallory's own stream gets her own sealed id, which works for her only.
        let mallorys = legacy_endpoint(&app, &mallory, param).await;
        assert_ne!(mallorys, alices);
        assert_eq!(post(&mallory, &mallorys).await.status(), 200);
        assert_eq!(post(&alice, &mallorys).await.status(), 404);
    }
}

/// Upstreams read query names loosely: Express's `qs` reads `sessionId[]`, `sessionId%5B%5D` and
/// `sessionId[0]` as `sessionId`, PHP reads `session.id` as `session_id`. Every such spelling
/// is a session parameter that must be sealed for the caller; two of them, or a `;` beside one
/// (parsers that split there), are refused as ambiguous. Nothing refused reaches the upstream.
#[tokio::test]
async fn legacy_sse_sessions_are_sealed_however_the_parameter_is_spelt() {
    let (app, up, alice, mallory) = legacy_world().await;
    let post = |token: &str, query: &str| {
        post_message(&app, token, &format!("/mcp/legacy/messages?{query}"))
    };
    let endpoint = legacy_endpoint(&app, &alice, "sessionId").await;
    let sealed = endpoint
        .strip_prefix("/mcp/legacy/messages?sessionId=")
        .unwrap_or_else(|| panic!("{endpoint}"))
        .to_owned();
    // The upstream's own id travels in clear in every sealed id (`{id}.{tag}`).
    let bare = sealed.rsplit_once('.').expect("sealed").0.to_owned();
    assert_eq!(bare, "abc");
    let spellings = [
        "sessionId[]",
        "sessionId%5B%5D",
        "sessionId[0]",
        "session.id",
        "session%2Eid",
        "SessionID",
        "session-id",
        "session[id]",
        "%C5%BFessionId",
    ];
    for spelling in spellings {
        let before = up.requests();
        // Another subject with the bare id, or alice herself with it: not a session of theirs.
        for who in [&mallory, &alice] {
            let res = post(who, &format!("{spelling}={bare}")).await;
            assert_eq!(res.status(), 404, "{spelling}");
            let answer = json(res).await;
            assert_eq!(answer["error"]["code"], -32001, "{answer}");
            assert_eq!(answer["id"], 5, "{answer}");
        }
        // Mallory with alice's sealed id: not hers.
        let res = post(&mallory, &format!("{spelling}={sealed}")).await;
        assert_eq!(res.status(), 404, "{spelling}");
        assert_eq!(
            up.requests(),
            before,
            "{spelling}: nothing reached the upstream"
        );
        // Alice with her sealed id, however spelt: the upstream gets its own id, the name as sent.
        let res = post(&alice, &format!("{spelling}={sealed}")).await;
        assert_eq!(res.status(), 200, "{spelling}");
        assert_eq!(
            upstream_path(&up),
            format!("/mcp/messages?{spelling}={bare}")
        );
    }
    // Her sealed id beside a second session parameter, however spelt, or beside a `;`: refused
    // as ambiguous (a lenient upstream might read either one).
    let before = up.requests();
    let mut ambiguous: Vec<String> = spellings
        .iter()
        .chain(&["sessionId"])
        .flat_map(|s| {
            [
                format!("sessionId={sealed}&{s}={bare}"),
                format!("{s}={bare}&sessionId={sealed}"),
                format!("sessionId={sealed};{s}={bare}"),
            ]
        })
        .collect();
    ambiguous.push(format!("sessionId={sealed}&sessionId={sealed}"));
    ambiguous.push(format!("sessionId={sealed};x=1"));
    ambiguous.push(format!("x=1;sessionId={sealed}"));
    for query in &ambiguous {
        let res = post(&alice, query).await;
        assert_eq!(res.status(), 400, "{query}");
        let answer = json(res).await;
        assert_eq!(answer["error"]["code"], -32600, "{query}: {answer}");
        assert_eq!(answer["id"], 5, "{answer}");
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("more than once") || message.contains("';'"),
            "{query}: {answer}"
        );
    }
    assert_eq!(
        up.requests(),
        before,
        "nothing ambiguous reached the upstream"
    );
    // A query with `;` and no session goes through as it came.
    let res = post(&alice, "a=1;b=2").await;
    assert_eq!(res.status(), 200);
    assert_eq!(upstream_path(&up), "/mcp/messages?a=1;b=2");
}
