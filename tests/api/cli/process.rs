//! The `ezforge` binary as an operator runs it: zero-config start, signals, and start-up
//! errors that must be one clear line and a non-zero exit.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_ezforge");

fn ezforge(dir: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Runs a command that must fail at start-up; returns its stderr.
async fn start_error(cmd: &mut Command) -> String {
    let out = tokio::time::timeout(Duration::from_secs(30), cmd.output())
        .await
        .expect("exits promptly")
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "must fail; stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "no panic: {stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "one error line: {stderr}");
    lines[0].to_owned()
}

/// `ezforge serve` in `dir` (on 127.0.0.1:0 unless `env` says otherwise), once ready; with
/// what it printed until then.
async fn serving(dir: &Path, env: &[(&str, &str)]) -> (Child, String) {
    let mut child = ezforge(dir)
        .arg("serve")
        .env("EZFORGE_SERVER__LISTEN", "127.0.0.1:0")
        .envs(env.iter().copied())
        .spawn()
        .expect("spawn");
    let banner = wait_ready(&mut child).await;
    (child, banner)
}

/// Runs a command that must succeed; returns its output.
async fn succeeds(cmd: &mut Command) -> std::process::Output {
    let out = tokio::time::timeout(Duration::from_secs(30), cmd.output())
        .await
        .expect("exits promptly")
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

const BANNER_END: &str = "SIGTERM stops the server";

/// Reads stdout until the banner's last line; returns everything read.
async fn wait_ready(child: &mut Child) -> String {
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut seen = String::new();
    while let Ok(Ok(Some(line))) =
        tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await
    {
        seen.push_str(&line);
        seen.push('\n');
        if line.contains(BANNER_END) {
            break;
        }
    }
    assert!(
        seen.contains(BANNER_END),
        "server did not become ready: {seen}"
    );
    seen
}

async fn terminate(child: &mut Child) -> std::process::ExitStatus {
    let pid = child.id().expect("pid").to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(status.success());
    tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("stops promptly")
        .expect("wait")
}

#[tokio::test]
async fn zero_config_start_prints_admin_once_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("tmp");
    let (mut child, banner) = serving(dir.path(), &[]).await;
    assert!(banner.contains("is ready"), "{banner}");
    assert!(banner.contains("admin@localhost"), "{banner}");
    let password_line = banner
        .lines()
        .find(|l| l.trim_start().starts_with("password"))
        .expect("password printed");
    let password = password_line.split_whitespace().last().expect("value");
    assert_eq!(password.len(), 24);
    assert!(dir.path().join("ezforge-data/ezforge.db").exists());
    assert!(
        terminate(&mut child).await.success(),
        "clean exit on SIGTERM"
    );

    // Second start: the same data, and the password is not shown again.
    let (mut child, seen) = serving(dir.path(), &[]).await;
    assert!(seen.contains("is ready"), "{seen}");
    assert!(
        !seen.contains(password) && !seen.contains("First start"),
        "password shown once only: {seen}"
    );
    assert!(terminate(&mut child).await.success());
}

#[tokio::test]
async fn admin_credentials_come_from_the_environment() {
    let dir = tempfile::tempdir().expect("tmp");
    let (mut child, banner) = serving(
        dir.path(),
        &[
            ("EZFORGE_ADMIN_EMAIL", "ops@example.com"),
            ("EZFORGE_ADMIN_PASSWORD", "a-long-enough-password"),
        ],
    )
    .await;
    assert!(banner.contains("ops@example.com"), "{banner}");
    assert!(!banner.contains("a-long-enough-password"), "{banner}");
    assert!(terminate(&mut child).await.success());
}

#[tokio::test]
async fn malformed_toml_names_the_file() {
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "[server\nlisten = 1").expect("write");
    let line = start_error(ezforge(dir.path()).args(["serve", "--config"]).arg(&cfg)).await;
    assert!(line.contains("bad.toml"), "{line}");
}

#[tokio::test]
async fn bad_duration_names_the_key_and_file() {
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "[auth]\nrefresh_token_ttl = \"a month\"\n").expect("write");
    let line = start_error(
        ezforge(dir.path())
            .args(["config", "check", "--config"])
            .arg(&cfg),
    )
    .await;
    assert!(
        line.contains("auth.refresh_token_ttl") && line.contains("c.toml"),
        "{line}"
    );
}

#[tokio::test]
async fn unknown_key_from_the_environment_names_the_variable() {
    let dir = tempfile::tempdir().expect("tmp");
    let line = start_error(
        ezforge(dir.path())
            .args(["config", "check"])
            .env("EZFORGE_GATEWAY__ROUTNG", "host"),
    )
    .await;
    assert!(
        line.contains("EZFORGE_GATEWAY__ROUTNG") || line.contains("routng"),
        "{line}"
    );
}

#[tokio::test]
async fn config_check_catches_what_serve_would_fail_on() {
    let dir = tempfile::tempdir().expect("tmp");
    for (vars, names) in [
        (&[("EZFORGE_ADMIN_PASSWORD", "short")][..], "admin_password"),
        (
            &[("EZFORGE_ADMIN_EMAIL", "not an email")][..],
            "admin_email",
        ),
        (
            &[
                ("EZFORGE_TLS__MODE", "files"),
                ("EZFORGE_TLS__CERT_FILE", "/nonexistent/cert.pem"),
                ("EZFORGE_TLS__KEY_FILE", "/nonexistent/key.pem"),
            ][..],
            "/nonexistent/cert.pem",
        ),
        (
            &[("EZFORGE_OUTBOUND__CA_FILES", r#"["/nonexistent/ca.pem"]"#)][..],
            "/nonexistent/ca.pem",
        ),
    ] {
        let mut cmd = ezforge(dir.path());
        cmd.args(["config", "check"]).envs(vars.iter().copied());
        let line = start_error(&mut cmd).await;
        assert!(line.contains(names), "{vars:?}: {line}");
    }
    assert!(
        !dir.path().join("ezforge-data").exists(),
        "a check writes nothing"
    );
    // Nor does a first start that fails them.
    for (var, value) in [
        ("EZFORGE_ADMIN_PASSWORD", "short"),
        ("EZFORGE_OUTBOUND__CA_FILES", r#"["/nonexistent/ca.pem"]"#),
    ] {
        start_error(ezforge(dir.path()).arg("serve").env(var, value)).await;
        assert!(
            !dir.path().join("ezforge-data").exists(),
            "{var}: a failed first start left its data directory"
        );
    }
}

#[tokio::test]
async fn bootstrap_settings_are_ignored_once_there_are_users() {
    let dir = tempfile::tempdir().expect("tmp");
    let (mut child, _) = serving(dir.path(), &[]).await;
    assert!(terminate(&mut child).await.success());
    // A short password left in the environment of an existing installation: not a reason to
    // refuse to start (it is used on a first start only), nor for the check to fail.
    succeeds(
        ezforge(dir.path())
            .args(["config", "check"])
            .env("EZFORGE_ADMIN_PASSWORD", "short"),
    )
    .await;
    let (mut child, _) = serving(dir.path(), &[("EZFORGE_ADMIN_PASSWORD", "short")]).await;
    assert!(terminate(&mut child).await.success());
}

#[tokio::test]
async fn an_occupied_port_is_reported() {
    let dir = tempfile::tempdir().expect("tmp");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let line = start_error(
        ezforge(dir.path())
            .arg("serve")
            .env("EZFORGE_SERVER__LISTEN", &addr),
    )
    .await;
    assert!(
        line.contains(&addr) && line.to_lowercase().contains("in use"),
        "{line}"
    );
}

#[tokio::test]
async fn an_unwritable_data_dir_is_reported() {
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, "").expect("write");
    let data = file.join("data");
    let line = start_error(
        ezforge(dir.path())
            .arg("serve")
            .env("EZFORGE_SERVER__LISTEN", "127.0.0.1:0")
            .env("EZFORGE_SERVER__DATA_DIR", &data),
    )
    .await;
    assert!(line.contains(&data.display().to_string()), "{line}");
}

#[tokio::test]
async fn a_newer_database_is_refused_by_the_binary() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("ezforge-data");
    std::fs::create_dir(&data).expect("mkdir");
    let conn = rusqlite::Connection::open(data.join("ezforge.db")).expect("open");
    conn.pragma_update(None, "user_version", 4242)
        .expect("bump");
    drop(conn);
    let line = start_error(
        ezforge(dir.path())
            .arg("serve")
            .env("EZFORGE_SERVER__LISTEN", "127.0.0.1:0"),
    )
    .await;
    assert!(
        line.contains("newer ezforge") && line.contains("4242"),
        "{line}"
    );
}

#[tokio::test]
async fn listening_beyond_loopback_without_tls_is_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    let line = start_error(
        ezforge(dir.path())
            .arg("serve")
            .env("EZFORGE_SERVER__LISTEN", "0.0.0.0:0"),
    )
    .await;
    assert!(line.contains("server.listen"), "{line}");
}

#[tokio::test]
async fn config_check_prints_effective_config_with_secrets_redacted() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = ezforge(dir.path())
        .args(["config", "check"])
        .env("EZFORGE_BOOTSTRAP__ADMIN_PASSWORD", "super-secret-value")
        .env("EZFORGE_AUTH__ACCESS_TOKEN_TTL", "10m")
        .output()
        .await
        .expect("run");
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("access_token_ttl = \"10m\""), "{stdout}");
    assert!(!stdout.contains("super-secret-value"), "{stdout}");
    assert!(stdout.contains("***"), "{stdout}");
    // What this kernel gives deployed programs.
    let sandbox: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("# sandbox:"))
        .collect();
    match ezforge::deploy::sandbox::probe::landlock_abi() {
        Ok(abi) => assert!(
            sandbox
                .iter()
                .any(|l| l.contains(&format!("Landlock ABI {abi}"))),
            "{stdout}"
        ),
        Err(_) => assert!(
            sandbox.iter().any(|l| l.contains("unavailable")),
            "{stdout}"
        ),
    }
    assert!(sandbox.iter().any(|l| l.contains("cgroup")), "{stdout}");
}

#[tokio::test]
async fn keys_rotate_and_list_and_backup_work_from_the_command_line() {
    let dir = tempfile::tempdir().expect("tmp");
    let (mut child, _) = serving(dir.path(), &[]).await;
    // While the server runs: rotate, list, back up.
    succeeds(ezforge(dir.path()).args(["keys", "rotate"])).await;
    let list = ezforge(dir.path())
        .args(["keys", "list", "--json"])
        .output()
        .await
        .expect("list");
    let keys: serde_json::Value = serde_json::from_slice(&list.stdout).expect("json");
    let statuses: Vec<&str> = keys
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|k| k["status"].as_str())
        .collect();
    assert_eq!(statuses, ["active", "retired"]);
    let backup = dir.path().join("copy.db");
    // A file of the user's that an earlier version took for its temporary file.
    let unrelated = dir.path().join("copy.partial");
    std::fs::write(&unrelated, "mine").expect("write");
    succeeds(ezforge(dir.path()).arg("backup").arg(&backup)).await;
    assert_eq!(
        std::fs::read_to_string(&unrelated).ok().as_deref(),
        Some("mine")
    );
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&backup)
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o777,
            0o600,
            "the copy holds secrets' hashes: private"
        );
    }
    let conn = rusqlite::Connection::open(&backup).expect("open");
    let n: i64 = conn
        .query_row("SELECT COUNT(*) FROM signing_keys", [], |r| r.get(0))
        .expect("count");
    assert_eq!(n, 2);
    // A second backup to the same file is refused rather than overwriting it.
    let line = start_error(ezforge(dir.path()).arg("backup").arg(&backup)).await;
    assert!(line.contains("already exists"), "{line}");
    assert!(terminate(&mut child).await.success());
}

#[tokio::test]
async fn key_commands_use_the_servers_master_key_and_never_make_one() {
    let dir = tempfile::tempdir().expect("tmp");
    let key = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
    let (mut child, _) = serving(dir.path(), &[("EZFORGE_MASTER_KEY", key)]).await;
    assert!(terminate(&mut child).await.success());
    let master_file = dir.path().join("ezforge-data/master.key");
    // Without the key (an operator's shell lacks the service's environment): refused, and no
    // new master.key, which used to seal the new signing key so the server could not start.
    let line = start_error(ezforge(dir.path()).args(["keys", "rotate"])).await;
    assert!(line.contains("no master key"), "{line}");
    assert!(!master_file.exists(), "no master key was made up");
    // Another key: refused before anything changes.
    let other = "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=";
    let line = start_error(
        ezforge(dir.path())
            .args(["keys", "rotate"])
            .env("EZFORGE_MASTER_KEY", other),
    )
    .await;
    assert!(line.contains("does not open"), "{line}");
    succeeds(
        ezforge(dir.path())
            .args(["keys", "rotate"])
            .env("EZFORGE_MASTER_KEY", key),
    )
    .await;
}

#[tokio::test]
async fn healthcheck_subcommand_reports_status() {
    let dir = tempfile::tempdir().expect("tmp");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    let (mut child, _) = serving(
        dir.path(),
        &[("EZFORGE_SERVER__LISTEN", &format!("127.0.0.1:{port}"))],
    )
    .await;
    let ok = ezforge(dir.path())
        .arg("healthcheck")
        .env("EZFORGE_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .output()
        .await
        .expect("run");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    // It says which URL it checked.
    let said = String::from_utf8_lossy(&ok.stdout);
    assert!(
        said.contains(&format!("http://127.0.0.1:{port}/v1/health")),
        "{said}"
    );
    assert!(terminate(&mut child).await.success());
    let down = ezforge(dir.path())
        .arg("healthcheck")
        .env("EZFORGE_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .output()
        .await
        .expect("run");
    assert!(!down.status.success());
}

#[tokio::test]
async fn output_into_a_closed_pipe_ends_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let dir = tempfile::tempdir().expect("tmp");
    // A reader that has already gone, as with `ezforge config check | head -0`.
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    // (`output()` would replace the pipe with its own.)
    let out = ezforge(dir.path())
        .args(["config", "check"])
        .stdout(writer)
        .spawn()
        .expect("spawn")
        .wait_with_output()
        .await
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGPIPE),
        "{:?} {stderr}",
        out.status
    );
}

#[tokio::test]
async fn users_create_makes_an_admin_who_can_sign_in() {
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().expect("tmp");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    let listen = format!("127.0.0.1:{port}");
    let (mut child, _) = serving(dir.path(), &[("EZFORGE_SERVER__LISTEN", &listen)]).await;
    // While the server runs (the first admin's password lost, say).
    let mut create = ezforge(dir.path())
        .args([
            "users",
            "create",
            "--admin",
            "--email",
            "second@example.com",
            "--password-stdin",
        ])
        .stdin(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdin = create.stdin.take().expect("stdin");
    stdin
        .write_all(b"a-long-enough-password\n")
        .await
        .expect("write");
    drop(stdin);
    let out = create.wait_with_output().await.expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("created admin second@example.com"),
        "{stdout}"
    );
    let login = crate::helpers::plain_client()
        .post(format!("http://{listen}/v1/auth/login"))
        .json(&serde_json::json!({"email": "second@example.com", "password": "a-long-enough-password"}))
        .send()
        .await
        .expect("login");
    assert_eq!(login.status(), 200);
    let session: serde_json::Value = login.json().await.expect("json");
    assert_eq!(session["data"]["user"]["role"], "admin", "{session}");
    // The same email again, a bad email, a short password: refused.
    let line =
        start_error(ezforge(dir.path()).args(["users", "create", "--email", "second@example.com"]))
            .await;
    assert!(line.contains("already exists"), "{line}");
    let line = start_error(ezforge(dir.path()).args(["users", "create", "--email", "nope"])).await;
    assert!(line.contains("--email"), "{line}");
    // Without --password-stdin, a generated password is printed once.
    let out =
        succeeds(ezforge(dir.path()).args(["users", "create", "--email", "third@example.com"]))
            .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("password (shown once): "), "{stdout}");
    assert!(terminate(&mut child).await.success());
}

/// A free port on loopback, for a server whose stdout cannot be read for its address.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Polls `url` until it answers 200, at most 30 s.
async fn answers(url: &str) -> bool {
    let client = crate::helpers::plain_client();
    for _ in 0..300 {
        if let Ok(r) = client.get(url).send().await
            && r.status() == 200
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

fn signal(child: &Child, sig: &str) {
    let pid = child.id().expect("pid").to_string();
    let status = std::process::Command::new("kill")
        .args([sig, &pid])
        .status()
        .expect("kill");
    assert!(status.success());
}

/// `ezforge serve | head -1` and a log collector that stopped reading: the server starts, keeps
/// answering while its log is dropped, and stops on SIGTERM in time.
#[tokio::test]
async fn a_server_whose_output_nobody_reads_serves_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("tmp");
    let port = free_port();
    // stdout: the reader is gone; stderr: a reader that never reads (its pipe fills up).
    let (gone, stdout) = std::io::pipe().expect("pipe");
    drop(gone);
    let (stuck, stderr) = std::io::pipe().expect("pipe");
    let mut child = ezforge(dir.path())
        .arg("serve")
        .env("EZFORGE_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("EZFORGE_SERVER__SHUTDOWN_TIMEOUT", "3s")
        .env("EZFORGE_LOGGING__LEVEL", "debug")
        .env("EZFORGE_CONTROL__RATE_LIMIT__PER_MINUTE", "100000000")
        .env("EZFORGE_CONTROL__RATE_LIMIT__BURST", "100000000")
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .expect("spawn");
    let health = format!("http://127.0.0.1:{port}/v1/health");
    assert!(answers(&health).await, "the server never answered");
    // Far more log than a pipe holds (each request logs at least one line).
    let client = crate::helpers::plain_client();
    for _ in 0..3000 {
        let r = client.get(&health).send().await.expect("answered");
        assert_eq!(r.status(), 200);
    }
    let started = std::time::Instant::now();
    signal(&child, "-TERM");
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("stopped within shutdown_timeout")
        .expect("wait");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(status.code().is_some(), "ended by a signal: {status:?}");
    drop(stuck);
}

/// An open stream holds a graceful stop up: a second signal stops at once, and without one
/// the stop ends at `shutdown_timeout` all the same.
#[tokio::test]
async fn a_second_signal_stops_at_once_and_a_stuck_stop_ends_at_its_timeout() {
    for (second, timeout, within) in [(true, "60s", 10), (false, "3s", 8)] {
        let dir = tempfile::tempdir().expect("tmp");
        let (mut child, banner) =
            serving(dir.path(), &[("EZFORGE_SERVER__SHUTDOWN_TIMEOUT", timeout)]).await;
        let url = banner
            .lines()
            .find_map(|l| l.trim().strip_prefix("control API"))
            .and_then(|l| l.split_whitespace().next())
            .expect("the control API's URL")
            .to_owned();
        let password = banner
            .lines()
            .find(|l| l.trim_start().starts_with("password"))
            .and_then(|l| l.split_whitespace().last())
            .expect("password")
            .to_owned();
        // Sign in, and open a log stream that stays open.
        let client = crate::helpers::plain_client();
        let login: serde_json::Value = client
            .post(format!("{url}/auth/login"))
            .json(&serde_json::json!({"email": "admin@localhost", "password": password}))
            .send()
            .await
            .expect("login")
            .json()
            .await
            .expect("json");
        let token = login["data"]["token"].as_str().expect("token").to_owned();
        let project: serde_json::Value = client
            .post(format!("{url}/projects"))
            .bearer_auth(&token)
            .json(&serde_json::json!({"name": "p"}))
            .send()
            .await
            .expect("project")
            .json()
            .await
            .expect("json");
        let pid = project["data"]["id"].as_str().expect("id");
        let server = client
            .post(format!("{url}/projects/{pid}/servers"))
            .bearer_auth(&token)
            .json(&serde_json::json!({"name": "s"}))
            .send()
            .await
            .expect("server");
        assert_eq!(server.status(), 201);
        let stream = client
            .get(format!("{url}/servers/s/logs/stream"))
            .bearer_auth(&token)
            .send()
            .await
            .expect("stream");
        assert_eq!(stream.status(), 200);

        let started = std::time::Instant::now();
        signal(&child, "-TERM");
        if second {
            // Still finishing the stream when the second one comes.
            assert!(
                tokio::time::timeout(Duration::from_millis(500), child.wait())
                    .await
                    .is_err(),
                "the first signal did not wait for the open stream"
            );
            signal(&child, "-TERM");
        }
        let status = tokio::time::timeout(Duration::from_secs(within), child.wait())
            .await
            .unwrap_or_else(|_| panic!("not stopped within {within} s (second signal: {second})"))
            .expect("wait");
        assert!(status.code().is_some(), "{status:?}");
        if second {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "{:?}",
                started.elapsed()
            );
        }
        drop(stream);
    }
}

/// `serve --listen` instead of the config; the banner gives the exact sign-in command, with
/// `--url` for a server not on the default address, and `--url` works before the command.
#[tokio::test]
async fn serve_listens_where_told_and_the_banner_says_how_to_sign_in() {
    let dir = tempfile::tempdir().expect("tmp");
    let port = free_port();
    let mut child = ezforge(dir.path())
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .spawn()
        .expect("spawn");
    let banner = wait_ready(&mut child).await;
    let url = format!("http://127.0.0.1:{port}");
    assert!(banner.contains(&format!("{url}/v1")), "{banner}");
    let login = format!("ezforge auth login --url {url} --email admin@localhost");
    assert!(banner.contains(&login), "{banner}");
    let password = banner
        .lines()
        .find(|l| l.trim_start().starts_with("password"))
        .and_then(|l| l.split_whitespace().last())
        .expect("password")
        .to_owned();
    let home = tempfile::tempdir().expect("home");
    let out = ezforge(dir.path())
        .args(["--url", &url, "auth", "login", "--email", "admin@localhost"])
        .env("HOME", home.path())
        .env("EZFORGE_PASSWORD", &password)
        .output()
        .await
        .expect("run");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(terminate(&mut child).await.success());
    // Beyond loopback without TLS: refused as the config would be.
    let line = start_error(ezforge(dir.path()).args(["serve", "--listen", "0.0.0.0:0"])).await;
    assert!(line.contains("server.listen"), "{line}");
}

/// A variable spelt with one underscore sets nothing: `config check` (and `serve`'s log) says
/// so and names the one meant; a misspelt key in a file is an error naming the key meant.
#[tokio::test]
async fn config_check_names_what_was_meant() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = ezforge(dir.path())
        .args(["config", "check"])
        .env("EZFORGE_SERVER_LISTEN", "0.0.0.0:80")
        .output()
        .await
        .expect("run");
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("EZFORGE_SERVER_LISTEN sets nothing")
            && stderr.contains("did you mean EZFORGE_SERVER__LISTEN?"),
        "{stderr}"
    );
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "[server]\nlisen = \"127.0.0.1:1\"\n").expect("write");
    let line = start_error(
        ezforge(dir.path())
            .args(["config", "check", "--config"])
            .arg(&cfg),
    )
    .await;
    assert!(line.contains("did you mean `listen`?"), "{line}");
}

/// `config check` reports every problem in one run, not the first only.
#[tokio::test]
async fn config_check_reports_every_problem_at_once() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = ezforge(dir.path())
        .args(["config", "check"])
        .env("EZFORGE_SERVER__LISTEN", "0.0.0.0:8080")
        .env("EZFORGE_AUTH__REGISTRATION__MODE", "token")
        .env("EZFORGE_ADMIN_PASSWORD", "short")
        .env(
            "EZFORGE_DEPLOY__SANDBOX__READ_PATHS",
            r#"["relative/path"]"#,
        )
        .output()
        .await
        .expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    for key in [
        "server.listen",
        "auth.registration.initial_access_token",
        "admin_password",
        "deploy.sandbox.read_paths",
    ] {
        assert!(
            errors.iter().any(|e| e.contains(key)),
            "{key} missing: {stderr}"
        );
    }
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        !dir.path().join("ezforge-data").exists(),
        "a check writes nothing"
    );
}
