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

#[tokio::test]
async fn secrets_never_reach_the_database_in_plaintext() {
    let mut app = TestApp::spawn().await;
    let s = make_secrets(&app).await;
    // While running (the WAL holds the recent writes)...
    assert_absent("the database (running)", &db_bytes(&app.data_dir), &s);
    // ...the hashes are what is stored (proof that we read the right tables).
    let conn = db(&app);
    let n: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM sessions WHERE token_hash = ?1",
            [sha256_hex(&s.session)],
            |r| r.get(0),
        )
        .expect("sessions");
    assert_eq!(n, 1, "sessions store the SHA-256 of the token");
    let n: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM api_keys WHERE key_hash = ?1",
            [sha256_hex(&s.key)],
            |r| r.get(0),
        )
        .expect("api_keys");
    assert_eq!(n, 1, "api_keys store the SHA-256 of the key");
    drop(conn);
    // ...and after a clean stop (checkpointed into the main file).
    let dir = app.take_tempdir().expect("tempdir");
    let data_dir = app.data_dir.clone();
    app.stop().await;
    assert_absent("the database (stopped)", &db_bytes(&data_dir), &s);
    drop(dir);
}

#[tokio::test]
async fn env_values_are_never_returned_and_are_sealed_at_rest() {
    let app = TestApp::spawn().await;
    let s = make_secrets(&app).await;
    let env = format!("/v1/servers/{}/env", s.server);
    // Every answer that could mention it.
    let created = post_as(
        &app,
        &s.session,
        &env,
        json!({ "name": "SECOND", "value": s.env_value }),
    )
    .await;
    assert_eq!(created.status, 201);
    let replaced = put_as(
        &app,
        &s.session,
        &format!("{env}/API_TOKEN"),
        json!({ "value": s.env_value }),
    )
    .await;
    assert_eq!(
        replaced.status, 200,
        "PUT of an existing name replaces: {}",
        replaced.text
    );
    let fresh = put_as(
        &app,
        &s.session,
        &format!("{env}/THIRD"),
        json!({ "value": s.env_value }),
    )
    .await;
    assert_eq!(
        fresh.status, 201,
        "PUT of a new name creates: {}",
        fresh.text
    );
    let answers = [
        created,
        replaced,
        fresh,
        get_as(&app, &s.session, &env).await,
        get_as(&app, &s.key, &env).await,
        get_as(&app, &s.session, &format!("/v1/servers/{}", s.server)).await,
        get_as(&app, &s.session, "/v1/servers").await,
        get_as(&app, &s.session, &format!("/v1/projects/{}", s.project)).await,
        get_as(&app, &s.session, "/v1/audit?limit=100").await,
        get_as(
            &app,
            &s.session,
            &format!("/v1/projects/{}/keys", s.project),
        )
        .await,
        get_as(
            &app,
            &s.session,
            &format!("/v1/servers/{}/clients", s.server),
        )
        .await,
    ];
    for a in &answers {
        assert!(a.status < 300, "{}", a.text);
        assert!(
            !a.text.contains(&s.env_value),
            "an env value was returned: {}",
            a.text
        );
        assert!(
            !a.text.contains(&s.key),
            "a key value was returned: {}",
            a.text
        );
        assert!(
            !a.text.contains(&s.client_secret),
            "a client secret was returned: {}",
            a.text
        );
    }
    let listed = get_as(&app, &s.session, &env).await;
    for v in listed.body["data"].as_array().expect("data") {
        let mut keys: Vec<&str> = v
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        // `refused`: why a name stored before the env rules is not passed on (null here).
        assert_eq!(
            keys,
            ["createdAt", "name", "refused", "updatedAt"],
            "names only: {v}"
        );
    }
    // The table holds sealed values, never the plaintext, and a replaced value is re-sealed.
    let conn = db(&app);
    let mut stmt = conn
        .prepare("SELECT name, value FROM env_vars")
        .expect("prepare");
    let rows: Vec<(String, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert_eq!(rows.len(), 3);
    let mut sealed = std::collections::HashSet::new();
    for (name, value) in &rows {
        assert!(
            !value.contains(&s.env_value),
            "{name} is stored in plaintext"
        );
        assert!(!value.is_empty());
        sealed.insert(value.clone());
    }
    assert_eq!(
        sealed.len(),
        3,
        "the same value seals differently each time"
    );
    assert_absent("the database", &db_bytes(&app.data_dir), &s);
}

#[tokio::test]
async fn a_revoked_key_is_refused_from_the_next_request() {
    let app = TestApp::spawn().await;
    let admin = admin_token(&app).await;
    let project = create_project(&app, &admin, "Revocation").await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let k = create_key_data(&app, &admin, &project, &["servers:read", "servers:write"]).await;
    let key = k["key"].as_str().expect("key").to_owned();
    let id = k["id"].as_str().expect("id").to_owned();
    get_as(&app, &key, "/v1/servers").await.expect(200);
    delete_as(&app, &admin, &format!("/v1/keys/{id}"))
        .await
        .expect(204);
    let res = get_as(&app, &key, "/v1/servers").await;
    assert_eq!(res.status, 401, "{}", res.text);
    res.assert_error_shape();
    assert_eq!(res.code(), "UNAUTHENTICATED");
    assert_eq!(
        delete_as(&app, &admin, &format!("/v1/keys/{id}"))
            .await
            .status,
        404
    );
    let listed = get_as(&app, &admin, &format!("/v1/projects/{project}/keys")).await;
    assert!(
        !listed.text.contains(&id),
        "a revoked key is gone from the list"
    );

    // A key may revoke itself; the very next request is refused.
    let own = create_key_data(&app, &admin, &project, &["servers:write"]).await;
    let own_key = own["key"].as_str().expect("key").to_owned();
    let own_id = own["id"].as_str().expect("id");
    delete_as(&app, &own_key, &format!("/v1/keys/{own_id}"))
        .await
        .expect(204);
    assert_eq!(
        post_as(
            &app,
            &own_key,
            &format!("/v1/projects/{project}/servers"),
            json!({ "name": "late" })
        )
        .await
        .status,
        401
    );
    // A key of one project cannot revoke another project's key (it cannot see it).
    let other = create_project(&app, &admin, "Other").await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let victim = create_key_data(&app, &admin, &other, &["servers:read"]).await;
    let attacker = create_key(&app, &admin, &project, &["servers:write"]).await;
    let res = delete_as(
        &app,
        &attacker,
        &format!("/v1/keys/{}", victim["id"].as_str().expect("id")),
    )
    .await;
    assert_eq!(res.status, 404, "{}", res.text);
    get_as(&app, victim["key"].as_str().expect("key"), "/v1/servers")
        .await
        .expect(200);
}

#[tokio::test]
async fn an_expired_key_is_refused() {
    let app = TestApp::spawn().await;
    let admin = admin_token(&app).await;
    let project = create_project(&app, &admin, "Expiry").await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let soon = humantime::format_rfc3339_seconds(SystemTime::now() + Duration::from_secs(3600))
        .to_string();
    let res = post_as(
        &app,
        &admin,
        &format!("/v1/projects/{project}/keys"),
        json!({ "name": "short-lived", "scopes": ["servers:read"], "expiresAt": soon }),
    )
    .await;
    let data = res.expect(201)["data"].clone();
    let key = data["key"].as_str().expect("key").to_owned();
    get_as(&app, &key, "/v1/servers").await.expect(200);
    // Time passes: move its expiry into the past.
    db(&app)
        .execute(
            "UPDATE api_keys SET expires_at = ?1 WHERE id = ?2",
            rusqlite::params![now() - 1, data["id"].as_str().expect("id")],
        )
        .expect("expire");
    let res = get_as(&app, &key, "/v1/servers").await;
    assert_eq!(res.status, 401, "{}", res.text);
    assert_eq!(res.code(), "UNAUTHENTICATED");
}

/// Inserts a session row for the admin with a known token.
fn insert_session(app: &TestApp, token: &str, expires_at: i64) {
    db(app)
        .execute(
            "INSERT INTO sessions (token_hash, user_id, created_at, expires_at) VALUES (?1, ?2, ?3, ?4)",
            rusqlite::params![sha256_hex(token), admin_id(app), now() - 7200, expires_at],
        )
        .expect("insert session");
}

#[tokio::test]
async fn expired_sessions_are_refused() {
    let app = TestApp::spawn().await;
    let live = "ezf_sess_live-session-token-for-the-test-0000000";
    let dead = "ezf_sess_expired-session-token-for-the-test-000";
    let edge = "ezf_sess_expiring-right-now-token-for-the-test";
    insert_session(&app, live, now() + 600);
    insert_session(&app, dead, now() - 1);
    insert_session(&app, edge, now());
    // The inserted live session works: the way we insert is the way the server stores.
    let ok = get_as(&app, live, "/v1/auth/session").await;
    assert_eq!(ok.expect(200)["data"]["user"]["email"], ADMIN_EMAIL);
    for token in [dead, edge] {
        let res = get_as(&app, token, "/v1/auth/session").await;
        assert_eq!(res.status, 401, "{token}: {}", res.text);
        res.assert_error_shape();
        assert_eq!(res.code(), "UNAUTHENTICATED");
        let res = post_as(&app, token, "/v1/projects", json!({ "name": "Zombie" })).await;
        assert_eq!(res.status, 401, "{}", res.text);
        // As a cookie too.
        let res = plain_client()
            .get(app.url("/v1/projects"))
            .header("cookie", format!("ezf_session={token}"))
            .send()
            .await
            .expect("send");
        assert_eq!(res.status(), 401);
    }
    let res = plain_client()
        .get(app.url("/v1/projects"))
        .header("cookie", format!("ezf_session={live}"))
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), 200, "the cookie carries a live session");
}

#[tokio::test]
async fn a_short_session_ttl_expires_sessions() {
    let app = TestApp::builder()
        .config(|c| c.auth.session_ttl = ezforge::config::Duration::secs(1))
        .spawn()
        .await;
    let res = call(
        &app,
        "POST",
        "/v1/auth/login",
        None,
        Some(&json!({ "email": ADMIN_EMAIL, "password": ADMIN_PASSWORD })),
    )
    .await;
    let token = res.expect(200)["data"]["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let cookie = res.header("set-cookie").expect("cookie").to_lowercase();
    assert!(
        cookie.contains("max-age=1"),
        "Max-Age follows session_ttl: {cookie}"
    );
    let expires = res.body["data"]["expiresAt"].as_str().expect("expiresAt");
    let at = humantime::parse_rfc3339(expires).expect("rfc3339");
    let delta = at.duration_since(UNIX_EPOCH).expect("epoch").as_secs() as i64 - now();
    assert!(
        (0..=2).contains(&delta),
        "expiresAt is session_ttl away: {delta}"
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(get_as(&app, &token, "/v1/auth/session").await.status, 401);
}

#[tokio::test]
async fn logout_and_user_deletion_end_sessions() {
    let app = TestApp::spawn().await;
    let admin = admin_token(&app).await;
    let second = admin_token(&app).await;
    assert_ne!(admin, second, "each login is its own session");
    let s = get_as(&app, &admin, "/v1/auth/session").await;
    let data = s.expect(200)["data"].clone();
    assert_eq!(data["user"]["role"], "admin");
    assert!(humantime::parse_rfc3339(data["expiresAt"].as_str().expect("expiresAt")).is_ok());
    call(&app, "POST", "/v1/auth/logout", Some(&second), None)
        .await
        .expect(204);
    assert_eq!(get_as(&app, &second, "/v1/auth/session").await.status, 401);
    assert_eq!(
        call(&app, "POST", "/v1/auth/logout", Some(&second), None)
            .await
            .status,
        401,
        "logging out twice"
    );
    get_as(&app, &admin, "/v1/auth/session").await.expect(200);
    let gone: i64 = db(&app)
        .query_row(
            "SELECT COUNT(*) FROM sessions WHERE token_hash = ?1",
            [sha256_hex(&second)],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(gone, 0, "logout deletes the session row");
    // A deleted user's sessions stop working.
    let (uid, token) = user_session(&app, &admin, "leaver@example.com").await;
    get_as(&app, &token, "/v1/projects").await.expect(200);
    delete_as(&app, &admin, &format!("/v1/users/{uid}"))
        .await
        .expect(204);
    assert_eq!(get_as(&app, &token, "/v1/projects").await.status, 401);
    let res = call(
        &app,
        "POST",
        "/v1/auth/login",
        None,
        Some(&json!({ "email": "leaver@example.com", "password": crate::helpers::USER_PASSWORD })),
    )
    .await;
    assert_eq!(res.status, 401);
}

#[tokio::test]
async fn malformed_and_unknown_credentials_are_401() {
    let app = TestApp::spawn().await;
    let admin = admin_token(&app).await;
    let project = create_project(&app, &admin, "Creds").await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let key = create_key(&app, &admin, &project, &["servers:read"]).await;
    let headers = [
        "Bearer".to_owned(),
        "Bearer ".to_owned(),
        "Basic YWRtaW46cGFzc3dvcmQ=".to_owned(),
        format!("Token {key}"),
        "Bearer ezf_sess_".to_owned(),
        "Bearer ezf_sess_not-a-real-session".to_owned(),
        "Bearer ezf_live_not-a-real-key".to_owned(),
        "Bearer ezf_test_not-a-real-key".to_owned(),
        "Bearer something-else-entirely".to_owned(),
        format!("Bearer {}", &key[..key.len() - 1]),
        format!("Bearer {key}x"),
        format!("Bearer {}", key.to_uppercase()),
        format!("Bearer ezf_sess_{}", &key["ezf_live_".len()..]),
        format!("Bearer {}", "x".repeat(10_000)),
    ];
    for h in &headers {
        let res = plain_client()
            .get(app.url("/v1/projects"))
            .header("authorization", h)
            .send()
            .await
            .expect("send");
        let res = ApiResponse::read(res).await;
        let shown: String = h.chars().take(60).collect();
        assert_eq!(res.status, 401, "Authorization: {shown}: {}", res.text);
        res.assert_error_shape();
        assert_eq!(res.code(), "UNAUTHENTICATED");
        assert!(
            !res.text.contains(&key),
            "the answer does not echo credentials"
        );
    }
    // A bad bearer is not rescued by a good cookie.
    let res = plain_client()
        .get(app.url("/v1/projects"))
        .header("authorization", "Bearer ezf_live_not-a-real-key")
        .header("cookie", format!("ezf_session={admin}"))
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), 401);
    get_as(&app, &key, "/v1/projects").await.expect(200);
}

#[tokio::test]
async fn api_key_last_use_is_recorded() {
    let mut app = TestApp::spawn().await;
    let admin = admin_token(&app).await;
    let project = create_project(&app, &admin, "Usage").await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let k = create_key_data(&app, &admin, &project, &["servers:read"]).await;
    let (key, id) = (
        k["key"].as_str().expect("key").to_owned(),
        k["id"].as_str().expect("id").to_owned(),
    );
    assert!(k["lastUsedAt"].is_null(), "unused: {k}");
    let list_path = format!("/v1/projects/{project}/keys");
    let find = |body: &serde_json::Value| {
        body["data"]
            .as_array()
            .expect("data")
            .iter()
            .find(|k| k["id"] == id.as_str())
            .cloned()
            .expect("key listed")
    };
    let listed = get_as(&app, &admin, &list_path).await;
    assert!(find(&listed.body)["lastUsedAt"].is_null());
    let before = now();
    get_as(&app, &key, "/v1/servers").await.expect(200);
    let after = now();
    // Read right after use: the pending (not yet written) use is merged in.
    let listed = get_as(&app, &admin, &list_path).await;
    let used = find(&listed.body)["lastUsedAt"]
        .as_str()
        .expect("lastUsedAt after use")
        .to_owned();
    let t = humantime::parse_rfc3339(&used)
        .expect("rfc3339")
        .duration_since(UNIX_EPOCH)
        .expect("epoch")
        .as_secs() as i64;
    assert!(
        (before..=after).contains(&t),
        "{used} within [{before}, {after}]"
    );
    // The key's own view agrees (it may list its project's keys with servers:read).
    let own = get_as(&app, &key, &list_path).await;
    assert!(find(&own.body)["lastUsedAt"].is_string());
    // The recorded use survives a restart (written at shutdown at the latest).
    let dir = app.take_tempdir().expect("tempdir");
    let data_dir = app.data_dir.clone();
    app.stop().await;
    let stored: Option<i64> = rusqlite::Connection::open(data_dir.join("ezforge.db"))
        .expect("open")
        .query_row(
            "SELECT last_used_at FROM api_keys WHERE id = ?1",
            [&id],
            |r| r.get(0),
        )
        .expect("row");
    // (The key's own listing above was a use too, maybe a second later.)
    let stored = stored.expect("written to the database by shutdown");
    assert!(
        (t..=t + 60).contains(&stored),
        "{stored} recorded, {t} seen"
    );
    let app = TestApp::builder_in(&data_dir).spawn().await;
    let admin = admin_token(&app).await;
    let listed = get_as(&app, &admin, &list_path).await;
    let relisted = listed.body["data"]
        .as_array()
        .and_then(|keys| keys.iter().find(|k| k["id"] == id.as_str()))
        .and_then(|k| k["lastUsedAt"].as_str())
        .map(|s| {
            humantime::parse_rfc3339(s)
                .expect("rfc3339")
                .duration_since(UNIX_EPOCH)
                .expect("epoch")
                .as_secs() as i64
        });
    assert_eq!(relisted, Some(stored), "{}", listed.text);
    drop(app);
    drop(dir);
}

// ---------------------------------------------------------------------------------------------
// The real binary: nothing secret in its output
// ---------------------------------------------------------------------------------------------

const BIN: &str = env!("CARGO_BIN_EXE_ezforge");

#[tokio::test]
async fn secrets_never_appear_in_the_logs_or_the_database_of_the_binary() {
    let dir = tempfile::tempdir().expect("tmp");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let data_dir = dir.path().join("data");
    let out_path = dir.path().join("stdout.log");
    let err_path = dir.path().join("stderr.log");
    let mut child = tokio::process::Command::new(BIN)
        .arg("serve")
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("EZFORGE_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("EZFORGE_SERVER__DATA_DIR", &data_dir)
        .env("EZFORGE_ADMIN_EMAIL", ADMIN_EMAIL)
        .env("EZFORGE_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("EZFORGE_LOGGING__LEVEL", "debug")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).expect("stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("stderr file"))
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    let base = format!("http://127.0.0.1:{port}");
    let client = plain_client();
    let mut up = false;
    for _ in 0..300 {
        if let Ok(r) = client.get(format!("{base}/v1/health")).send().await
            && r.status() == 200
        {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        up,
        "server did not start: {}",
        std::fs::read_to_string(&err_path).unwrap_or_default()
    );
    let send = |method: reqwest::Method,
                path: &str,
                token: Option<&str>,
                body: Option<serde_json::Value>| {
        let mut req = client.request(method, format!("{base}{path}"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        async move { ApiResponse::read(req.send().await.expect("request")).await }
    };
    use reqwest::Method;
    let res = send(
        Method::POST,
        "/v1/auth/login",
        None,
        Some(json!({ "email": ADMIN_EMAIL, "password": ADMIN_PASSWORD })),
    )
    .await;
    let session = res.expect(200)["data"]["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let res = send(
        Method::POST,
        "/v1/projects",
        Some(&session),
        Some(json!({ "name": "Logs" })),
    )
    .await;
    let project = res.expect(201)["data"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let res = send(
        Method::POST,
        &format!("/v1/projects/{project}/keys"),
        Some(&session),
        Some(json!({ "name": "k", "scopes": ["servers:read", "servers:write", "deployments:write"] })),
    )
    .await;
    let key = res.expect(201)["data"]["key"]
        .as_str()
        .expect("key")
        .to_owned();
    let res = send(
        Method::POST,
        &format!("/v1/projects/{project}/servers"),
        Some(&key),
        Some(json!({ "name": "Logged" })),
    )
    .await;
    let server = res.expect(201)["data"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let env_value = "env-secret-value-Hq3Lm9Tt";
    send(
        Method::PUT,
        &format!("/v1/servers/{server}/env/SECRET"),
        Some(&key),
        Some(json!({ "value": env_value })),
    )
    .await
    .expect(201);
    let res = send(
        Method::POST,
        &format!("/v1/servers/{server}/clients"),
        Some(&session),
        Some(json!({ "name": "c", "redirectUris": ["https://c.example.com/cb"], "confidential": true })),
    )
    .await;
    let client_secret = res.expect(201)["data"]["clientSecret"]
        .as_str()
        .expect("secret")
        .to_owned();
    let res = send(
        Method::POST,
        "/v1/users",
        Some(&session),
        Some(json!({ "email": "inv@example.com" })),
    )
    .await;
    let invite = res.expect(201)["data"]["inviteToken"]
        .as_str()
        .expect("invite")
        .to_owned();
    send(Method::GET, "/v1/servers", Some(&key), None)
        .await
        .expect(200);
    // Failures log too: a wrong password, an unknown key, a refused scope, a bad body.
    let wrong_password = "wrong-password-Xy7Vb2";
    send(
        Method::POST,
        "/v1/auth/login",
        None,
        Some(json!({ "email": ADMIN_EMAIL, "password": wrong_password })),
    )
    .await
    .expect(401);
    let bogus_key = "ezf_live_bogus-key-value-Pq4Rs8Uv";
    send(Method::GET, "/v1/servers", Some(bogus_key), None)
        .await
        .expect(401);
    send(Method::GET, "/v1/audit", Some(&key), None)
        .await
        .expect(403);
    send(
        Method::POST,
        "/v1/projects",
        Some(&session),
        Some(json!({ "name": "x", "password": wrong_password })),
    )
    .await
    .expect(400);
    // A session cookie is a credential too.
    let res = client
        .get(format!("{base}/v1/auth/session"))
        .header("cookie", format!("ezf_session={session}"))
        .send()
        .await
        .expect("cookie request");
    assert_eq!(res.status(), 200);
    send(Method::POST, "/v1/auth/logout", Some(&session), None)
        .await
        .expect(204);

    let pid = child.id().expect("pid").to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(status.success());
    let exit = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("stops promptly")
        .expect("wait");
    assert!(exit.success(), "clean exit");

    let mut logs = std::fs::read(&out_path).expect("stdout");
    logs.extend(std::fs::read(&err_path).expect("stderr"));
    let text = String::from_utf8_lossy(&logs).into_owned();
    assert!(text.contains("is ready"), "the banner was captured: {text}");
    assert!(
        text.lines().count() > 5,
        "debug logging produced output: {text}"
    );
    assert!(
        text.contains("/v1/auth/login") && text.contains("/keys"),
        "requests were logged: {text}"
    );
    let database = db_bytes(&data_dir);
    assert!(!database.is_empty());
    for (what, secret) in [
        ("session token", session.as_str()),
        ("API key", key.as_str()),
        ("env value", env_value),
        ("client secret", client_secret.as_str()),
        ("invite token", invite.as_str()),
        ("admin password", ADMIN_PASSWORD),
        ("wrong password", wrong_password),
        ("unknown key", bogus_key),
    ] {
        assert!(!text.contains(secret), "the {what} appears in the logs");
        assert!(
            !contains_bytes(&database, secret),
            "the {what} appears in the database"
        );
    }
    // The key's random part is not logged either (only its prefix may be).
    let tail = &key[key.len() - 20..];
    assert!(
        !text.contains(tail),
        "part of the API key appears in the logs"
    );
    let tail = &session[session.len() - 20..];
    assert!(
        !text.contains(tail),
        "part of the session token appears in the logs"
    );
}
