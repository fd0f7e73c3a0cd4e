//! Secrets: key values, session tokens, client secrets and env values stay out of the database
//! and the logs; revoked and expired credentials are refused; API key use is recorded.

use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;

use crate::helpers::{
    ADMIN_EMAIL, ADMIN_PASSWORD, ApiResponse, TestApp, admin_token, call, contains_bytes,
    create_key, create_key_data, create_project, create_server, db_bytes, delete_as, get_as,
    plain_client, post_as, put_as, sha256_hex, user_session,
};

mod at_rest;
mod binary;
mod credentials;

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

fn db(app: &TestApp) -> rusqlite::Connection {
    rusqlite::Connection::open(app.db_path()).expect("open db")
}

fn admin_id(app: &TestApp) -> String {
    db(app)
        .query_row(
            "SELECT id FROM users WHERE email = ?1",
            [ADMIN_EMAIL],
            |r| r.get(0),
        )
        .expect("admin row")
}

/// Everything secret one session of use produces.
struct Secrets {
    session: String,
    key: String,
    client_secret: String,
    invite: String,
    env_value: String,
    project: String,
    server: String,
}

async fn make_secrets(app: &TestApp) -> Secrets {
    let session = admin_token(app).await;
    let project = create_project(app, &session, "Secrets").await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let server = create_server(app, &session, &project, "Secret Server").await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    // Env vars need deployments:write to be written.
    let k = create_key_data(
        app,
        &session,
        &project,
        &["servers:read", "servers:write", "deployments:write"],
    )
    .await;
    let key = k["key"].as_str().expect("key").to_owned();
    // Use the key, so that its last use is recorded too.
    get_as(app, &key, "/v1/servers").await.expect(200);
    let c = post_as(
        app,
        &session,
        &format!("/v1/servers/{server}/clients"),
        json!({ "name": "Backend", "redirectUris": ["https://b.example.com/cb"], "confidential": true }),
    )
    .await;
    let client_secret = c.expect(201)["data"]["clientSecret"]
        .as_str()
        .expect("clientSecret")
        .to_owned();
    let u = post_as(
        app,
        &session,
        "/v1/users",
        json!({ "email": "invitee@example.com" }),
    )
    .await;
    let invite = u.expect(201)["data"]["inviteToken"]
        .as_str()
        .expect("inviteToken")
        .to_owned();
    let env_value = "s3cr3t-env-value-Zq8RkP2mXw".to_owned();
    put_as(
        app,
        &key,
        &format!("/v1/servers/{server}/env/API_TOKEN"),
        json!({ "value": env_value }),
    )
    .await
    .expect(201);
    Secrets {
        session,
        key,
        client_secret,
        invite,
        env_value,
        project,
        server,
    }
}

fn assert_absent(label: &str, haystack: &[u8], s: &Secrets) {
    for (what, secret) in [
        ("session token", &s.session),
        ("API key", &s.key),
        ("client secret", &s.client_secret),
        ("invite token", &s.invite),
        ("env value", &s.env_value),
        ("admin password", &ADMIN_PASSWORD.to_owned()),
    ] {
        assert!(
            !contains_bytes(haystack, secret),
            "the {what} appears in {label}"
        );
    }
}
