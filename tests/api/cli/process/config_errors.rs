//! Start-up and config errors: one clear line naming the problem, a non-zero exit.

use super::*;

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
