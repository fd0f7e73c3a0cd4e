//! Deployments, env vars, logs and metrics from the CLI; the password prompt.

use super::*;

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
