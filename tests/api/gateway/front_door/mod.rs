//! Issue 5: the MCP front door.

use std::time::Duration;

use serde_json::{Value, json};

use crate::fakes::{FakeUpstream, SigningKey, TestIssuer};
use crate::helpers::{TestApp, json};
use ezforge::config::AuthMode;

mod byoa;
mod challenges;
mod forwarding;
mod limits;
mod policy;
mod sessions_sse;

/// A BYOA server row written straight to the store, as a version before the control API's
/// checks could have left it (e.g. naming our own issuer, which the API now refuses), and the
/// routing table reloaded. Every other server in these tests is made through the API
/// (`app.new_server(…)`).
pub(crate) async fn stored_byoa_server(
    app: &TestApp,
    slug: &str,
    upstream: &str,
    byoa: &ezforge::config::ByoaConfig,
) {
    let now = ezforge::domain::now();
    let project = ezforge::store::projects::ProjectRow {
        id: ezforge::domain::new_id("proj_"),
        name: format!("p-{slug}"),
        slug: format!("p-{slug}"),
        managed_by: "api".into(),
        created_at: now,
        updated_at: now,
    };
    let row = ezforge::store::servers::ServerRow {
        id: ezforge::domain::new_id("srv_"),
        project_id: project.id.clone(),
        name: slug.to_owned(),
        slug: slug.to_owned(),
        status: ezforge::domain::kinds::ServerStatus::Running,
        upstream_url: Some(upstream.to_owned()),
        health_check_path: None,
        rollback_on_failure: true,
        retention_count: 10,
        auto_stop_seconds: None,
        tool_scopes: "{}".into(),
        auth_mode: ezforge::domain::kinds::ServerAuthMode::Byoa,
        byoa_config: Some(serde_json::to_string(byoa).expect("json")),
        managed_by: "api".into(),
        rate_limit: None,
        created_at: now,
        updated_at: now,
    };
    app.state
        .store
        .run(move |c| {
            ezforge::store::projects::insert(c, &project)?;
            ezforge::store::servers::insert(c, &row)
        })
        .await
        .expect("insert");
    app.state.servers_changed().await;
}

/// An app whose outbound client trusts these issuers' certificates and may reach loopback.
pub(crate) async fn app_trusting(issuers: &[&TestIssuer]) -> TestApp {
    let cas: Vec<_> = issuers.iter().map(|i| i.ca_file.clone()).collect();
    TestApp::builder()
        .config(move |c| {
            c.outbound.ca_files = cas;
            c.outbound.allow_private_addresses = true;
        })
        .spawn()
        .await
}

pub(crate) fn resource(app: &TestApp, slug: &str) -> String {
    format!("{}/mcp/{slug}", app.address)
}

/// A managed token for `slug`, signed with the app's active key.
pub(crate) fn managed_token(app: &TestApp, slug: &str, scope: &str, extra: Value) -> String {
    let now = ezforge::domain::now();
    let mut claims = json!({
        "iss": app.address, "sub": "usr_alice", "aud": resource(app, slug), "client_id": "client_test",
        "scope": scope, "iat": now, "exp": now + 900, "jti": ezforge::domain::new_id("jti_"),
    });
    if let (Some(c), Some(e)) = (claims.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            if v.is_null() {
                c.remove(k);
            } else {
                c.insert(k.clone(), v.clone());
            }
        }
    }
    let keys = app.state.keys.current();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some(keys.active.kid.clone());
    header.typ = Some("at+jwt".into());
    jsonwebtoken::encode(&header, &claims, &keys.active.encoding).expect("sign")
}

fn call(tool: &str) -> Value {
    json!({"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":tool,"arguments":{}}})
}
