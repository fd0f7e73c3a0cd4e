//! Start, signals and stop.

use super::*;

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
