//! The `ezforge` binary as a client of the control API: `auth`, `project` and `servers`
//! commands run as child processes against a TestApp, with HOME in a temporary directory.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::helpers::{ADMIN_EMAIL, ADMIN_PASSWORD, TestApp, json};

const BIN: &str = env!("CARGO_BIN_EXE_ezforge");

/// One user's shell: its own HOME (so its own credentials file) pointed at one server.
pub(crate) struct Shell {
    home: tempfile::TempDir,
    url: String,
    api_key: Option<String>,
}

pub(crate) struct Out {
    pub(crate) success: bool,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Shell {
    pub(crate) fn new(app: &TestApp) -> Self {
        Self {
            home: tempfile::tempdir().expect("home"),
            url: app.address.clone(),
            api_key: None,
        }
    }

    pub(crate) fn with_api_key(app: &TestApp, key: &str) -> Self {
        Self {
            api_key: Some(key.to_owned()),
            ..Self::new(app)
        }
    }

    pub(crate) fn creds_path(&self) -> PathBuf {
        self.home.path().join(".config/ezforge/credentials")
    }

    /// The stored session token.
    pub(crate) fn token(&self) -> String {
        let text = std::fs::read_to_string(self.creds_path()).expect("credentials file");
        let v: Value = serde_json::from_str(&text).expect("credentials are JSON");
        v["token"].as_str().expect("token").to_owned()
    }

    pub(crate) fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .current_dir(self.home.path())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.home.path())
            .env("EZFORGE_URL", &self.url)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(k) = &self.api_key {
            cmd.env("EZFORGE_API_KEY", k);
        }
        cmd
    }

    pub(crate) async fn run_with_stdin(&self, args: &[&str], stdin: Option<&str>) -> Out {
        let mut cmd = self.command(args);
        if stdin.is_some() {
            cmd.stdin(Stdio::piped());
        }
        let mut child = cmd.spawn().expect("spawn ezforge");
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().expect("stdin");
            pipe.write_all(input.as_bytes()).await.expect("write stdin");
            drop(pipe);
        }
        let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("`ezforge {}` did not finish", args.join(" ")))
            .expect("wait");
        let out = Out {
            success: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        assert!(
            !out.stderr.contains("panicked"),
            "`ezforge {}` panicked: {}",
            args.join(" "),
            out.stderr
        );
        out
    }

    pub(crate) async fn run(&self, args: &[&str]) -> Out {
        self.run_with_stdin(args, None).await
    }

    /// Runs a command that must succeed; returns its stdout.
    pub(crate) async fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args).await;
        assert!(
            out.success,
            "`ezforge {}` failed: {}{}",
            args.join(" "),
            out.stdout,
            out.stderr
        );
        out.stdout
    }

    /// Runs a command with `--json`; returns the parsed output.
    pub(crate) async fn json(&self, args: &[&str]) -> Value {
        let mut args = args.to_vec();
        args.push("--json");
        let stdout = self.ok(&args).await;
        serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("`ezforge {}`: not JSON ({e}): {stdout}", args.join(" ")))
    }

    /// Runs a command that must fail; returns its stderr, which must start with `error: `.
    pub(crate) async fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args).await;
        assert!(
            !out.success,
            "`ezforge {}` must fail: {}",
            args.join(" "),
            out.stdout
        );
        // One error, after whatever progress the command showed (a deploy's steps).
        assert!(
            out.stderr.lines().any(|l| l.starts_with("error: ")),
            "`ezforge {}`: {}",
            args.join(" "),
            out.stderr
        );
        out.stderr
    }

    pub(crate) async fn login(&self) {
        let out = self
            .run_with_stdin(
                &["auth", "login", "--email", ADMIN_EMAIL, "--password-stdin"],
                Some(&format!("{ADMIN_PASSWORD}\n")),
            )
            .await;
        assert!(out.success, "login failed: {}{}", out.stdout, out.stderr);
    }
}

pub(crate) fn ids(items: &Value, field: &str) -> Vec<String> {
    items
        .as_array()
        .expect("a JSON array")
        .iter()
        .filter_map(|i| i[field].as_str().map(str::to_owned))
        .collect()
}

/// The API's own error message for a request, to compare with what the CLI prints.
async fn api_message(app: &TestApp, token: &str, path: &str) -> String {
    let res = app
        .client
        .get(app.url(path))
        .bearer_auth(token)
        .send()
        .await
        .expect("request");
    assert!(!res.status().is_success(), "{path} must fail");
    json(res).await["error"]["message"]
        .as_str()
        .expect("error.message")
        .to_owned()
}

#[tokio::test]
async fn login_keeps_a_private_session_that_whoami_uses_and_logout_ends() {
    let app = TestApp::spawn().await;
    let sh = Shell::new(&app);
    sh.login().await;

    let path = sh.creds_path();
    let mode = std::fs::metadata(&path)
        .expect("credentials file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "credentials file mode");
    let dir_mode = std::fs::metadata(path.parent().expect("dir"))
        .expect("dir")
        .permissions()
        .mode();
    assert_eq!(dir_mode & 0o777, 0o700, "credentials dir mode");
    let stored: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("JSON");
    assert_eq!(stored["url"], app.address.as_str());
    assert_eq!(stored["email"], ADMIN_EMAIL);
    assert!(stored["expiresAt"].is_string(), "{stored}");
    let token = sh.token();
    assert!(token.starts_with("ezf_sess_"), "{token}");

    let who = sh.ok(&["auth", "whoami"]).await;
    assert!(who.contains(ADMIN_EMAIL), "{who}");
    let who = sh.json(&["auth", "whoami"]).await;
    assert_eq!(who["user"]["email"], ADMIN_EMAIL);
    assert_eq!(who["user"]["role"], "admin");

    sh.ok(&["auth", "logout"]).await;
    assert!(!path.exists(), "logout deletes the credentials file");
    let res = app
        .client
        .get(app.url("/v1/auth/session"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 401, "the session ended on the server");
    let err = sh.fails(&["auth", "whoami"]).await;
    assert!(err.contains("auth login"), "{err}");
    // Logging out again is not an error.
    sh.ok(&["auth", "logout"]).await;
}

#[tokio::test]
async fn a_wrong_password_prints_the_api_message_and_stores_nothing() {
    let app = TestApp::spawn().await;
    let sh = Shell::new(&app);
    let out = sh
        .run_with_stdin(
            &["auth", "login", "--email", ADMIN_EMAIL, "--password-stdin"],
            Some("not-the-password\n"),
        )
        .await;
    assert!(!out.success);
    assert!(
        out.stderr.starts_with("error: ")
            && out
                .stderr
                .to_lowercase()
                .contains("invalid email or password"),
        "{}",
        out.stderr
    );
    assert!(!sh.creds_path().exists());

    // Without --password-stdin, a terminal or EZFORGE_PASSWORD there is no password to send.
    let err = sh.fails(&["auth", "login", "--email", ADMIN_EMAIL]).await;
    assert!(err.contains("--password-stdin"), "{err}");
}

#[tokio::test]
async fn projects_are_created_and_listed_and_keys_are_shown_once() {
    let app = TestApp::spawn().await;
    let sh = Shell::new(&app);
    sh.login().await;

    let p = sh
        .json(&["project", "create", "Demo Project", "--slug", "demo"])
        .await;
    assert_eq!(p["slug"], "demo");
    assert_eq!(p["name"], "Demo Project");
    let project_id = p["id"].as_str().expect("id").to_owned();
    assert!(project_id.starts_with("proj_"), "{project_id}");

    let list = sh.json(&["project", "list"]).await;
    assert!(ids(&list, "slug").contains(&"demo".to_owned()), "{list}");
    let table = sh.ok(&["project", "list"]).await;
    let header = table.lines().next().expect("header");
    assert!(
        header.contains("SLUG") && header.contains("NAME"),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.contains(&project_id) && l.contains("demo")),
        "{table}"
    );

    // A live key, human output: printed once, with a line telling to save it.
    let out = sh
        .ok(&[
            "project",
            "create-key",
            "demo",
            "--name",
            "ci",
            "--scopes",
            "servers:read,servers:write",
        ])
        .await;
    let live = out
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("ezf_live_"))
        .unwrap_or_else(|| panic!("no live key printed: {out}"))
        .to_owned();
    assert!(out.to_lowercase().contains("save"), "{out}");

    // A test key with an expiry, JSON output.
    let k = sh
        .json(&[
            "project",
            "create-key",
            &project_id,
            "--name",
            "tests",
            "--scopes",
            "servers:read",
            "--expires-at",
            "2099-01-01T00:00:00Z",
            "--test",
        ])
        .await;
    let test_key = k["key"].as_str().expect("key");
    assert!(test_key.starts_with("ezf_test_"), "{k}");
    assert_eq!(k["environment"], "test");
    assert_eq!(k["scopes"], serde_json::json!(["servers:read"]));
    assert_eq!(k["expiresAt"], "2099-01-01T00:00:00Z");

    // The key alone (no session stored in this HOME) is enough, and whoami names its project.
    let keyed = Shell::with_api_key(&app, &live);
    let who = keyed.ok(&["auth", "whoami"]).await;
    assert!(who.contains("API key") && who.contains("demo"), "{who}");
    let seen = keyed.json(&["project", "list"]).await;
    assert_eq!(ids(&seen, "id"), [project_id.as_str()]);
}

#[tokio::test]
async fn project_list_walks_every_page() {
    let app = TestApp::builder()
        .config(|c| {
            c.control.rate_limit.per_minute = 100_000;
            c.control.rate_limit.burst = 10_000;
        })
        .spawn()
        .await;
    let sh = Shell::new(&app);
    sh.login().await;
    let token = sh.token();
    // More than one page at the largest page size (100).
    for i in 0..105 {
        let res = app
            .client
            .post(app.url("/v1/projects"))
            .bearer_auth(&token)
            .json(&serde_json::json!({"name": format!("Project {i}"), "slug": format!("p-{i}")}))
            .send()
            .await
            .expect("request");
        assert_eq!(
            res.status(),
            201,
            "{}",
            res.text().await.unwrap_or_default()
        );
    }
    let list = sh.json(&["project", "list"]).await;
    let slugs = ids(&list, "slug");
    for i in 0..105 {
        assert!(slugs.contains(&format!("p-{i}")), "p-{i} missing");
    }
    let mut unique = slugs.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), slugs.len(), "no project listed twice");
}

#[tokio::test]
async fn servers_their_auth_mode_and_clients_are_managed_end_to_end() {
    let app = TestApp::spawn().await;
    let sh = Shell::new(&app);
    sh.login().await;
    let token = sh.token();
    sh.json(&["project", "create", "Demo", "--slug", "demo"])
        .await;

    // create, list, get
    let s = sh
        .json(&[
            "servers",
            "create",
            "Weather",
            "--project",
            "demo",
            "--slug",
            "weather",
        ])
        .await;
    let server_id = s["id"].as_str().expect("id").to_owned();
    assert!(server_id.starts_with("srv_"), "{s}");
    assert_eq!(s["slug"], "weather");
    assert_eq!(s["authMode"], "ezforge_managed");

    let list = sh.json(&["servers", "list"]).await;
    assert!(ids(&list, "id").contains(&server_id), "{list}");
    let list = sh.json(&["servers", "list", "--project", "demo"]).await;
    assert_eq!(ids(&list, "id"), [server_id.as_str()]);
    let table = sh.ok(&["servers", "list"]).await;
    assert!(
        table.lines().next().expect("header").contains("SLUG"),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.contains(&server_id) && l.contains("weather")),
        "{table}"
    );
    let got = sh.json(&["servers", "get", "weather"]).await;
    assert_eq!(got["id"], server_id.as_str());
    let shown = sh.ok(&["servers", "get", &server_id]).await;
    assert!(shown.contains("weather"), "{shown}");

    // update: general fields, then the auth mode with the hosted CLI's flags
    let renamed = sh
        .json(&["servers", "update", "weather", "--name", "Weather Two"])
        .await;
    assert_eq!(renamed["name"], "Weather Two");
    let switched = sh
        .run(&[
            "servers",
            "update",
            "weather",
            "--auth-mode",
            "byoa",
            "--byoa-issuer",
            "https://idp.example.com",
            "--byoa-jwks-uri",
            "https://idp.example.com/.well-known/jwks.json",
            "--byoa-authorization-endpoint",
            "https://idp.example.com/oauth2/authorize",
            "--byoa-token-endpoint",
            "https://idp.example.com/oauth2/token",
        ])
        .await;
    assert!(switched.success, "{}{}", switched.stdout, switched.stderr);
    // The issuer cannot be reached from here: switched, with the warnings printed.
    assert!(
        switched
            .stderr
            .contains("warning: the issuer's keys cannot be fetched"),
        "{}",
        switched.stderr
    );
    let got = sh.json(&["servers", "get", "weather"]).await;
    assert_eq!(got["authMode"], "byoa");
    let auth = json(
        app.client
            .get(app.url(&format!("/v1/servers/{server_id}/auth")))
            .bearer_auth(&token)
            .send()
            .await
            .expect("request"),
    )
    .await;
    assert_eq!(auth["data"]["authMode"], "byoa");
    let cfg = &auth["data"]["byoaConfig"];
    assert_eq!(cfg["issuer"], "https://idp.example.com");
    assert_eq!(
        cfg["jwksUri"],
        "https://idp.example.com/.well-known/jwks.json"
    );
    assert_eq!(
        cfg["authorizationEndpoint"],
        "https://idp.example.com/oauth2/authorize"
    );
    assert_eq!(cfg["tokenEndpoint"], "https://idp.example.com/oauth2/token");

    // The API refuses a plain-http issuer (422); the CLI prints that and fails.
    sh.fails(&[
        "servers",
        "update",
        "weather",
        "--auth-mode",
        "byoa",
        "--byoa-issuer",
        "http://idp.example.com",
        "--byoa-jwks-uri",
        "https://idp.example.com/jwks",
        "--byoa-authorization-endpoint",
        "https://idp.example.com/authorize",
        "--byoa-token-endpoint",
        "https://idp.example.com/token",
    ])
    .await;
    let got = sh.json(&["servers", "get", "weather"]).await;
    assert_eq!(got["authMode"], "byoa", "a refused change changes nothing");

    // OAuth clients: add, list, remove
    let c = sh
        .json(&[
            "servers",
            "clients",
            "add",
            "weather",
            "--name",
            "Test Client",
            "--redirect-uri",
            "http://127.0.0.1:3000/callback",
            "--redirect-uri",
            "https://app.example.com/callback",
            "--scopes",
            "mcp:read,mcp:execute",
            "--trusted",
        ])
        .await;
    let client_id = c["id"].as_str().expect("id").to_owned();
    assert!(client_id.starts_with("oac_"), "{c}");
    assert_eq!(
        c["redirectUris"],
        serde_json::json!([
            "http://127.0.0.1:3000/callback",
            "https://app.example.com/callback"
        ])
    );
    assert_eq!(c["scopes"], serde_json::json!(["mcp:read", "mcp:execute"]));
    assert_eq!(c["trusted"], true);
    assert!(c.get("clientSecret").is_none_or(Value::is_null), "{c}");

    let conf = sh
        .ok(&[
            "servers",
            "clients",
            "add",
            "weather",
            "--name",
            "Backend",
            "--redirect-uri",
            "https://backend.example.com/cb",
            "--confidential",
        ])
        .await;
    assert!(conf.contains("client_secret"), "{conf}");
    assert!(conf.to_lowercase().contains("save"), "{conf}");

    let clients = sh.json(&["servers", "clients", "list", "weather"]).await;
    assert!(ids(&clients, "id").contains(&client_id), "{clients}");
    assert_eq!(clients.as_array().map(Vec::len), Some(2));
    let table = sh.ok(&["servers", "clients", "list", "weather"]).await;
    assert!(table.contains("Test Client"), "{table}");
    sh.ok(&["servers", "clients", "remove", "weather", &client_id])
        .await;
    let clients = sh.json(&["servers", "clients", "list", "weather"]).await;
    assert!(!ids(&clients, "id").contains(&client_id), "{clients}");

    // An API key reaches the servers of its project, but not the session-only auth settings.
    let key = sh
        .json(&[
            "project",
            "create-key",
            "demo",
            "--name",
            "deploy",
            "--scopes",
            "servers:read,servers:write",
        ])
        .await;
    let keyed = Shell::with_api_key(&app, key["key"].as_str().expect("key"));
    let list = keyed.json(&["servers", "list"]).await;
    assert_eq!(ids(&list, "id"), [server_id.as_str()]);
    let err = keyed
        .fails(&[
            "servers",
            "update",
            "weather",
            "--auth-mode",
            "ezforge_managed",
        ])
        .await;
    assert_eq!(err.lines().filter(|l| l.starts_with("error:")).count(), 1);
    let got = sh.json(&["servers", "get", "weather"]).await;
    assert_eq!(got["authMode"], "byoa", "the key could not change it");
    // With a rename too: refused before the rename (it used to rename, then fail).
    let before = got["name"].clone();
    let err = keyed
        .fails(&[
            "servers",
            "update",
            "weather",
            "--name",
            "Renamed",
            "--auth-mode",
            "ezforge_managed",
        ])
        .await;
    assert!(err.contains("nothing was changed"), "{err}");
    let got = sh.json(&["servers", "get", "weather"]).await;
    assert_eq!(got["name"], before, "{got}");

    // delete
    sh.ok(&["servers", "delete", "weather"]).await;
    let err = sh.fails(&["servers", "get", "weather"]).await;
    let message = api_message(&app, &token, &format!("/v1/servers/{server_id}")).await;
    assert!(err.contains(&message), "{err} vs {message}");
    let list = sh.json(&["servers", "list"]).await;
    assert!(!ids(&list, "id").contains(&server_id), "{list}");
}

#[tokio::test]
async fn errors_print_the_api_message_or_name_the_problem() {
    let app = TestApp::spawn().await;
    let sh = Shell::new(&app);

    // Not logged in: say how to log in, without asking the server.
    let err = sh.fails(&["project", "list"]).await;
    assert!(err.contains("auth login"), "{err}");

    sh.login().await;
    let token = sh.token();
    let err = sh.fails(&["servers", "get", "nope"]).await;
    let message = api_message(&app, &token, "/v1/servers/nope").await;
    assert_eq!(err.trim_end(), format!("error: {message}"));

    // Nobody listening: one line naming the URL.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let dead = format!("http://{}", closed.local_addr().expect("addr"));
    drop(closed);
    let offline = Shell {
        url: dead.clone(),
        ..Shell::with_api_key(&app, "ezf_live_whatever")
    };
    let err = offline.fails(&["servers", "list"]).await;
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(&dead), "{err}");
}

/// Issue 8 from the CLI: deploy a stdio fixture, fail one, roll back, status, env, logs, metrics.
#[tokio::test]
async fn deployments_env_logs_and_metrics_from_the_cli() {
    let app = TestApp::spawn().await;
    let sh = Shell::new(&app);
    sh.login().await;
    sh.ok(&["project", "create", "Deploys", "--slug", "deploys"])
        .await;
    sh.ok(&["servers", "create", "tools", "--project", "deploys"])
        .await;
    let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/stdio_mcp.py");
    let stdio = format!("python3 '{}'", fixture.display());

    // An env var, from stdin (never on the command line), listed by name only.
    let out = sh
        .run_with_stdin(
            &["env", "set", "tools", "GREETING", "--value-stdin"],
            Some("hello-from-env\n"),
        )
        .await;
    assert!(out.success, "{}{}", out.stdout, out.stderr);
    let listed = sh.ok(&["env", "list", "tools"]).await;
    assert!(
        listed.contains("GREETING") && !listed.contains("hello-from-env"),
        "{listed}"
    );

    let v1 = sh
        .json(&[
            "deploy",
            "tools",
            "--command",
            &stdio,
            "--stdio",
            "--label",
            "first",
        ])
        .await;
    assert_eq!(
        (v1["version"].as_i64(), v1["status"].as_str()),
        (Some(1), Some("running")),
        "{v1}"
    );
    assert_eq!(v1["target"]["transport"], "stdio");

    // A deployment failing its health check: exit 1 with the reason; v1 keeps serving.
    let failing = format!("{stdio} --fail-init");
    let err = sh
        .fails(&["deploy", "tools", "--command", &failing, "--stdio"])
        .await;
    assert!(
        err.contains("failed") && err.contains("initialize"),
        "{err}"
    );
    let status = sh.ok(&["servers", "status", "tools"]).await;
    assert!(
        status.contains("running") && status.contains("v1"),
        "{status}"
    );
    assert!(status.contains("The latest deployment failed"), "{status}");
    assert!(
        sh.fails(&["deploy", "tools", "--upstream", "ftp://x/mcp"])
            .await
            .contains("upstreamUrl")
    );

    // Another good one, then back to v1.
    sh.ok(&["deploy", "tools", "--command", &stdio, "--stdio"])
        .await;
    let listing = sh.ok(&["rollback", "tools", "--list"]).await;
    assert!(listing.contains("first"), "{listing}");
    let back = sh.json(&["rollback", "tools", "--version", "1"]).await;
    assert_eq!(
        (back["version"].as_i64(), back["type"].as_str()),
        (Some(4), Some("rollback")),
        "{back}"
    );

    // Logs: the deployment events are there, filtered by level and text.
    let logs = sh.ok(&["logs", "tools", "--search", "deployment v2"]).await;
    assert!(logs.contains("deployment v2 failed"), "{logs}");
    let errors = sh
        .ok(&["logs", "tools", "--level", "error", "--json"])
        .await;
    for line in errors.lines() {
        let e: Value = serde_json::from_str(line).expect("one JSON entry per line");
        assert_eq!(e["level"], "error", "{line}");
    }
    assert!(
        !sh.ok(&["logs", "tools", "--limit", "200"])
            .await
            .contains("hello-from-env")
    );

    let metrics = sh.ok(&["metrics", "tools", "--window", "7d"]).await;
    assert!(metrics.to_lowercase().contains("requests"), "{metrics}");
    sh.fails(&["metrics", "tools", "--window", "2h"]).await;

    sh.ok(&["env", "unset", "tools", "GREETING"]).await;
    assert!(!sh.ok(&["env", "list", "tools"]).await.contains("GREETING"));
    sh.fails(&["env", "unset", "tools", "GREETING"]).await;
}

#[tokio::test]
async fn ctrl_c_at_the_password_prompt_gives_the_terminal_its_echo_back() {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pty_interrupt.py");
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        Command::new("python3").arg(script).arg(BIN).output(),
    )
    .await
    .expect("finishes")
    .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.trim(),
        "prompt=True echo_during=False echo_after=True exit=130",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn members_are_invited_and_join_from_the_cli() {
    let app = TestApp::spawn().await;
    let admin = Shell::new(&app);
    admin.login().await;
    let admin_token = admin.token();
    crate::helpers::create_user(&app, &admin_token, "bob@example.com", "member").await;
    admin.ok(&["project", "create", "Team"]).await;

    // Owners invite; the token is printed once.
    let human = admin
        .ok(&[
            "project",
            "invite",
            "team",
            "bob@example.com",
            "--role",
            "owner",
        ])
        .await;
    assert!(human.contains("Invited bob@example.com"), "{human}");
    let token = human
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("ezf_inv_"))
        .unwrap_or_else(|| panic!("no token: {human}"))
        .to_owned();
    let pending = admin.json(&["project", "invitations", "team"]).await;
    assert_eq!(ids(&pending, "email"), ["bob@example.com"]);
    assert!(pending[0].get("inviteToken").is_none());

    // The invitee sees it, and joins signed in as the invited email.
    let bob = Shell::new(&app);
    let out = bob
        .run_with_stdin(
            &[
                "auth",
                "login",
                "--email",
                "bob@example.com",
                "--password-stdin",
            ],
            Some(&format!("{}\n", crate::helpers::USER_PASSWORD)),
        )
        .await;
    assert!(out.success, "{}", out.stderr);
    let mine = bob.json(&["project", "invitations"]).await;
    assert_eq!(ids(&mine, "email"), ["bob@example.com"]);
    let joined = bob.ok(&["project", "join", &token]).await;
    assert!(
        joined.contains("Joined project Team (team) as owner"),
        "{joined}"
    );
    let members = bob.json(&["project", "members", "team"]).await;
    assert_eq!(members.as_array().map(Vec::len), Some(2));
    let err = bob.fails(&["project", "join", &token]).await;
    assert!(err.contains("invitation not found"), "spent: {err}");

    // An email without an account makes it with the token, and is a member at once.
    let inv = admin
        .json(&["project", "invite", "team", "newbie@example.com"])
        .await;
    let newbie_token = inv["inviteToken"].as_str().expect("token").to_owned();
    let newbie = Shell::new(&app);
    let out = newbie
        .run_with_stdin(
            &["auth", "accept-invite", &newbie_token, "--password-stdin"],
            Some("a-newbie-password\n"),
        )
        .await;
    assert!(out.success, "{}", out.stderr);
    assert!(
        out.stdout.contains("Password set for newbie@example.com"),
        "{}",
        out.stdout
    );
    let out = newbie
        .run_with_stdin(
            &[
                "auth",
                "login",
                "--email",
                "newbie@example.com",
                "--password-stdin",
            ],
            Some("a-newbie-password\n"),
        )
        .await;
    assert!(out.success, "{}", out.stderr);
    let projects = newbie.json(&["project", "list"]).await;
    assert_eq!(ids(&projects, "slug"), ["team"]);

    // Withdrawn, the token is refused with the API's message.
    let inv = admin
        .json(&["project", "invite", "team", "carol@example.com"])
        .await;
    let id = inv["id"].as_str().expect("id");
    admin.ok(&["project", "withdraw", "team", id]).await;
    assert_eq!(
        admin.json(&["project", "invitations", "team"]).await,
        serde_json::json!([])
    );
    let carol = Shell::new(&app);
    let out = carol
        .run_with_stdin(
            &[
                "auth",
                "accept-invite",
                inv["inviteToken"].as_str().expect("t"),
                "--password-stdin",
            ],
            Some("a-carol-password\n"),
        )
        .await;
    assert!(!out.success);
    assert!(
        out.stderr.starts_with("error: ") && out.stderr.contains("not found"),
        "{}",
        out.stderr
    );
    // Members only: a member who is not an owner cannot invite.
    let err = newbie
        .fails(&["project", "invite", "team", "x@example.com"])
        .await;
    assert!(err.contains("owner"), "{err}");

    // An owner who is not an admin (Bob): the invitee joins from their own list by id; his
    // token makes no account.
    crate::helpers::create_user(&app, &admin_token, "dora@example.com", "member").await;
    let human = bob
        .ok(&["project", "invite", "team", "dora@example.com"])
        .await;
    assert!(human.contains("an administrator"), "{human}");
    let dora = Shell::new(&app);
    let out = dora
        .run_with_stdin(
            &[
                "auth",
                "login",
                "--email",
                "dora@example.com",
                "--password-stdin",
            ],
            Some(&format!("{}\n", crate::helpers::USER_PASSWORD)),
        )
        .await;
    assert!(out.success, "{}", out.stderr);
    let mine = dora.json(&["project", "invitations"]).await;
    let id = mine[0]["id"].as_str().expect("id").to_owned();
    assert!(id.starts_with("inv_"), "{mine}");
    let joined = dora.ok(&["project", "join", &id]).await;
    assert!(
        joined.contains("Joined project Team (team) as member"),
        "{joined}"
    );
    let inv = bob
        .json(&["project", "invite", "team", "nobody@example.com"])
        .await;
    let out = Shell::new(&app)
        .run_with_stdin(
            &[
                "auth",
                "accept-invite",
                inv["inviteToken"].as_str().expect("t"),
                "--password-stdin",
            ],
            Some("a-squatters-password\n"),
        )
        .await;
    assert!(!out.success);
    assert!(
        out.stderr.contains("an administrator creates accounts"),
        "{}",
        out.stderr
    );
}

/// A deployment shows its steps as they happen, and a failure shows what the program printed
/// last and a hint: here a stdio server deployed as HTTP, and an HTTP one as stdio.
#[tokio::test]
async fn a_deploy_shows_its_steps_and_a_failure_says_what_to_fix() {
    let app = TestApp::spawn().await;
    let sh = Shell::new(&app);
    sh.login().await;
    sh.ok(&["project", "create", "Steps", "--slug", "steps"])
        .await;
    sh.ok(&["servers", "create", "tools", "--project", "steps"])
        .await;
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let stdio = format!("python3 '{}'", fixtures.join("stdio_mcp.py").display());
    let http = format!("python3 '{}'", fixtures.join("http_mcp.py").display());

    let good = sh.run(&["deploy", "tools", "--command", &http]).await;
    assert!(good.success, "{}{}", good.stdout, good.stderr);
    for step in [
        "deployment v1 started",
        "starting the process",
        "accepts connections",
        "health check passed",
        "is serving",
    ] {
        assert!(
            good.stderr.contains(step),
            "{step:?} missing from: {}",
            good.stderr
        );
    }

    // A stdio server deployed as HTTP: it ends at once, having said "stdio".
    let err = sh.fails(&["deploy", "tools", "--command", &stdio]).await;
    assert!(err.contains("its last output:"), "{err}");
    assert!(err.contains("fixture-stdio started"), "{err}");
    assert!(err.contains("--stdio"), "{err}");

    // An HTTP server deployed as stdio: it never answers on stdin.
    let err = sh
        .fails(&[
            "deploy",
            "tools",
            "--command",
            &format!("{http} --exit-at-once"),
            "--stdio",
        ])
        .await;
    assert!(err.contains("its last output:\n"), "{err}");
    assert!(
        err.contains("PORT environment variable is required"),
        "{err}"
    );
    assert!(err.contains("hint: its output speaks of a port"), "{err}");
}
