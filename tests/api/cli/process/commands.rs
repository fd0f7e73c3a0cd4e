//! The operator's commands: config check, keys, backup, healthcheck, users create.

use super::*;

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
