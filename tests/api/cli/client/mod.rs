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

mod accounts_projects;
mod deployments;
mod servers;

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
        self.run_with(args, &[], stdin).await
    }

    /// Runs a command with these environment variables besides the shell's, and `stdin`.
    pub(crate) async fn run_with(
        &self,
        args: &[&str],
        env: &[(&str, &str)],
        stdin: Option<&str>,
    ) -> Out {
        let mut cmd = self.command(args);
        cmd.envs(env.iter().copied());
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
