//! Starting a process: its command (confined or not), its clean environment, its output
//! captured into the server's log with a rate limit.

use std::ffi::OsString;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, BufReader};
use tokio::process::Command;

use super::group::Group;
use super::output::{OutputLimit, PipeOpen, Tail, read_line_capped};
use crate::deploy::sandbox::{self, Confinement, Dirs};
use crate::domain::Secret;
use crate::shared::logs::LogHub;

/// Variables of ours a child may see; everything else (our secrets above all) stays out.
/// A confined child gets its own `HOME` and user names; every child its own `TMPDIR`.
const INHERITED: &[&str] = &[
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TZ",
];

/// The longest line of output stored; longer ones are cut.
const MAX_LOG_LINE: usize = 8 * 1024;

/// Everything needed to start one of a server's processes.
#[derive(Clone)]
pub struct Launch {
    pub server_id: String,
    pub command: Vec<String>,
    pub env: Vec<(String, Secret)>,
    /// Its working directory and private temporary directory.
    pub dirs: Dirs,
    /// How it is confined; `None` with `deploy.sandbox = "off"`.
    pub confinement: Option<Arc<Confinement>>,
    pub hub: LogHub,
    pub lines_per_second: u32,
    /// The last lines it printed (all its processes), for a failure's explanation.
    pub tail: Arc<Tail>,
    /// Where the process's tasks run: the runtime that outlives the HTTP workers (see
    /// [`crate::deploy::Deployer::runtime`]).
    pub rt: tokio::runtime::Handle,
}

impl Launch {
    /// Starts the process in its own process group. `port`: an HTTP server's, the one port it
    /// may listen on (given as `PORT`). `stdio`: stdin and stdout are piped for the MCP
    /// protocol (stderr is captured); otherwise both outputs are captured.
    pub fn spawn(&self, port: Option<u16>, stdio: bool) -> std::io::Result<Group> {
        if self.command.is_empty() {
            return Err(std::io::Error::other("empty command"));
        }
        let env = self.program_env(port);
        let mut cmd = match &self.confinement {
            // The launcher runs with none of the program's variables: what it reads (the
            // dynamic loader's LD_PRELOAD, glibc's tunables) stays ours. It hands them to the
            // program once it is confined.
            Some(c) => {
                let (program, args) = c.wrap(&self.command, port);
                let mut cmd = Command::new(program);
                cmd.args(args).env_clear().envs(sandbox::encode_env(env));
                cmd
            }
            None => {
                let mut cmd = Command::new(&self.command[0]);
                cmd.args(&self.command[1..]).env_clear().envs(env);
                cmd
            }
        };
        cmd.current_dir(&self.dirs.work)
            .stdin(if stdio { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = cmd.spawn()?;
        if let Some(err) = child.stderr.take() {
            let open = self.tail.pipe_opened();
            self.rt.spawn(capture(err, self.clone(), "warn", open));
        }
        if !stdio && let Some(out) = child.stdout.take() {
            let open = self.tail.pipe_opened();
            self.rt.spawn(capture(out, self.clone(), "info", open));
        }
        let cgroup = self
            .confinement
            .as_ref()
            .and_then(|c| c.cgroup())
            .map(std::path::Path::to_path_buf);
        Ok(Group::started(child, cgroup))
    }

    /// The program's environment, in order (a later entry wins): a few variables of ours, its
    /// own directories, the server's env vars, its port.
    fn program_env(&self, port: Option<u16>) -> Vec<(OsString, OsString)> {
        let mut env: Vec<(OsString, OsString)> = INHERITED
            .iter()
            .filter_map(|name| std::env::var_os(name).map(|v| ((*name).into(), v)))
            .collect();
        for name in ["TMPDIR", "TMP", "TEMP"] {
            env.push((name.into(), self.dirs.tmp.clone().into()));
        }
        if let Some(c) = &self.confinement {
            // Its home is its own directory: what it caches (npm, pip) stays there.
            env.push(("HOME".into(), self.dirs.work.clone().into()));
            if let Some(user) = &c.user {
                env.push(("USER".into(), user.name.clone().into()));
                env.push(("LOGNAME".into(), user.name.clone().into()));
            }
        }
        for (name, value) in &self.env {
            env.push((name.into(), value.expose().into()));
        }
        if let Some(port) = port {
            env.push(("PORT".into(), port.to_string().into()));
            env.push(("HOST".into(), "127.0.0.1".into()));
        }
        env
    }

    /// The last lines its processes printed, oldest first, once what they printed before
    /// exiting has been read (waiting at most a second for pipes a live process holds open).
    pub async fn last_output(&self) -> Vec<String> {
        self.tail.settled(Duration::from_secs(1)).await
    }

    pub fn log(&self, level: &'static str, message: String) {
        self.hub.write(&self.server_id, level, "process", message);
    }
}

/// Copies lines of output into the log: each cut at `MAX_LOG_LINE`, at most
/// `lines_per_second` a second (what is over is counted and reported), until the pipe closes.
async fn capture(
    pipe: impl AsyncRead + Unpin,
    launch: Launch,
    level: &'static str,
    _open: PipeOpen,
) {
    let mut reader = BufReader::with_capacity(16 * 1024, pipe);
    let mut limit = OutputLimit::new(launch.lines_per_second);
    let mut line = Vec::new();
    loop {
        // A quiet second still reports what the last one dropped (a partial line stays put).
        let read = tokio::time::timeout(
            Duration::from_secs(1),
            read_line_capped(&mut reader, &mut line, MAX_LOG_LINE),
        );
        let got = read.await;
        report_dropped(&mut limit, &launch);
        match got {
            Err(_) => continue,
            Ok(Ok(0) | Err(_)) => break,
            Ok(Ok(_)) => {}
        }
        let allowed = limit.allow();
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\r', '\n']);
        if !text.is_empty() {
            launch
                .tail
                .remember(text, crate::deploy::diagnose::TAIL_LINES);
            if allowed {
                launch.log(level, text.to_owned());
            }
        }
        line.clear();
    }
    report_dropped(&mut limit, &launch);
}

fn report_dropped(limit: &mut OutputLimit, launch: &Launch) {
    if let Some(dropped) = limit.take_report() {
        launch.log(
            "warn",
            format!(
                "{dropped} lines of output dropped (over {} a second)",
                launch.lines_per_second
            ),
        );
    }
}
