#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};

use actix_web::dev::ServerHandle;
use ezforge::{App, Config};

pub const ADMIN_EMAIL: &str = "admin@example.com";
pub const ADMIN_PASSWORD: &str = "correct-horse-battery-staple";

/// A running server with its own data directory.
pub struct TestApp {
    pub address: String,
    pub port: u16,
    pub client: reqwest::Client,
    pub data_dir: PathBuf,
    handle: ServerHandle,
    reloader: ezforge::app::Reloader,
    pub state: actix_web::web::Data<ezforge::app::AppState>,
    tls_fingerprint: Option<String>,
    join: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    _tmp: Option<tempfile::TempDir>,
}

pub struct TestAppBuilder {
    config: Config,
    tmp: Option<tempfile::TempDir>,
    resolver: Option<std::sync::Arc<dyn ezforge::shared::destinations::Resolve>>,
}

/// The defaults a test starts from: built-in config, one worker, a fixed admin.
pub fn test_config(data_dir: &Path) -> Config {
    let mut config = Config::load_from(None, &[]).expect("default config is valid");
    config.server.data_dir = data_dir.to_path_buf();
    config.server.workers = 1;
    config.server.shutdown_timeout = ezforge::config::Duration::secs(1);
    config.bootstrap.admin_email = Some(ADMIN_EMAIL.into());
    config.bootstrap.admin_password = Some(ezforge::domain::Secret::new(ADMIN_PASSWORD));
    sandbox_for_tests(&mut config);
    config
}

/// Deployed programs run confined, as in production: through the ezforge binary as launcher,
/// reading the test fixtures and tools below `tests/`. Without Landlock on this kernel they run
/// unconfined, and the output says so.
fn sandbox_for_tests(config: &mut Config) {
    static NOTE: std::sync::Once = std::sync::Once::new();
    let tests = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests");
    config.deploy.sandbox.launcher = Some(PathBuf::from(env!("CARGO_BIN_EXE_ezforge")));
    // Apps of one test run are separate instances on one machine: each its own uids, as two
    // instances in production must have.
    static APPS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = APPS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let first = 200_000 + (std::process::id() % 1000) * 100_000 + n * 64;
    config.deploy.run_as_uids = [first, first + 63];
    config.deploy.sandbox.read_paths = vec![tests.clone()];
    match ezforge::deploy::sandbox::probe::landlock_abi() {
        Ok(_) => NOTE.call_once(|| reachable_by_others(&tests)),
        Err(why) => {
            NOTE.call_once(|| {
                println!("NOTE: {why}: deployed programs in these tests run unconfined")
            });
            config.deploy.sandbox.mode = ezforge::config::SandboxMode::Off;
        }
    }
}

/// When the tests run as root, deployed programs run as `nobody`, who must be able to reach
/// the fixtures: directories above them that others cannot search are opened for searching
/// (not listing), and the output says so.
fn reachable_by_others(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if !ezforge::deploy::sandbox::probe::is_root() {
        return;
    }
    for d in dir.ancestors() {
        let Ok(meta) = std::fs::metadata(d) else {
            continue;
        };
        let mode = meta.permissions().mode();
        if mode & 0o001 == 0 {
            println!(
                "NOTE: {} was not searchable by other users; made it so (o+x) for the sandboxed fixtures",
                d.display()
            );
            let _ = std::fs::set_permissions(d, std::fs::Permissions::from_mode(mode | 0o001));
        }
    }
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::builder().spawn().await
    }

    pub fn builder() -> TestAppBuilder {
        let tmp = tempfile::tempdir().expect("tempdir");
        TestAppBuilder {
            config: test_config(tmp.path()),
            tmp: Some(tmp),
            resolver: None,
        }
    }

    /// A builder reusing an existing data dir (restarts).
    pub fn builder_in(data_dir: &Path) -> TestAppBuilder {
        TestAppBuilder {
            config: test_config(data_dir),
            tmp: None,
            resolver: None,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request")
    }

    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("ezforge.db")
    }

    pub async fn reload(&self) {
        self.reloader.reload().await;
    }

    pub fn tls_fingerprint(&self) -> Option<String> {
        self.tls_fingerprint.clone()
    }

    /// Stops the server gracefully and waits until it has closed the store.
    pub async fn stop(mut self) {
        self.handle.stop(true).await;
        if let Some(join) = self.join.take() {
            join.await.expect("server task").expect("server ran");
        }
    }

    /// Keeps the data dir alive past the app (for restarts); the caller owns it.
    pub fn take_tempdir(&mut self) -> Option<tempfile::TempDir> {
        self._tmp.take()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // `stop` sends its command at once; the returned future only waits for completion.
        drop(self.handle.stop(false));
    }
}

impl TestAppBuilder {
    pub fn config(mut self, f: impl FnOnce(&mut Config)) -> Self {
        f(&mut self.config);
        self
    }

    /// Upstream names are looked up with `resolver` instead of the system's.
    pub fn resolver(
        mut self,
        resolver: std::sync::Arc<dyn ezforge::shared::destinations::Resolve>,
    ) -> Self {
        self.resolver = Some(resolver);
        self
    }

    pub async fn try_spawn(self) -> Result<TestApp, ezforge::app::StartupError> {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let data_dir = self.config.server.data_dir.clone();
        let tls = self.config.tls.mode != ezforge::config::TlsMode::Off;
        let app = match self.resolver {
            Some(r) => App::build_with(self.config, listener, r).await?,
            None => App::build(self.config, listener).await?,
        };
        let port = app.port();
        let handle = app.handle();
        let reloader = app.reloader();
        let tls_fingerprint = app.tls_fingerprint();
        let state = app.data();
        let join = tokio::spawn(app.run_until_stopped());
        let scheme = if tls { "https" } else { "http" };
        Ok(TestApp {
            address: format!("{scheme}://127.0.0.1:{port}"),
            port,
            client: client(),
            data_dir,
            handle,
            reloader,
            state,
            tls_fingerprint,
            join: Some(join),
            _tmp: self.tmp,
        })
    }

    pub async fn spawn(self) -> TestApp {
        self.try_spawn().await.expect("app starts")
    }
}

/// An app whose control rate limit never gets in the way.
pub async fn roomy() -> TestApp {
    TestApp::builder()
        .config(|c| {
            c.control.rate_limit.per_minute = 1_000_000;
            c.control.rate_limit.burst = 1_000_000;
        })
        .spawn()
        .await
}

/// A client that keeps cookies and never follows redirects (tests look at each hop).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

pub async fn json(res: reqwest::Response) -> serde_json::Value {
    let status = res.status();
    let text = res.text().await.expect("body");
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("status {status}: body is not JSON ({e}): {text}"))
}

// ---------------------------------------------------------------------------------------------
// Control API helpers (tests/api/control_*.rs).
// ---------------------------------------------------------------------------------------------

/// A password every helper-made user gets (long enough for the password rules).
pub const USER_PASSWORD: &str = "a-perfectly-fine-password";

/// A client without a cookie store: what a CLI or script sends, nothing implicit.
pub fn plain_client() -> reqwest::Client {
    // reqwest is built without a default TLS provider; the app installs one at start, but a
    // test that only runs the binary must do it itself.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// One control API answer, read completely.
#[derive(Debug)]
pub struct ApiResponse {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
    /// The body as JSON; `Null` when empty or not JSON.
    pub body: serde_json::Value,
}

impl ApiResponse {
    pub async fn read(res: reqwest::Response) -> ApiResponse {
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let text = res.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
        ApiResponse {
            status,
            headers,
            text,
            body,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// `error.code` of an error answer.
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }

    /// Panics unless the status is `want`; shows the body otherwise.
    #[track_caller]
    pub fn expect(&self, want: u16) -> &serde_json::Value {
        assert_eq!(self.status, want, "unexpected status; body: {}", self.text);
        &self.body
    }

    /// Asserts docs/api.md's error shape: `{"error":{"code","message","details"}}`.
    #[track_caller]
    pub fn assert_error_shape(&self) {
        let e = &self.body["error"];
        assert!(
            e["code"].as_str().is_some_and(
                |c| !c.is_empty() && c.chars().all(|c| c.is_ascii_uppercase() || c == '_')
            ),
            "error.code must be SCREAMING_SNAKE; status {} body: {}",
            self.status,
            self.text
        );
        assert!(
            e["message"].as_str().is_some_and(|m| !m.is_empty()),
            "error.message; body: {}",
            self.text
        );
        assert!(
            e["details"].is_object(),
            "error.details must be an object; body: {}",
            self.text
        );
    }

    /// A 422 `VALIDATION_FAILED` whose `details.fields` names `field`.
    #[track_caller]
    pub fn assert_invalid(&self, field: &str) {
        assert_eq!(
            self.status, 422,
            "expected 422 for {field}; body: {}",
            self.text
        );
        self.assert_error_shape();
        assert_eq!(self.code(), "VALIDATION_FAILED", "body: {}", self.text);
        assert!(
            self.body["error"]["details"]["fields"].get(field).is_some(),
            "details.fields must name {field}; body: {}",
            self.text
        );
    }
}

/// Sends `method path` with an optional bearer token and JSON body, from a cookie-less client
/// (so that a login answered here leaves no cookie behind to authenticate later calls).
pub async fn call(
    app: &TestApp,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&serde_json::Value>,
) -> ApiResponse {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut req = plain_client().request(method, app.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(b);
    }
    ApiResponse::read(req.send().await.expect("request")).await
}

pub async fn get_as(app: &TestApp, token: &str, path: &str) -> ApiResponse {
    call(app, "GET", path, Some(token), None).await
}

pub async fn post_as(
    app: &TestApp,
    token: &str,
    path: &str,
    body: serde_json::Value,
) -> ApiResponse {
    call(app, "POST", path, Some(token), Some(&body)).await
}

pub async fn patch_as(
    app: &TestApp,
    token: &str,
    path: &str,
    body: serde_json::Value,
) -> ApiResponse {
    call(app, "PATCH", path, Some(token), Some(&body)).await
}

pub async fn put_as(
    app: &TestApp,
    token: &str,
    path: &str,
    body: serde_json::Value,
) -> ApiResponse {
    call(app, "PUT", path, Some(token), Some(&body)).await
}

pub async fn delete_as(app: &TestApp, token: &str, path: &str) -> ApiResponse {
    call(app, "DELETE", path, Some(token), None).await
}

/// Sends raw bytes with a content type (malformed JSON, huge bodies).
pub async fn send_raw(
    app: &TestApp,
    method: &str,
    path: &str,
    token: Option<&str>,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> ApiResponse {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut req = plain_client().request(method, app.url(path)).body(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(ct) = content_type {
        req = req.header(reqwest::header::CONTENT_TYPE, ct);
    }
    ApiResponse::read(req.send().await.expect("request")).await
}

/// `POST /v1/auth/login`; returns the session token. Uses a cookie-less client so that
/// `app.client` stays unauthenticated.
pub async fn login(app: &TestApp, email: &str, password: &str) -> String {
    let res = plain_client()
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

/// Lowercase hex SHA-256, as the store keeps token hashes.
pub fn sha256_hex(s: &str) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, s.as_bytes());
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// The database file and its WAL, as bytes.
pub fn db_bytes(data_dir: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    for name in ["ezforge.db", "ezforge.db-wal", "ezforge.db-journal"] {
        if let Ok(b) = std::fs::read(data_dir.join(name)) {
            out.extend_from_slice(&b);
        }
    }
    out
}

pub fn contains_bytes(haystack: &[u8], needle: &str) -> bool {
    let n = needle.as_bytes();
    !n.is_empty() && haystack.windows(n.len()).any(|w| w == n)
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

/// Makes the stopped app's database at `path` look as version 10 left it, for a test of the
/// upgrade to 11: its table dropped and the version set back, then `sql` run (rows the old
/// version allowed). The next start applies version 11 to it.
pub fn as_version_10(path: &Path, sql: &str) {
    let conn = rusqlite::Connection::open(path).expect("open");
    conn.execute_batch(&format!(
        "DROP TABLE retired_slugs; PRAGMA user_version = 10;\n{sql}"
    ))
    .expect("back to version 10");
}
