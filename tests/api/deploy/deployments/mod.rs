//! Issue 8: deployments, supervised processes, the stdio bridge, env vars, logs, metrics,
//! Prometheus and usage. Upstreams are the fake of `fakes.rs` and the two tiny MCP servers of
//! `tests/fixtures/` (Python standard library only), started by ezforge itself.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::fakes::FakeUpstream;
use crate::helpers::{
    ApiResponse, TestApp, admin_token, contains_bytes, create_key, create_key_data, create_project,
    create_server, db_bytes, delete_as, get_as, patch_as, post_as, put_as,
};

mod logs_metrics;
mod pipeline;
mod processes;
mod restarts;

pub(crate) fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
        .display()
        .to_string()
}

/// The HTTP fixture as a supervised command (it listens on $PORT).
fn http_command(extra: &[&str]) -> Value {
    let mut argv = vec!["python3".to_owned(), fixture("http_mcp.py")];
    argv.extend(extra.iter().map(|s| (*s).to_owned()));
    json!({ "command": argv, "transport": "http" })
}

fn stdio_command(extra: &[&str]) -> Value {
    let mut argv = vec!["python3".to_owned(), fixture("stdio_mcp.py")];
    argv.extend(extra.iter().map(|s| (*s).to_owned()));
    json!({ "command": argv, "transport": "stdio" })
}

/// An app, an admin session, and one server `slug` (no deployment yet).
async fn world(slug: &str) -> (TestApp, String, Value) {
    world_with(slug, |_| {}).await
}

pub(crate) async fn world_with(
    slug: &str,
    f: impl FnOnce(&mut ezforge::Config),
) -> (TestApp, String, Value) {
    let app = TestApp::builder().config(f).spawn().await;
    let admin = admin_token(&app).await;
    let project = create_project(&app, &admin, &format!("p-{slug}")).await;
    let server = create_server(&app, &admin, project["id"].as_str().expect("id"), slug).await;
    (app, admin, server)
}

pub(crate) async fn deploy(app: &TestApp, token: &str, slug: &str, body: Value) -> ApiResponse {
    post_as(app, token, &format!("/v1/servers/{slug}/deployments"), body).await
}

/// A managed access token for `slug`.
pub(crate) fn token(app: &TestApp, slug: &str, scope: &str) -> String {
    crate::gateway::front_door::managed_token(app, slug, scope, json!({}))
}

fn tool_call(name: &str, args: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {"name": name, "arguments": args}})
}

/// Polls `check` until it returns Some (the condition holds), at most 15 s.
pub(crate) async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `GET path` until `done` makes something of the answer (at most 15 s).
pub(crate) async fn poll_get<T>(
    app: &TestApp,
    token: &str,
    path: &str,
    what: &str,
    done: impl Fn(ApiResponse) -> Option<T>,
) -> T {
    let done = &done;
    eventually(
        what,
        move || async move { done(get_as(app, token, path).await) },
    )
    .await
}

/// A deployment that ran its pipeline and failed, saying `why`.
#[track_caller]
pub(crate) fn assert_failed(r: &ApiResponse, why: &str) {
    let d = &r.expect(201)["data"];
    assert_eq!(d["status"], "failed", "{d}");
    let message = d["errorMessage"].as_str().unwrap_or_default();
    assert!(message.contains(why), "{why:?} in {d}");
}

fn versions(list: &Value) -> Vec<i64> {
    list["data"]
        .as_array()
        .expect("array")
        .iter()
        .map(|d| d["version"].as_i64().expect("version"))
        .collect()
}
