//! Issue 2: start-up, health, store, migrations, keys, TLS, backup.

use crate::helpers::{ADMIN_EMAIL, TestApp, json};
use ezforge::config::TlsMode;

#[tokio::test]
async fn health_reports_version_and_database() {
    let app = TestApp::spawn().await;
    for path in ["/v1/health", "/api/v1/health"] {
        let res = app.get(path).await;
        assert_eq!(res.status(), 200);
        let body = json(res).await;
        assert_eq!(body["status"], "ok");
        assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(body["services"]["database"], "ok");
        let ts = body["timestamp"].as_str().expect("timestamp");
        assert!(humantime::parse_rfc3339(ts).is_ok(), "{ts}");
    }
}

#[tokio::test]
async fn health_is_503_while_the_database_is_locked_and_recovers() {
    let app = TestApp::spawn().await;
    let admin = crate::helpers::admin_token(&app).await;
    let db = app.db_path();
    // Another process holding the write lock makes the database unusable for us.
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let locker = std::thread::spawn(move || {
        let conn = rusqlite::Connection::open(db).expect("open");
        conn.execute_batch("BEGIN EXCLUSIVE").expect("lock");
        locked_tx.send(()).expect("signal");
        let _ = release_rx.recv();
        conn.execute_batch("ROLLBACK").expect("unlock");
    });
    locked_rx.recv().expect("locked");
    let res = app.get("/v1/health").await;
    assert_eq!(res.status(), 503);
    let body = json(res).await;
    assert_eq!(body["services"]["database"], "unavailable");
    // A write that waits out the busy timeout is told to retry (503), not a server error.
    let res = crate::helpers::post_as(
        &app,
        &admin,
        "/v1/projects",
        serde_json::json!({"name": "waits"}),
    )
    .await;
    assert_eq!(res.status, 503, "{}", res.text);
    assert_eq!(res.body["error"]["code"], "UNAVAILABLE", "{}", res.text);
    release_tx.send(()).expect("release");
    locker.join().expect("locker");
    // The health check that timed out may still hold a pooled connection briefly; poll.
    let mut status = 0;
    for _ in 0..50 {
        status = app.get("/v1/health").await.status().as_u16();
        if status == 200 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(status, 200);
}

#[tokio::test]
async fn health_is_503_when_the_database_file_is_gone() {
    let app = TestApp::spawn().await;
    std::fs::remove_file(app.db_path()).expect("remove db");
    assert_eq!(app.get("/v1/health").await.status(), 503);
}

#[tokio::test]
async fn request_id_is_echoed_or_made() {
    let app = TestApp::spawn().await;
    let res = app
        .client
        .get(app.url("/v1/health"))
        .header("X-Request-Id", "trace-123")
        .send()
        .await
        .expect("request");
    assert_eq!(res.headers()["x-request-id"], "trace-123");
    let res = app.get("/v1/health").await;
    let made = res.headers()["x-request-id"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert_eq!(made.len(), 24);
}

#[tokio::test]
async fn unknown_routes_answer_json_404() {
    let app = TestApp::spawn().await;
    let res = app.get("/no/such/route").await;
    assert_eq!(res.status(), 404);
    let body = json(res).await;
    assert_eq!(body["error"]["code"], "NOT_FOUND");
}

#[tokio::test]
async fn first_start_creates_the_database_master_key_and_admin() {
    let app = TestApp::spawn().await;
    assert!(app.db_path().exists());
    let key = app.data_dir.join("master.key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key)
            .expect("master.key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let conn = rusqlite::Connection::open(app.db_path()).expect("open");
    let (email, role, hash): (String, String, String) = conn
        .query_row("SELECT email, role, password_hash FROM users", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .expect("admin row");
    assert_eq!(email, ADMIN_EMAIL);
    assert_eq!(role, "admin");
    assert!(hash.starts_with("$argon2id$"), "password is stored hashed");
    let journal: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .expect("pragma");
    assert_eq!(journal, "wal");
    let private: String = conn
        .query_row("SELECT private_key FROM signing_keys", [], |r| r.get(0))
        .expect("key row");
    assert!(private.starts_with("v1."), "private signing key is sealed");
}

#[tokio::test]
async fn restart_reuses_data_and_creates_no_second_admin() {
    let mut first = TestApp::spawn().await;
    let tmp = first.take_tempdir().expect("tempdir");
    let keys = published_kids(&first).await;
    assert_eq!(keys.len(), 1, "{keys:?}");
    first.stop().await;
    let second = TestApp::builder_in(tmp.path()).spawn().await;
    assert_eq!(
        published_kids(&second).await,
        keys,
        "signing key survives restarts"
    );
    let admin = crate::helpers::admin_token(&second).await;
    let users = crate::helpers::get_as(&second, &admin, "/v1/users").await;
    assert_eq!(users.expect(200)["data"].as_array().map(Vec::len), Some(1));
}

/// The key ids the authorization server publishes.
async fn published_kids(app: &TestApp) -> Vec<String> {
    let jwks = json(app.get("/oauth/jwks.json").await).await;
    let keys = jwks["keys"].as_array().expect("keys");
    keys.iter()
        .map(|k| k["kid"].as_str().expect("kid").to_owned())
        .collect()
}

#[tokio::test]
async fn a_different_master_key_is_refused_with_a_clear_error() {
    let mut first = TestApp::spawn().await;
    let tmp = first.take_tempdir().expect("tempdir");
    first.stop().await;
    let err = TestApp::builder_in(tmp.path())
        .config(|c| {
            use base64::Engine;
            c.master_key = Some(ezforge::domain::Secret::new(
                base64::engine::general_purpose::STANDARD.encode([9u8; 32]),
            ));
        })
        .try_spawn()
        .await
        .err()
        .expect("refused");
    assert!(err.to_string().contains("master key"), "{err}");
}

#[tokio::test]
async fn rotated_keys_are_picked_up_on_reload() {
    let app = TestApp::spawn().await;
    let before = app.state.keys.current().active.kid.clone();
    let store = ezforge::store::Store::open(&app.db_path()).expect("open");
    let master = ezforge::crypto::MasterKey::load_or_create(None, &app.data_dir).expect("key");
    let new_kid = store
        .run_blocking(|c| ezforge::services::keys::rotate(c, &master, ezforge::domain::now(), 900))
        .expect("rotate");
    app.reload().await;
    let set = app.state.keys.current();
    assert_eq!(set.active.kid, new_kid);
    assert_ne!(before, new_kid);
    assert!(
        set.verifier(&before).is_some(),
        "the old key stays published"
    );
}

#[tokio::test]
async fn a_database_from_the_first_migration_is_upgraded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ezforge.db");
    {
        let mut conn = rusqlite::Connection::open(&path).expect("open");
        ezforge::store::migrate_to(&mut conn, "old", 1).expect("v1");
        conn.execute(
            "INSERT INTO users (id, email, password_hash, role, created_at, updated_at)
             VALUES ('usr_old', 'old@example.com', NULL, 'member', 1, 1)",
            [],
        )
        .expect("seed");
    }
    let store = ezforge::store::Store::open(&path).expect("upgrade");
    let (version, email): (u32, String) = store
        .run_blocking(|c| {
            let v = c.query_row("PRAGMA user_version", [], |r| r.get(0));
            let e = c.query_row("SELECT email FROM users WHERE id = 'usr_old'", [], |r| {
                r.get(0)
            });
            Ok::<_, ezforge::store::StoreError>((v?, e?))
        })
        .expect("read");
    assert_eq!(version, ezforge::store::LATEST_VERSION);
    assert_eq!(email, "old@example.com");
}

#[tokio::test]
async fn a_database_from_a_newer_version_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let conn = rusqlite::Connection::open(dir.path().join("ezforge.db")).expect("open");
        conn.pragma_update(None, "user_version", 9999)
            .expect("bump");
    }
    let err = TestApp::builder_in(dir.path())
        .try_spawn()
        .await
        .err()
        .expect("refused");
    let msg = err.to_string();
    assert!(
        msg.contains("newer ezforge") && msg.contains("9999"),
        "{msg}"
    );
}

#[tokio::test]
async fn self_signed_tls_is_made_once_and_reused() {
    let mut app = TestApp::builder()
        .config(|c| c.tls.mode = TlsMode::SelfSigned)
        .spawn()
        .await;
    let cert_path = app.data_dir.join("tls/cert.pem");
    let pem = std::fs::read(&cert_path).expect("cert written");
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("pem"))
        .build()
        .expect("client");
    let res = client
        .get(format!("https://localhost:{}/v1/health", app.port))
        .send()
        .await
        .expect("https request");
    assert_eq!(res.status(), 200);
    assert!(app.address.starts_with("https://"));
    let fingerprint = app.tls_fingerprint().expect("fingerprint");
    assert_eq!(fingerprint.len(), 32 * 3 - 1);
    let tmp = app.take_tempdir().expect("tmp");
    app.stop().await;
    let again = TestApp::builder_in(tmp.path())
        .config(|c| c.tls.mode = TlsMode::SelfSigned)
        .spawn()
        .await;
    assert_eq!(
        again.tls_fingerprint(),
        Some(fingerprint.clone()),
        "certificate reused"
    );
    again.stop().await;
    // A name the certificate lacks (a new tls.names entry or public URL host): a new one that
    // covers it.
    let named = TestApp::builder_in(tmp.path())
        .config(|c| {
            c.tls.mode = TlsMode::SelfSigned;
            c.tls.names = vec!["ezforge.internal".into()];
        })
        .spawn()
        .await;
    assert_ne!(
        named.tls_fingerprint(),
        Some(fingerprint),
        "a new certificate"
    );
    let pem = std::fs::read(&cert_path).expect("cert");
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("pem"))
        .resolve(
            "ezforge.internal",
            std::net::SocketAddr::from(([127, 0, 0, 1], named.port)),
        )
        .build()
        .expect("client");
    let res = client
        .get(format!("https://ezforge.internal:{}/v1/health", named.port))
        .send()
        .await
        .expect("https request for the new name");
    assert_eq!(res.status(), 200);
    drop(tmp);
}

fn write_cert(
    dir: &std::path::Path,
    name: &str,
) -> (std::path::PathBuf, std::path::PathBuf, String) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("cert");
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    std::fs::write(&cert, ck.cert.pem()).expect("write cert");
    std::fs::write(&key, ck.signing_key.serialize_pem()).expect("write key");
    (cert, key, ck.cert.pem())
}

async fn https_health(port: u16, root_pem: &str) -> reqwest::StatusCode {
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(root_pem.as_bytes()).expect("pem"))
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    client
        .get(format!("https://localhost:{port}/v1/health"))
        .send()
        .await
        .expect("https")
        .status()
}

#[tokio::test]
async fn tls_files_are_served_and_reloaded() {
    let certs = tempfile::tempdir().expect("tmp");
    let (cert, key, first_pem) = write_cert(certs.path(), "a");
    let app = TestApp::builder()
        .config(|c| {
            c.tls.mode = TlsMode::Files;
            c.tls.cert_file = Some(cert.clone());
            c.tls.key_file = Some(key.clone());
        })
        .spawn()
        .await;
    assert_eq!(https_health(app.port, &first_pem).await, 200);
    let before = app.tls_fingerprint();
    // Replace the files in place, as certbot would, and reload.
    let (new_cert, new_key, second_pem) = write_cert(certs.path(), "b");
    std::fs::rename(new_cert, &cert).expect("swap cert");
    std::fs::rename(new_key, &key).expect("swap key");
    app.reload().await;
    assert_eq!(https_health(app.port, &second_pem).await, 200);
    assert_ne!(before, None);
}

#[tokio::test]
async fn an_unreadable_certificate_is_a_startup_error_naming_the_file() {
    let err = TestApp::builder()
        .config(|c| {
            c.tls.mode = TlsMode::Files;
            c.tls.cert_file = Some("/nonexistent/cert.pem".into());
            c.tls.key_file = Some("/nonexistent/key.pem".into());
        })
        .try_spawn()
        .await
        .err()
        .expect("refused");
    assert!(err.to_string().contains("/nonexistent/cert.pem"), "{err}");
}

#[tokio::test]
async fn backup_copies_a_live_database() {
    let app = TestApp::spawn().await;
    let dest = app.data_dir.join("backup.db");
    ezforge::store::backup(&app.db_path(), &dest).expect("backup");
    // The server keeps working during and after.
    assert_eq!(app.get("/v1/health").await.status(), 200);
    let conn = rusqlite::Connection::open(&dest).expect("open backup");
    let email: String = conn
        .query_row("SELECT email FROM users", [], |r| r.get(0))
        .expect("row");
    assert_eq!(email, ADMIN_EMAIL);
    let version: u32 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("version");
    assert_eq!(version, ezforge::store::LATEST_VERSION);
}

#[tokio::test]
async fn the_example_config_is_valid() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml");
    let config = ezforge::Config::load_from(Some(&path), &[]).expect("config.example.toml loads");
    let defaults = ezforge::Config::load_from(None, &[]).expect("defaults");
    // The example documents the defaults: loading it changes nothing.
    assert_eq!(config.to_redacted_toml(), defaults.to_redacted_toml());
}

#[tokio::test]
async fn graceful_stop_finishes_and_closes_the_store() {
    let mut app = TestApp::spawn().await;
    let tmp = app.take_tempdir().expect("tmp");
    let db = app.db_path();
    app.stop().await;
    // After a clean stop the WAL has been checkpointed into the main file.
    let wal = db.with_extension("db-wal");
    let wal_len = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    assert_eq!(wal_len, 0, "WAL checkpointed on shutdown");
    drop(tmp);
}

#[tokio::test]
async fn a_second_server_on_the_same_data_dir_exits_at_once_naming_the_first() {
    let mut first = TestApp::spawn().await;
    let tmp = first.take_tempdir().expect("tmp");
    let err = TestApp::builder_in(tmp.path())
        .try_spawn()
        .await
        .err()
        .expect("a second server on the same data dir");
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("pid {}", std::process::id())) && msg.contains("data directory"),
        "{msg}"
    );
    // The first one is untouched, and once it has stopped the directory is free.
    assert_eq!(first.get("/v1/health").await.status(), 200);
    first.stop().await;
    let again = TestApp::builder_in(tmp.path()).spawn().await;
    assert_eq!(again.get("/v1/health").await.status(), 200);
    again.stop().await;
}

#[tokio::test]
async fn over_https_the_session_cookie_is_host_bound_and_serves_both_surfaces() {
    let app = TestApp::builder()
        .config(|c| c.tls.mode = TlsMode::SelfSigned)
        .spawn()
        .await;
    let pem = std::fs::read(app.data_dir.join("tls/cert.pem")).expect("cert written");
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("pem"))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let base = format!("https://localhost:{}", app.port);
    let res = client
        .post(format!("{base}/v1/auth/login"))
        .json(&serde_json::json!({
            "email": ADMIN_EMAIL,
            "password": crate::helpers::ADMIN_PASSWORD,
        }))
        .send()
        .await
        .expect("login");
    assert_eq!(res.status(), 200);
    let cookies: Vec<String> = res
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_owned))
        .collect();
    // One cookie, the same the sign-in page sets: `__Host-` binds it to this origin.
    assert_eq!(cookies.len(), 1, "{cookies:?}");
    let cookie = &cookies[0];
    assert!(cookie.starts_with("__Host-ezf_session="), "{cookie}");
    for attribute in ["Secure", "HttpOnly", "Path=/", "SameSite=Lax"] {
        assert!(cookie.contains(attribute), "{attribute} in {cookie}");
    }
    assert!(!cookie.to_ascii_lowercase().contains("domain="), "{cookie}");
    let pair = cookie.split(';').next().expect("name=value");
    let me = client
        .get(format!("{base}/v1/auth/session"))
        .header(reqwest::header::COOKIE, pair)
        .send()
        .await
        .expect("session");
    assert_eq!(me.status(), 200, "the control API reads the cookie it set");
    // The same session under the plain name, which a sibling host could have set: not read.
    let token = pair.trim_start_matches("__Host-ezf_session=");
    let tossed = client
        .get(format!("{base}/v1/auth/session"))
        .header(reqwest::header::COOKIE, format!("ezf_session={token}"))
        .send()
        .await
        .expect("session");
    assert_eq!(
        tossed.status(),
        401,
        "over https only the __Host- cookie counts"
    );
}

#[tokio::test]
async fn browsers_are_told_to_keep_to_https_only_where_the_public_url_is_https() {
    let https = TestApp::builder()
        .config(|c| c.server.public_url = Some("https://ezforge.example".into()))
        .spawn()
        .await;
    for path in [
        "/v1/health",
        "/.well-known/oauth-authorization-server",
        "/nope",
    ] {
        let res = https.get(path).await;
        assert_eq!(
            res.headers()
                .get("strict-transport-security")
                .and_then(|v| v.to_str().ok()),
            Some("max-age=31536000"),
            "{path}"
        );
    }
    // A local install (plain http, or a self-signed localhost other services share), or a
    // port of its own on a shared host (HSTS would cover every port): none.
    let local = TestApp::spawn().await;
    let res = local.get("/v1/health").await;
    assert!(res.headers().get("strict-transport-security").is_none());
    let shared = TestApp::builder()
        .config(|c| c.server.public_url = Some("https://host.corp.example:8443".into()))
        .spawn()
        .await;
    let res = shared.get("/v1/health").await;
    assert!(res.headers().get("strict-transport-security").is_none());
}
