//! Validation rules (each with a failing and a passing case), pagination, bad input, login
//! throttling, CSRF, rate limits, and `/api/v1`.

use std::collections::HashSet;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::helpers::{
    ADMIN_EMAIL, ADMIN_PASSWORD, ApiResponse, TestApp, USER_PASSWORD, add_member, admin_token,
    call, create_key, create_key_data, create_project, create_server, delete_as, get_as, invite,
    invite_user, login, patch_as, plain_client, post_as, put_as, roomy, send_raw, user_session,
    walk,
};

mod bad_input;
mod clients_env;
mod keys_visibility;
mod login;
mod objects;
mod pagination;
mod rate_limits;
mod servers;

/// Admin token, a project id and a server id in it.
async fn basics(app: &TestApp) -> (String, String, String) {
    let admin = admin_token(app).await;
    let project = create_project(app, &admin, "Rules Project").await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let server = create_server(app, &admin, &project, "Rules Server").await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    (admin, project, server)
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

/// Row counts of every table a control API write touches: a refused request changes none.
fn table_counts(app: &TestApp) -> Vec<(&'static str, i64)> {
    let conn = rusqlite::Connection::open(app.db_path()).expect("open db");
    [
        "users",
        "invites",
        "projects",
        "project_members",
        "project_invitations",
        "api_keys",
        "servers",
        "oauth_clients",
        "env_vars",
        "audit_log",
    ]
    .into_iter()
    .map(|t| {
        let n: i64 = conn
            .query_row(&format!("SELECT COUNT(*) FROM {t}"), [], |r| r.get(0))
            .expect("count");
        (t, n)
    })
    .collect()
}

/// One at a time: concurrent writes are covered by `concurrent_writes_all_succeed`, and must not
/// mask what the pagination test is about.
const SEQUENTIAL: usize = 1;

/// Runs `n` creations `width` at a time.
async fn in_batches<F, Fut>(n: usize, width: usize, f: F)
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut i = 0;
    while i < n {
        let end = (i + width).min(n);
        futures_util::future::join_all((i..end).map(&f)).await;
        i = end;
    }
}

fn assert_walk(label: &str, got: &[String], want: &HashSet<String>, totals: &[i64]) {
    let unique: HashSet<&String> = got.iter().collect();
    assert_eq!(unique.len(), got.len(), "{label}: an item appeared twice");
    let got: HashSet<String> = got.iter().cloned().collect();
    assert_eq!(
        &got, want,
        "{label}: the walk must return every item exactly once"
    );
    assert!(
        totals.iter().all(|t| *t == want.len() as i64),
        "{label}: meta.total on every page must be {}: {totals:?}",
        want.len()
    );
}

/// (description, content type, body, acceptable statuses).
type BadCase<'a> = (String, Option<&'a str>, Vec<u8>, Vec<u16>);
