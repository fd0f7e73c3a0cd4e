//! The `ezforge` binary as an operator runs it: zero-config start, signals, and start-up
//! errors that must be one clear line and a non-zero exit.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

mod commands;
mod config_errors;
mod signals;

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
