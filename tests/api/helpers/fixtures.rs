//! Control API fixtures: sign-in, users, projects, members, keys, servers; pagination walks and
//! log polls.

use super::*;

/// `POST /v1/auth/login`; returns the session token. Uses a cookie-less client so that
/// `app.client` stays unauthenticated.
pub async fn login(app: &TestApp, email: &str, password: &str) -> String {
    let res = app
        .plain
        .post(app.url("/v1/auth/login"))
        .json(&serde_json::json!({ "email": email, "password": password }))
        .send()
        .await
        .expect("login request");
    let res = ApiResponse::read(res).await;
    let body = res.expect(200);
    body["data"]["token"]
        .as_str()
        .expect("data.token")
        .to_owned()
}

/// The admin's session token.
pub async fn admin_token(app: &TestApp) -> String {
    login(app, ADMIN_EMAIL, ADMIN_PASSWORD).await
}

/// `POST /v1/users` with a password; returns (user id, password).
pub async fn create_user(
    app: &TestApp,
    admin_token: &str,
    email: &str,
    role: &str,
) -> (String, String) {
    let res = post_as(
        app,
        admin_token,
        "/v1/users",
        serde_json::json!({ "email": email, "role": role, "password": USER_PASSWORD }),
    )
    .await;
    let body = res.expect(201);
    let id = body["data"]["user"]["id"]
        .as_str()
        .expect("user id")
        .to_owned();
    (id, USER_PASSWORD.to_owned())
}

/// `POST /v1/users` without a password (no password hashing: cheap); returns (id, inviteToken).
pub async fn invite_user(app: &TestApp, admin_token: &str, email: &str) -> (String, String) {
    let res = post_as(
        app,
        admin_token,
        "/v1/users",
        serde_json::json!({ "email": email, "role": "member" }),
    )
    .await;
    let body = res.expect(201);
    (
        body["data"]["user"]["id"].as_str().expect("id").to_owned(),
        body["data"]["inviteToken"]
            .as_str()
            .expect("inviteToken")
            .to_owned(),
    )
}

/// Creates a user and signs them in; returns (user id, session token).
pub async fn user_session(app: &TestApp, admin_token: &str, email: &str) -> (String, String) {
    let (id, pw) = create_user(app, admin_token, email, "member").await;
    let token = login(app, email, &pw).await;
    (id, token)
}

/// `POST /v1/projects {name}`; returns `data`.
pub async fn create_project(app: &TestApp, token: &str, name: &str) -> serde_json::Value {
    let res = post_as(
        app,
        token,
        "/v1/projects",
        serde_json::json!({ "name": name }),
    )
    .await;
    res.expect(201)["data"].clone()
}

/// `POST /v1/projects/:project/members {email, role}` (an invitation); returns `data`, with
/// its `inviteToken`.
pub async fn invite(
    app: &TestApp,
    token: &str,
    project: &str,
    email: &str,
    role: &str,
) -> serde_json::Value {
    post_as(
        app,
        token,
        &format!("/v1/projects/{project}/members"),
        serde_json::json!({ "email": email, "role": role }),
    )
    .await
    .expect(201)["data"]
        .clone()
}

/// Makes `email` (an account with [`USER_PASSWORD`]) a member: the owner behind `token`
/// invites it, and it signs in and accepts.
pub async fn add_member(app: &TestApp, token: &str, project: &str, email: &str, role: &str) {
    let invitation = invite(app, token, project, email, role).await;
    let session = login(app, email, USER_PASSWORD).await;
    post_as(
        app,
        &session,
        "/v1/invitations/accept",
        serde_json::json!({ "token": invitation["inviteToken"] }),
    )
    .await
    .expect(200);
}

/// `POST /v1/projects/:project/keys`; returns the whole `data` (with `key` and `id`).
pub async fn create_key_data(
    app: &TestApp,
    token: &str,
    project: &str,
    scopes: &[&str],
) -> serde_json::Value {
    let res = post_as(
        app,
        token,
        &format!("/v1/projects/{project}/keys"),
        serde_json::json!({ "name": "test key", "scopes": scopes }),
    )
    .await;
    res.expect(201)["data"].clone()
}

/// `POST /v1/projects/:project/keys`; returns the key value.
pub async fn create_key(app: &TestApp, token: &str, project: &str, scopes: &[&str]) -> String {
    create_key_data(app, token, project, scopes).await["key"]
        .as_str()
        .expect("key")
        .to_owned()
}

/// `POST /v1/projects/:project/servers {name}`; returns `data`.
pub async fn create_server(
    app: &TestApp,
    token: &str,
    project: &str,
    name: &str,
) -> serde_json::Value {
    let res = post_as(
        app,
        token,
        &format!("/v1/projects/{project}/servers"),
        serde_json::json!({ "name": name }),
    )
    .await;
    res.expect(201)["data"].clone()
}

/// All every-ID from a paginated list, walking `cursor` until `hasMore` is false.
/// Returns (ids in order, number of pages, the `total` each page reported).
pub async fn walk(
    app: &TestApp,
    token: &str,
    path: &str,
    limit: u32,
) -> (Vec<String>, usize, Vec<i64>) {
    let mut ids = Vec::new();
    let mut totals = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    let sep = if path.contains('?') { '&' } else { '?' };
    loop {
        let url = match &cursor {
            Some(c) => format!("{path}{sep}limit={limit}&cursor={c}"),
            None => format!("{path}{sep}limit={limit}"),
        };
        let res = get_as(app, token, &url).await;
        let body = res.expect(200).clone();
        pages += 1;
        assert!(pages < 10_000, "pagination does not end");
        let items = body["data"].as_array().expect("data array");
        assert!(items.len() <= limit as usize, "page larger than limit");
        for item in items {
            let id = match (&item["id"], &item["name"], &item["userId"]) {
                (serde_json::Value::String(s), _, _) => s.clone(),
                (serde_json::Value::Number(n), _, _) => n.to_string(),
                (_, _, serde_json::Value::String(s)) => s.clone(),
                (_, serde_json::Value::String(s), _) => s.clone(),
                _ => panic!("item without an id: {item}"),
            };
            ids.push(id);
        }
        totals.push(body["meta"]["total"].as_i64().expect("meta.total"));
        let more = body["meta"]["hasMore"].as_bool().expect("meta.hasMore");
        match (more, body["meta"]["cursor"].as_str()) {
            (true, Some(c)) => {
                assert!(!items.is_empty(), "hasMore with an empty page");
                cursor = Some(c.to_owned());
            }
            (true, None) => panic!("hasMore without a cursor: {body}"),
            (false, c) => {
                assert!(c.is_none(), "last page must have a null cursor: {body}");
                break;
            }
        }
    }
    (ids, pages, totals)
}

/// Polls the server's log (`GET /v1/servers/:slug/logs`) until it holds `needle`, at most 15 s;
/// returns the answer's text.
pub async fn server_log_has(app: &TestApp, token: &str, slug: &str, needle: &str) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let r = get_as(app, token, &format!("/v1/servers/{slug}/logs?limit=200")).await;
        if r.text.contains(needle) {
            return r.text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{needle:?} never logged: {}",
            r.text
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
