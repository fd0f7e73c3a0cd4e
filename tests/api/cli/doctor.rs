//! Issue 20, item 7: `ezforge doctor`, the binary as an operator runs it — on a running
//! ezforge's installation (its data directory, whose lock the server holds), and on MCP server
//! URLs: ezforge's own (path and host routing) and a deliberately misconfigured one.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};

use crate::cli::fake_mcp_auth::MisconfiguredMcp;
use crate::deploy::deployments::{deploy, fixture, world_with};
use crate::fakes::{DocServer, FakeUpstream, SigningKey, TestIssuer};
use crate::helpers::TestApp;

const BIN: &str = env!("CARGO_BIN_EXE_ezforge");

/// What a doctor run printed and how it ended.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", self.stdout, self.stderr))
    }
}

/// `ezforge doctor ARGS…` with nothing of this process's environment but PATH.
async fn doctor(args: &[&str]) -> Run {
    let home = tempfile::tempdir().expect("home");
    let out = tokio::time::timeout(
        Duration::from_secs(90),
        tokio::process::Command::new(BIN)
            .arg("doctor")
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", home.path())
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("doctor ends")
    .expect("doctor runs");
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    run
}

/// The check `id` of a JSON report.
fn check<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["id"] == id))
        .unwrap_or_else(|| panic!("no check {id}: {report:#}"))
}

fn status<'a>(report: &'a Value, id: &str) -> &'a str {
    check(report, id)["status"].as_str().unwrap_or("")
}

/// The message of check `id`.
fn message<'a>(report: &'a Value, id: &str) -> &'a str {
    check(report, id)["message"].as_str().unwrap_or("")
}

/// The fix of check `id`.
fn fix<'a>(report: &'a Value, id: &str) -> &'a str {
    check(report, id)["fix"].as_str().unwrap_or("")
}

/// The check `id` whose message names `what` (checks of one kind for several issuers).
fn about<'a>(report: &'a Value, id: &str, what: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .and_then(|c| {
            c.iter()
                .find(|c| c["id"] == id && c["message"].as_str().is_some_and(|m| m.contains(what)))
        })
        .unwrap_or_else(|| panic!("no {id} about {what}: {report:#}"))
}

/// Every check not `ok`, for assertion messages.
fn not_ok(report: &Value) -> Vec<&Value> {
    report["checks"]
        .as_array()
        .map(|c| c.iter().filter(|c| c["status"] != "ok").collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn doctor_url_finds_nothing_to_fix_on_a_managed_server() {
    let app = TestApp::spawn().await;
    let up = FakeUpstream::start().await;
    app.new_server("weather", &up.url).create().await;
    let url = format!("{}/mcp/weather", app.address);
    let run = doctor(&["--json", &url]).await;
    let report = run.json();
    assert_eq!(run.code, 0, "{report:#}");
    assert_eq!(report["fail"], 0, "{:#?}", not_ok(&report));
    assert_eq!(report["warn"], 0, "{:#?}", not_ok(&report));
    for id in [
        "url",
        "challenge",
        "challenge.resource_metadata",
        "challenge.scope",
        "prm.challenge",
        "prm.path",
        "prm.root",
        "prm.authorization_servers",
        "resource",
        "as.metadata",
        "as.issuer",
        "as.endpoints",
        "as.pkce",
        "as.registration",
        "as.iss",
    ] {
        assert_eq!(status(&report, id), "ok", "{id}: {report:#}");
    }
    assert!(
        message(&report, "as.metadata").contains("RFC 8414")
            && message(&report, "as.metadata").contains("OpenID (appended)"),
        "{report:#}"
    );
    // The text form: one line per check, then the counts.
    let text = doctor(&[&url]).await;
    assert_eq!(text.code, 0);
    assert!(
        text.stdout.starts_with(&format!("ezforge doctor: {url}\n")),
        "{}",
        text.stdout
    );
    assert!(text.stdout.contains("\nok    as.pkce "), "{}", text.stdout);
    assert!(
        text.stdout.ends_with("15 ok, 0 warn, 0 fail\n"),
        "{}",
        text.stdout
    );
}

#[tokio::test]
async fn doctor_url_finds_nothing_to_fix_under_host_routing() {
    let host = "weather.mcp.example.test";
    let app = TestApp::builder()
        .config(|c| {
            c.gateway.routing = ezforge::config::Routing::Host;
            c.gateway.server_domain = Some("mcp.example.test".into());
            c.tls.mode = ezforge::config::TlsMode::SelfSigned;
            c.tls.names = vec![host.into()];
        })
        .spawn()
        .await;
    let up = FakeUpstream::start().await;
    app.new_server("weather", &up.url).create().await;
    let cert = app.data_dir.join("tls/cert.pem");
    let resolve = format!("{host}=127.0.0.1:{}", app.port);
    let url = format!("https://{host}");
    let run = doctor(&[
        "--json",
        &url,
        "--cacert",
        &cert.display().to_string(),
        "--resolve",
        &resolve,
    ])
    .await;
    let report = run.json();
    assert_eq!(run.code, 0, "{report:#}");
    assert_eq!(report["fail"], 0, "{:#?}", not_ok(&report));
    assert_eq!(report["warn"], 0, "{:#?}", not_ok(&report));
    // No path: the root well-known form is the only one, and it is the challenge's.
    assert_eq!(status(&report, "prm.well_known"), "ok");
    assert!(
        message(&report, "resource").starts_with("https://weather.mcp.example.test"),
        "{report:#}"
    );
    // Without being told to trust the certificate, doctor refuses it as clients would, and
    // says how to look past it.
    let untrusted = doctor(&["--json", &url, "--resolve", &resolve]).await;
    let report = untrusted.json();
    assert_eq!(untrusted.code, 1);
    assert_eq!(status(&report, "reach"), "fail", "{report:#}");
    assert!(
        fix(&report, "reach").contains("--insecure") && fix(&report, "reach").contains("--cacert"),
        "{report:#}"
    );
    // --insecure looks past it, and says so.
    let insecure = doctor(&["--json", &url, "--resolve", &resolve, "--insecure"]).await;
    let report = insecure.json();
    assert_eq!(insecure.code, 0, "{report:#}");
    assert_eq!(status(&report, "tls"), "warn");
    assert_eq!(report["warn"], 1, "{:#?}", not_ok(&report));
}

#[tokio::test]
async fn doctor_url_names_each_mistake_of_a_misconfigured_server_with_its_fix() {
    let fake = MisconfiguredMcp::start().await;
    let url = format!("{}/a/mcp", fake.origin);
    let run = doctor(&["--json", &url]).await;
    let report = run.json();
    assert_eq!(run.code, 1, "{report:#}");
    // The challenge names no metadata: the fix is the header to send.
    assert_eq!(status(&report, "challenge"), "ok");
    assert_eq!(status(&report, "challenge.resource_metadata"), "fail");
    assert!(
        fix(&report, "challenge.resource_metadata").contains(&format!(
            "resource_metadata=\"{}/.well-known/oauth-protected-resource/a/mcp\"",
            fake.origin
        )),
        "{report:#}"
    );
    assert_eq!(status(&report, "challenge.scope"), "warn");
    // The metadata is found where clients look, but for another resource.
    assert_eq!(status(&report, "prm.path"), "ok");
    assert_eq!(status(&report, "resource"), "fail");
    assert_eq!(
        fix(&report, "resource"),
        format!("set \"resource\": \"{url}\", the URL clients are given")
    );
    // The authorization server: another issuer, no S256, nothing to register with, no iss,
    // a token endpoint in clear.
    assert_eq!(status(&report, "as.metadata"), "ok");
    assert_eq!(status(&report, "as.issuer"), "fail");
    assert!(
        message(&report, "as.issuer").contains(&format!("says {}/other", fake.origin)),
        "{report:#}"
    );
    assert!(fix(&report, "as.issuer").contains(&format!("exactly {}/as", fake.origin)));
    assert_eq!(status(&report, "as.pkce"), "fail");
    assert!(fix(&report, "as.pkce").contains("\"code_challenge_methods_supported\": [\"S256\"]"));
    assert_eq!(status(&report, "as.endpoints"), "fail");
    assert!(
        message(&report, "as.endpoints").contains("token_endpoint http://auth.example.com/token"),
        "{report:#}"
    );
    assert_eq!(status(&report, "as.registration"), "warn");
    assert_eq!(status(&report, "as.iss"), "warn");
    assert_eq!(report["fail"], 5, "{:#?}", not_ok(&report));
    // Text: each failed line carries its fix.
    let text = doctor(&[&url]).await;
    assert_eq!(text.code, 1);
    let pkce = text
        .stdout
        .lines()
        .find(|l| l.starts_with("fail  as.pkce"))
        .unwrap_or_else(|| panic!("{}", text.stdout));
    assert!(pkce.contains("; fix: support PKCE with S256"), "{pkce}");
}

#[tokio::test]
async fn doctor_url_reports_missing_metadata_redirects_and_unprotected_servers() {
    let fake = MisconfiguredMcp::start().await;
    // Metadata named by the challenge and looked for everywhere else: served nowhere.
    let run = doctor(&["--json", &format!("{}/b/mcp", fake.origin)]).await;
    let report = run.json();
    assert_eq!(run.code, 1);
    assert_eq!(status(&report, "challenge.resource_metadata"), "ok");
    assert_eq!(status(&report, "prm"), "fail", "{report:#}");
    let prm = message(&report, "prm");
    for place in [
        format!("{}/nowhere: HTTP 404", fake.origin),
        format!(
            "{}/.well-known/oauth-protected-resource/b/mcp: HTTP 404",
            fake.origin
        ),
        format!(
            "{}/.well-known/oauth-protected-resource: HTTP 404",
            fake.origin
        ),
    ] {
        assert!(prm.contains(&place), "{place} in {prm}");
    }
    assert!(
        report["checks"]
            .as_array()
            .is_some_and(|c| !c.iter().any(|c| c["id"] == "as.pkce"))
    );
    // A redirect is not followed: clients post to the URL they were given.
    let moved = doctor(&["--json", &format!("{}/moved/mcp", fake.origin)]).await;
    let report = moved.json();
    assert_eq!(moved.code, 1);
    assert!(
        message(&report, "challenge").contains(&format!("{}/moved/mcp/", fake.origin)),
        "{report:#}"
    );
    // A challenge leading to a cloud metadata service: not followed.
    let ll = doctor(&["--json", &format!("{}/ll/mcp", fake.origin)]).await;
    let report = ll.json();
    assert_eq!(status(&report, "prm.challenge"), "fail", "{report:#}");
    assert!(
        message(&report, "prm.challenge").contains("not fetched"),
        "{report:#}"
    );
    // A server that asks for no token: a warning, and nothing else to check.
    let open = doctor(&["--json", &format!("{}/open/mcp", fake.origin)]).await;
    let report = open.json();
    assert_eq!(open.code, 0, "{report:#}");
    assert_eq!(status(&report, "challenge"), "warn");
    assert_eq!(report["checks"].as_array().map(Vec::len), Some(2));
    // Nothing listening; not a URL; flags that need a URL.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let gone = doctor(&["--json", &format!("http://127.0.0.1:{port}/mcp")]).await;
    assert_eq!(gone.code, 1);
    assert!(
        message(&gone.json(), "reach").contains("Connection refused"),
        "{}",
        gone.stdout
    );
    let bad = doctor(&["--json", "ftp://example.com/mcp"]).await;
    assert_eq!(bad.code, 1);
    assert_eq!(status(&bad.json(), "url"), "fail");
    let refused = doctor(&["--insecure"]).await;
    assert_eq!(
        refused.code, 2,
        "clap refuses --insecure without a URL: {}",
        refused.stderr
    );
    let bad_resolve = doctor(&["https://a.example/mcp", "--resolve", "nonsense"]).await;
    assert_eq!(bad_resolve.code, 1);
    assert!(
        bad_resolve.stderr.contains("NAME=IP[:PORT]"),
        "{}",
        bad_resolve.stderr
    );
}

/// A config file for doctor that points at a running app's data directory and listener.
fn config_for(app: &TestApp, extra: &str) -> tempfile::NamedTempFile {
    let file = tempfile::Builder::new()
        .suffix(".toml")
        .tempfile()
        .expect("config");
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:{}\"\ndata_dir = \"{}\"\n{extra}",
        app.port,
        app.data_dir.display()
    );
    std::fs::write(file.path(), text).expect("write config");
    file
}

fn path_arg(p: &Path) -> String {
    p.display().to_string()
}

#[tokio::test]
async fn doctor_checks_a_running_installation_without_taking_its_lock() {
    let app = TestApp::spawn().await;
    let up = FakeUpstream::start().await;
    app.new_server("up", &up.url).create().await;
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        format!(
            "http://127.0.0.1:{}/mcp",
            l.local_addr().expect("addr").port()
        )
    };
    app.new_server("down", &dead).create().await;
    // Stored before the destination rules refused it: the front door would not go there, and
    // neither does doctor.
    app.new_server("metadata", &up.url).create().await;
    app.store_legacy_upstream("metadata", "http://169.254.169.254/mcp")
        .await;
    // As ezforge makes it (the test's temporary directory is 0755).
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&app.data_dir, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let config = config_for(&app, "");
    let run = doctor(&["--config", &path_arg(config.path()), "--json"]).await;
    let report = run.json();
    assert_eq!(run.code, 1, "the dead upstream fails: {report:#}");
    for id in [
        "config",
        "permissions.data_dir",
        "permissions.files",
        "lock",
        "tls",
        "database",
        "master_key",
        "listener",
        "public_url",
        "public_url.issuer",
        "upstream.up",
        "clock",
    ] {
        assert_eq!(status(&report, id), "ok", "{id}: {:#}", check(&report, id));
    }
    assert!(
        message(&report, "lock").contains(&format!("pid {}", std::process::id())),
        "{report:#}"
    );
    assert_eq!(status(&report, "upstream.down"), "fail");
    assert!(
        message(&report, "upstream.down").contains("Connection refused"),
        "{report:#}"
    );
    assert!(
        fix(&report, "upstream.down").contains("ezforge deploy down --upstream URL"),
        "{report:#}"
    );
    assert_eq!(status(&report, "upstream.metadata"), "fail");
    let refused = message(&report, "upstream.metadata");
    assert!(
        refused.contains("link-local") && refused.contains("the front door refuses it too"),
        "{report:#}"
    );
    for id in ["sandbox", "disk", "exposure"] {
        check(&report, id);
    }
    // The server still holds its lock, and serves.
    let err = ezforge::data_dir::lock(&app.data_dir).expect_err("still held");
    assert!(err.to_string().contains("another ezforge"), "{err}");
    assert_eq!(app.get("/v1/health").await.status(), 200);
}

#[tokio::test]
async fn doctor_on_a_stopped_installation_reports_loose_permissions_and_a_lost_master_key() {
    let mut app = TestApp::spawn().await;
    let tmp = app.take_tempdir().expect("tempdir");
    let dir = app.data_dir.clone();
    let config = config_for(&app, "");
    app.stop().await;
    use std::os::unix::fs::PermissionsExt;
    let set = |p: &Path, mode| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod")
    };
    set(&dir, 0o775);
    set(&dir.join("master.key"), 0o644);
    let run = doctor(&["--config", &path_arg(config.path()), "--json"]).await;
    let report = run.json();
    assert_eq!(run.code, 1, "{report:#}");
    assert_eq!(status(&report, "lock"), "warn");
    assert!(
        message(&report, "lock").contains("no server is running"),
        "{report:#}"
    );
    assert_eq!(status(&report, "permissions.data_dir"), "fail");
    assert_eq!(
        fix(&report, "permissions.data_dir"),
        format!("chmod 700 {}", dir.display())
    );
    assert_eq!(status(&report, "permissions.files"), "fail");
    assert_eq!(
        fix(&report, "permissions.files"),
        format!("chmod 600 {}", dir.join("master.key").display())
    );
    // Nothing runs: nothing of the running server was asked.
    let ids: Vec<&str> = report["checks"]
        .as_array()
        .map(|c| c.iter().filter_map(|c| c["id"].as_str()).collect())
        .unwrap_or_default();
    assert!(
        !ids.contains(&"listener") && !ids.contains(&"exposure"),
        "{ids:?}"
    );
    // The key lost: the encrypted data cannot be read; said before a start makes a new key.
    std::fs::remove_file(dir.join("master.key")).expect("rm");
    let lost = doctor(&["--config", &path_arg(config.path()), "--json"]).await;
    let report = lost.json();
    assert_eq!(status(&report, "master_key"), "fail");
    assert!(
        fix(&report, "master_key").contains("restore master.key"),
        "{report:#}"
    );
    assert!(!dir.join("master.key").exists(), "doctor makes nothing");
    drop(tmp);
}

#[tokio::test]
async fn doctor_with_a_broken_config_says_so_once() {
    let file = tempfile::Builder::new()
        .suffix(".toml")
        .tempfile()
        .expect("config");
    std::fs::write(file.path(), "[server]\nlisten = \"nowhere\"\n").expect("write");
    let run = doctor(&["--config", &path_arg(file.path()), "--json"]).await;
    let report = run.json();
    assert_eq!(run.code, 1);
    assert_eq!(
        report["checks"].as_array().map(Vec::len),
        Some(1),
        "{report:#}"
    );
    assert_eq!(status(&report, "config"), "fail");
    assert!(
        message(&report, "config").contains("server.listen"),
        "{report:#}"
    );
}

#[tokio::test]
async fn doctor_checks_byoa_issuers_as_the_server_fetches_them() {
    // One issuer with discovery and keys; one (TestIssuer) with keys only.
    let docs = DocServer::start().await;
    let key = SigningKey::generate("k1");
    let jwks_uri = docs.set("/jwks.json", json!({ "keys": [key.jwk] }));
    docs.set(
        "/.well-known/oauth-authorization-server",
        json!({
            "issuer": docs.origin,
            "authorization_endpoint": format!("{}/authorize", docs.origin),
            "token_endpoint": format!("{}/token", docs.origin),
            "jwks_uri": jwks_uri,
            "response_types_supported": ["code"],
        }),
    );
    let good = ezforge::config::ByoaConfig {
        issuer: docs.origin.clone(),
        jwks_uri,
        authorization_endpoint: format!("{}/authorize", docs.origin),
        token_endpoint: format!("{}/token", docs.origin),
    };
    let keys_only = TestIssuer::keys_only().await;
    let cas = vec![docs.ca_file.clone(), keys_only.ca_file.clone()];
    let app = TestApp::builder()
        .config(|c| {
            c.outbound.ca_files = cas.clone();
            c.outbound.allow_private_addresses = true;
        })
        .spawn()
        .await;
    let up = FakeUpstream::start().await;
    app.new_server("good", &up.url).byoa(&good).create().await;
    app.new_server("half", &up.url)
        .byoa(&keys_only.byoa_config())
        .create()
        .await;
    let outbound = format!(
        "[outbound]\nallow_private_addresses = true\nca_files = [\"{}\", \"{}\"]\n",
        cas[0].display(),
        cas[1].display()
    );
    let config = config_for(&app, &outbound);
    let run = doctor(&["--config", &path_arg(config.path()), "--json"]).await;
    let report = run.json();
    assert_eq!(about(&report, "byoa.jwks", &docs.origin)["status"], "ok");
    assert_eq!(
        about(&report, "byoa.discovery", &docs.origin)["status"],
        "ok"
    );
    assert_eq!(
        about(&report, "byoa.jwks", &keys_only.issuer)["status"],
        "ok"
    );
    let missing = about(&report, "byoa.discovery", &keys_only.issuer);
    assert_eq!(missing["status"], "fail", "{missing:#}");
    assert!(
        missing["message"].to_string().contains("404"),
        "{missing:#}"
    );
    assert_eq!(run.code, 1);
    // The issuer down: its keys cannot be fetched, and doctor says tokens cannot be verified.
    keys_only.stop().await;
    let down = doctor(&["--config", &path_arg(config.path()), "--json"]).await;
    let report = down.json();
    let jwks = about(&report, "byoa.jwks", &keys_only.issuer);
    assert_eq!(jwks["status"], "fail", "{jwks:#}");
    assert!(
        jwks["message"].to_string().contains("cannot be verified"),
        "{jwks:#}"
    );
}

#[tokio::test]
async fn doctor_finds_a_supervised_process_listening_beyond_loopback() {
    let (app, admin, _) = world_with("exposed-dr", |_| {}).await;
    let cmd = [
        "python3".to_owned(),
        fixture("http_mcp.py"),
        "--listen-all".into(),
    ];
    let r = deploy(
        &app,
        &admin,
        "exposed-dr",
        json!({"command": cmd, "transport": "http"}),
    )
    .await;
    assert_eq!(r.expect(201)["data"]["status"], "running", "{}", r.text);
    let server = crate::helpers::get_as(&app, &admin, "/v1/servers/exposed-dr").await;
    let pid = server.body["data"]["process"]["pid"]
        .as_u64()
        .unwrap_or_else(|| panic!("pid: {}", server.text));
    let config = config_for(&app, "");
    let run = doctor(&["--config", &path_arg(config.path()), "--json"]).await;
    let report = run.json();
    assert_eq!(run.code, 1, "{report:#}");
    assert_eq!(status(&report, "exposure"), "fail", "{report:#}");
    let exposed = message(&report, "exposure");
    assert!(
        exposed.contains(&format!("pid {pid} (")) && exposed.contains("listens on 0.0.0.0:"),
        "{exposed}"
    );
    assert!(fix(&report, "exposure").contains("127.0.0.1"), "{report:#}");
}
