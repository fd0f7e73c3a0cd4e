//! Processes `ezforge` starts: a clean environment (the server's env vars and a few harmless
//! variables of ours, never our secrets), output captured into the server's log with a rate
//! limit, and a whole process group stopped with SIGTERM, then SIGKILL.
//!
//! [`Supervisor`] keeps one HTTP MCP server process running: restarts it after a crash with
//! exponential backoff, stops it when idle and starts it again on the next request.

use std::ffi::OsString;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU32, Ordering::Relaxed};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{Notify, watch};
use url::Url;

use super::sandbox::{self, Confinement, Dirs, cgroup};
use crate::domain::endpoint::Endpoint;
use crate::domain::{self, Secret};
use crate::shared::logs::LogHub;

/// Variables of ours a child may see; everything else (our secrets above all) stays out.
/// A confined child gets its own `HOME` and user names; every child its own `TMPDIR`.
const INHERITED: &[&str] = &[
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TZ",
];

/// The longest line of output stored; longer ones are cut.
const MAX_LOG_LINE: usize = 8 * 1024;
/// How long a stopping process gets between SIGTERM and SIGKILL.
pub const TERM_GRACE: Duration = Duration::from_secs(5);

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
    pub tail: Arc<std::sync::Mutex<std::collections::VecDeque<String>>>,
    /// Where the process's tasks run: the runtime that outlives the HTTP workers (see
    /// [`super::Deployer::runtime`]).
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
            self.rt.spawn(capture(err, self.clone(), "warn"));
        }
        if !stdio && let Some(out) = child.stdout.take() {
            self.rt.spawn(capture(out, self.clone(), "info"));
        }
        let pgid = child.id();
        if let Some(id) = pgid {
            LIVE_GROUPS
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(id);
        }
        let cgroup = self
            .confinement
            .as_ref()
            .and_then(|c| c.cgroup())
            .map(std::path::Path::to_path_buf);
        Ok(Group {
            child,
            pgid,
            cgroup,
        })
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

    /// Keeps `line` among the last ones printed.
    fn remember(&self, line: &str) {
        let mut tail = self.tail.lock().unwrap_or_else(|e| e.into_inner());
        if tail.len() == super::diagnose::TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line.chars().take(300).collect());
    }

    /// The last lines its processes printed, oldest first.
    pub fn last_output(&self) -> Vec<String> {
        self.tail
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    pub fn log(&self, level: &'static str, message: String) {
        self.hub.write(&self.server_id, level, "process", message);
    }
}

/// Copies lines of output into the log: each cut at `MAX_LOG_LINE`, at most
/// `lines_per_second` a second (what is over is counted and reported), until the pipe closes.
pub async fn capture(pipe: impl AsyncRead + Unpin, launch: Launch, level: &'static str) {
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
            launch.remember(text);
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

/// Reads one line into `buf`, keeping at most `max` bytes of it (the rest is read and
/// discarded). Returns the bytes consumed, 0 at end of input.
pub async fn read_line_capped(
    reader: &mut (impl tokio::io::AsyncBufRead + Unpin),
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<usize> {
    let mut consumed = 0;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(consumed);
        }
        let (chunk, done) = match available.iter().position(|b| *b == b'\n') {
            Some(i) => (&available[..=i], true),
            None => (available, false),
        };
        let room = max.saturating_sub(buf.len());
        buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
        let n = chunk.len();
        reader.consume(n);
        consumed += n;
        if done {
            return Ok(consumed);
        }
    }
}

/// A per-second line budget.
pub struct OutputLimit {
    per_second: u32,
    window: Instant,
    used: u32,
    dropped: u64,
}

impl OutputLimit {
    pub fn new(per_second: u32) -> Self {
        Self {
            per_second,
            window: Instant::now(),
            used: 0,
            dropped: 0,
        }
    }

    fn roll(&mut self) {
        if self.window.elapsed() >= Duration::from_secs(1) {
            self.window = Instant::now();
            self.used = 0;
        }
    }

    pub fn allow(&mut self) -> bool {
        self.roll();
        if self.used < self.per_second {
            self.used += 1;
            true
        } else {
            self.dropped += 1;
            false
        }
    }

    /// The count of dropped lines, once a new window has begun.
    pub fn take_report(&mut self) -> Option<u64> {
        self.roll();
        if self.dropped > 0 && self.used == 0 {
            Some(std::mem::take(&mut self.dropped))
        } else {
            None
        }
    }
}

/// Sends `signal` to a whole process group.
#[allow(unsafe_code)]
fn signal_group(pgid: u32, signal: i32) {
    let Ok(pgid) = i32::try_from(pgid) else {
        return;
    };
    if pgid <= 1 {
        return;
    }
    // SAFETY: kill(2) takes plain integers and touches no memory of ours; a negative pid
    // addresses the process group the child leads (it was started with process_group(0)).
    unsafe {
        libc::kill(-pgid, signal);
    }
}

/// Sends SIGKILL to one process (never to init or to a group).
#[allow(unsafe_code)]
pub fn kill_pid(pid: i32) {
    if pid > 1 {
        // SAFETY: kill(2) takes plain integers and touches no memory of ours.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }
}

/// Process groups started and not yet ended: what a stop that cannot wait must kill.
static LIVE_GROUPS: std::sync::Mutex<std::collections::BTreeSet<u32>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

/// Kills every process group this process started that still runs (the last resort of a stop
/// that cannot wait for supervisors: a second signal, a shutdown past its timeout).
pub fn kill_all_groups() {
    let groups = std::mem::take(&mut *LIVE_GROUPS.lock().unwrap_or_else(|e| e.into_inner()));
    for pgid in groups {
        signal_group(pgid, libc::SIGKILL);
    }
}

/// A started process, the leader of its own process group. Dropped before its leader was
/// reaped (the runtime going away at exit, a start-up that failed half-way), it kills the whole
/// group: `kill_on_drop` alone would end the leader and leave what it started running.
pub struct Group {
    pub child: Child,
    /// The group's id, until its leader has been reaped and the group ended.
    pgid: Option<u32>,
    /// The server's cgroup, when the process was started in a cgroup of its own below it.
    cgroup: Option<std::path::PathBuf>,
}

impl Group {
    /// The leader's pid (0 once it has been reaped).
    pub fn pid(&self) -> u32 {
        self.pgid.unwrap_or(0)
    }

    /// Waits for the leader to exit, then ends what it left running.
    pub async fn wait(&mut self) -> std::io::Result<std::process::ExitStatus> {
        let status = self.child.wait().await;
        if let Some(pgid) = self.pgid.take() {
            self.end(pgid);
        }
        status
    }

    /// Stops the process and everything it started: SIGTERM to its group, SIGKILL after a
    /// grace (and to whatever of the group outlives its leader).
    pub async fn terminate(&mut self) {
        let Some(pgid) = self.pgid else {
            return;
        };
        signal_group(pgid, libc::SIGTERM);
        if tokio::time::timeout(TERM_GRACE, self.child.wait())
            .await
            .is_err()
        {
            signal_group(pgid, libc::SIGKILL);
            let _ = self.child.wait().await;
        }
        self.pgid = None;
        self.end(pgid);
    }

    /// After the leader has exited (on its own or stopped): kills what it left running, so
    /// that no orphan keeps the port or runs unsupervised (the group's id cannot have been
    /// reused while any of its members lives), and, with a cgroup, what left the group too.
    fn end(&self, leader_pid: u32) {
        LIVE_GROUPS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&leader_pid);
        signal_group(leader_pid, libc::SIGKILL);
        if let Some(server) = &self.cgroup {
            cgroup::kill_process(server, leader_pid);
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        // The leader has not been reaped, so the group's id is still this group's.
        if let Some(pgid) = self.pgid.take() {
            self.end(pgid);
        }
    }
}

/// How an exit reads in the log.
pub fn describe_exit(status: std::io::Result<std::process::ExitStatus>) -> String {
    match status {
        Ok(s) => match (s.code(), std::os::unix::process::ExitStatusExt::signal(&s)) {
            // The shells' convention, which the sandbox's launcher follows too.
            (Some(127), _) => {
                "exited with status 127 (command not found, or not one it may run)".into()
            }
            (Some(126), _) => {
                "exited with status 126 (it could not be run; the server's log says why)".into()
            }
            (Some(c), _) => format!("exited with status {c}"),
            (None, Some(sig)) => format!("was killed by signal {sig}"),
            _ => "exited".into(),
        },
        Err(e) => format!("could not be waited for: {e}"),
    }
}

/// A supervised process's state, as the API shows it.
#[derive(Debug, Clone, PartialEq)]
pub enum ProcState {
    Starting,
    Running {
        pid: u32,
        since_ms: i64,
    },
    /// Not running; the next request starts it.
    Stopped,
    /// Crashed; restarts at `until_ms`. `reason` says how it ended.
    Backoff {
        until_ms: i64,
        reason: String,
    },
    /// Stopped for good (replaced or deleted).
    Exited,
}

impl ProcState {
    pub fn name(&self) -> &'static str {
        match self {
            ProcState::Starting => "starting",
            ProcState::Running { .. } => "running",
            ProcState::Stopped | ProcState::Exited => "stopped",
            ProcState::Backoff { .. } => "backoff",
        }
    }
}

/// Keeps one HTTP MCP server process running.
pub struct Supervisor {
    pub launch: Launch,
    pub port: u16,
    pub url: Endpoint,
    state: watch::Sender<ProcState>,
    wake: Notify,
    stop: Notify,
    sleep: Notify,
    last_used_ms: AtomicI64,
    pub restarts: AtomicU32,
    start_timeout: Duration,
    /// Addresses beyond loopback it was last seen listening on (reachable without the front
    /// door); empty when it listens on loopback only.
    exposed: std::sync::Mutex<Vec<std::net::SocketAddr>>,
}

/// A crash-loop's longest pause between restarts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A process up this long is healthy again: its next crash restarts it at once.
const STABLE_AFTER: Duration = Duration::from_secs(60);

impl Supervisor {
    /// Starts the supervision loop; the process starts at once.
    pub fn start(launch: Launch, port: u16, start_timeout: Duration) -> Arc<Self> {
        let url = Url::parse(&format!("http://127.0.0.1:{port}/mcp"))
            .ok()
            .and_then(Endpoint::supervised)
            .expect("a loopback HTTP URL is a valid endpoint");
        let (state, _) = watch::channel(ProcState::Starting);
        let sup = Arc::new(Self {
            launch,
            port,
            url,
            state,
            wake: Notify::new(),
            stop: Notify::new(),
            sleep: Notify::new(),
            last_used_ms: AtomicI64::new(domain::now_ms()),
            restarts: AtomicU32::new(0),
            start_timeout,
            exposed: std::sync::Mutex::new(Vec::new()),
        });
        sup.launch.rt.spawn(sup.clone().run());
        sup
    }

    pub fn state(&self) -> ProcState {
        self.state.borrow().clone()
    }

    /// Where it listens beyond loopback, if anywhere.
    pub fn exposed(&self) -> Vec<std::net::SocketAddr> {
        self.exposed.lock().map(|e| e.clone()).unwrap_or_default()
    }

    /// Records what a scan of the machine's listeners found on its port, and says so in the
    /// server's log when that changed.
    pub fn set_exposed(&self, mut found: Vec<std::net::SocketAddr>) {
        found.sort();
        let Ok(mut exposed) = self.exposed.lock() else {
            return;
        };
        if *exposed == found {
            return;
        }
        if found.is_empty() {
            self.launch.log(
                "info",
                format!(
                    "the process listens on loopback only again (port {})",
                    self.port
                ),
            );
        } else {
            let on: Vec<String> = found.iter().map(ToString::to_string).collect();
            self.launch.log(
                "error",
                format!(
                    "the process listens beyond loopback or on other ports than its own ({}): reachable without the front door, its token checks and scope policy; make it listen on 127.0.0.1:$PORT only (it is given HOST=127.0.0.1 and PORT={})",
                    on.join(", "),
                    self.port
                ),
            );
        }
        *exposed = found;
    }

    pub fn touch(&self) {
        self.last_used_ms.store(domain::now_ms(), Relaxed);
    }

    pub fn idle_ms(&self) -> i64 {
        domain::now_ms() - self.last_used_ms.load(Relaxed)
    }

    /// Waits until the process accepts connections, starting it if it was stopped.
    /// `first`: a deployment's first start, which fails at the first exit instead of
    /// waiting through restarts.
    pub async fn ready(&self, timeout: Duration, first: bool) -> Result<(), String> {
        let mut rx = self.state.subscribe();
        if matches!(*rx.borrow(), ProcState::Running { .. }) {
            return Ok(());
        }
        self.wake.notify_one();
        let wait = rx.wait_for(|s| match s {
            ProcState::Running { .. } | ProcState::Exited => true,
            ProcState::Backoff { .. } => first,
            _ => false,
        });
        match tokio::time::timeout(timeout, wait).await {
            Ok(Ok(s)) => match &*s {
                ProcState::Running { .. } => Ok(()),
                ProcState::Backoff { reason, .. } => Err(format!("the process {reason}")),
                _ => Err("the process was stopped".into()),
            },
            Ok(Err(_)) => Err("the process was stopped".into()),
            Err(_) => Err(format!(
                "the process did not accept connections on port {} within {}",
                self.port,
                humantime::format_duration(timeout)
            )),
        }
    }

    /// After a refused connection: waits (briefly) until the process that was running is seen
    /// to be gone, then until its successor is ready.
    pub async fn recover(&self, timeout: Duration) -> Result<(), String> {
        let mut rx = self.state.subscribe();
        let seen = match *rx.borrow() {
            ProcState::Running { pid, .. } => Some(pid),
            _ => None,
        };
        if let Some(seen) = seen {
            let gone =
                rx.wait_for(|s| !matches!(s, ProcState::Running { pid, .. } if *pid == seen));
            if tokio::time::timeout(Duration::from_secs(2), gone)
                .await
                .is_err()
            {
                return Err("the process refuses connections but is still running".into());
            }
        }
        self.ready(timeout, false).await
    }

    /// Stops the process until the next request.
    pub fn idle_stop(&self) {
        self.sleep.notify_one();
    }

    /// Stops the process for good.
    pub fn shutdown(&self) {
        self.stop.notify_one();
    }

    /// Waits until the loop has ended.
    pub async fn exited(&self) {
        let mut rx = self.state.subscribe();
        let _ = rx.wait_for(|s| *s == ProcState::Exited).await;
    }

    async fn run(self: Arc<Self>) {
        let mut failures: u32 = 0;
        loop {
            if *self.state.borrow() == ProcState::Stopped {
                tokio::select! {
                    () = self.wake.notified() => {}
                    () = self.stop.notified() => break,
                }
            }
            self.state.send_replace(ProcState::Starting);
            // Whatever listens on the port would pass for this process (another server's, one
            // that took it while this one was stopped): it must be free before each start.
            if let Err(e) = std::net::TcpListener::bind(("127.0.0.1", self.port)) {
                let reason = format!("could not be started: port {} is not free: {e}", self.port);
                self.launch.log("error", format!("process {reason}"));
                failures += 1;
                if !self.back_off(failures, reason).await {
                    break;
                }
                continue;
            }
            let mut child = match self.launch.spawn(Some(self.port), false) {
                Ok(c) => c,
                Err(e) => {
                    let reason = format!("could not be started: {e}");
                    self.launch.log("error", format!("process {reason}"));
                    failures += 1;
                    if !self.back_off(failures, reason).await {
                        break;
                    }
                    continue;
                }
            };
            let pid = child.pid();
            self.launch.log(
                "info",
                format!("process {pid} started: {}", self.launch.command.join(" ")),
            );
            let started = Instant::now();
            // Up when the port accepts connections.
            let up = tokio::select! {
                status = child.wait() => Err(describe_exit(status)),
                r = wait_for_port(self.port, self.start_timeout) => r,
                () = self.stop.notified() => {
                    child.terminate().await;
                    break;
                }
            };
            let ended = match up {
                Ok(()) => {
                    // Asked for before it ran, these are answered now: a stop for idleness
                    // noted while the last process was being stopped, a wake-up from a request
                    // that waited for this start. Kept, they would stop this process at once
                    // or start the next one unasked.
                    let _ = self.sleep.notified().now_or_never();
                    let _ = self.wake.notified().now_or_never();
                    self.state.send_replace(ProcState::Running {
                        pid,
                        since_ms: domain::now_ms(),
                    });
                    self.touch();
                    tokio::select! {
                        status = child.wait() => describe_exit(status),
                        () = self.stop.notified() => {
                            child.terminate().await;
                            self.launch.log("info", format!("process {pid} stopped"));
                            break;
                        }
                        () = self.sleep.notified() => {
                            child.terminate().await;
                            self.launch.log("info", format!("process {pid} stopped after {} s without requests", self.idle_ms() / 1000));
                            self.state.send_replace(ProcState::Stopped);
                            continue;
                        }
                    }
                }
                Err(reason) => {
                    child.terminate().await;
                    reason
                }
            };
            failures = if started.elapsed() >= STABLE_AFTER {
                1
            } else {
                failures + 1
            };
            self.launch.log("error", format!("process {pid} {ended}"));
            self.restarts.fetch_add(1, Relaxed);
            if !self.back_off(failures, ended).await {
                break;
            }
        }
        self.state.send_replace(ProcState::Exited);
    }

    /// Waits before restart attempt `failures` (250 ms, doubling, at most 30 s); false when
    /// told to stop meanwhile.
    async fn back_off(&self, failures: u32, reason: String) -> bool {
        let delay = Duration::from_millis(250)
            .saturating_mul(1 << failures.saturating_sub(1).min(8))
            .min(MAX_BACKOFF);
        self.state.send_replace(ProcState::Backoff {
            until_ms: domain::now_ms() + delay.as_millis() as i64,
            reason,
        });
        tokio::select! {
            () = tokio::time::sleep(delay) => true,
            () = self.stop.notified() => false,
        }
    }
}

/// Polls until something accepts TCP connections on 127.0.0.1:`port`.
async fn wait_for_port(port: u16, timeout: Duration) -> Result<(), String> {
    let poll = async {
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    };
    tokio::time::timeout(timeout, poll).await.map_err(|_| {
        format!(
            "did not accept connections on port {port} within {}",
            humantime::format_duration(timeout)
        )
    })
}

/// A free loopback port, for a process that names none.
pub fn free_port() -> std::io::Result<u16> {
    let l = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    Ok(l.local_addr()?.port())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A launch of `command` in `dir`, for tests.
    pub(crate) fn launch(dir: &std::path::Path, command: &[&str]) -> Launch {
        Launch {
            server_id: "srv_test".into(),
            command: command.iter().map(|s| (*s).to_owned()).collect(),
            env: Vec::new(),
            dirs: Dirs {
                work: dir.to_path_buf(),
                tmp: dir.to_path_buf(),
            },
            confinement: None,
            hub: LogHub::default(),
            tail: Default::default(),
            lines_per_second: 10,
            rt: tokio::runtime::Handle::current(),
        }
    }

    /// Python that listens on `$PORT` (and, `slow_stop`, takes a second to stop on SIGTERM).
    fn listener(slow_stop: bool) -> String {
        let on_term = if slow_stop {
            "signal.signal(signal.SIGTERM, lambda *a: (time.sleep(1), sys.exit(0)))\n"
        } else {
            ""
        };
        format!(
            "import os,signal,socket,sys,time\n{on_term}\
             s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
             s.bind(('127.0.0.1', int(os.environ['PORT']))); s.listen()\n\
             while True: time.sleep(1)\n"
        )
    }

    fn alive(pid: u32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| {
                let state = stat.rsplit_once(") ")?.1.chars().next()?;
                Some(state != 'Z' && state != 'X')
            })
            .unwrap_or(false)
    }

    /// A stop for idleness asked for again while the last process was still stopping must not
    /// stop the next one as soon as it runs.
    #[tokio::test]
    async fn a_stale_idle_stop_does_not_stop_the_next_process() {
        let dir = tempfile::tempdir().expect("tmp");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port")
            .port();
        let launch = launch(dir.path(), &["python3", "-c", &listener(true)]);
        let sup = Supervisor::start(launch, port, Duration::from_secs(10));
        sup.ready(Duration::from_secs(10), true).await.expect("up");
        // Idle: stopped, and asked again while it is stopping (as the deployer's tick does).
        let mut rx = sup.state.subscribe();
        sup.idle_stop();
        // Let the loop take the first and begin stopping (this runtime has one thread).
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        sup.idle_stop();
        rx.wait_for(|s| *s == ProcState::Stopped)
            .await
            .expect("stopped");
        // A request starts it again; it stays up.
        sup.ready(Duration::from_secs(10), false)
            .await
            .expect("up again");
        let stopped = tokio::time::timeout(
            Duration::from_secs(2),
            rx.wait_for(|s| *s == ProcState::Stopped),
        )
        .await;
        assert!(stopped.is_err(), "the new process was stopped at once");
        sup.shutdown();
        sup.exited().await;
    }

    /// A stopped process's port taken by someone else: starting it again must not take that
    /// listener for the process (its requests would go to another program).
    #[tokio::test]
    async fn a_process_whose_port_is_taken_is_not_up() {
        let dir = tempfile::tempdir().expect("tmp");
        let port = free_port().expect("port");
        let launch = launch(dir.path(), &["python3", "-c", &listener(false)]);
        let sup = Supervisor::start(launch, port, Duration::from_secs(10));
        sup.ready(Duration::from_secs(10), true).await.expect("up");
        let mut rx = sup.state.subscribe();
        sup.idle_stop();
        rx.wait_for(|s| *s == ProcState::Stopped)
            .await
            .expect("stopped");
        let squatter = std::net::TcpListener::bind(("127.0.0.1", port)).expect("take the port");
        let woke = sup.ready(Duration::from_millis(1500), false).await;
        assert!(
            woke.is_err(),
            "another program's listener passed for the process"
        );
        assert!(
            matches!(sup.state(), ProcState::Backoff { reason, .. } if reason.contains("not free"))
        );
        drop(squatter);
        sup.shutdown();
        sup.exited().await;
    }

    /// The runtime going away at exit drops a supervisor's task with its process: the whole
    /// group must end then, not only its leader.
    #[tokio::test]
    async fn a_group_dropped_unwaited_is_killed_whole() {
        let dir = tempfile::tempdir().expect("tmp");
        let pid_file = dir.path().join("sleep.pid");
        let script = format!("sleep 300 & echo $! > '{}'; wait", pid_file.display());
        let group = launch(dir.path(), &["sh", "-c", &script])
            .spawn(None, false)
            .expect("spawn");
        let leader = group.pid();
        let mut sleeper = None;
        for _ in 0..500 {
            sleeper = std::fs::read_to_string(&pid_file)
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok());
            if sleeper.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let sleeper = sleeper.expect("the group's sleep started");
        assert!(alive(sleeper) && alive(leader));
        drop(group);
        let mut gone = false;
        for _ in 0..500 {
            if !alive(sleeper) {
                gone = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(gone, "the leader's child outlived the dropped group");
    }

    #[tokio::test]
    async fn long_lines_are_cut_and_the_rest_skipped() {
        let input: &[u8] = b"short\nabcdefghij\nlast";
        let mut r = BufReader::with_capacity(4, input);
        let mut buf = Vec::new();
        let mut lines = Vec::new();
        loop {
            buf.clear();
            if read_line_capped(&mut r, &mut buf, 5).await.expect("read") == 0 {
                break;
            }
            lines.push(String::from_utf8_lossy(&buf).into_owned());
        }
        assert_eq!(lines, ["short", "abcde", "last"]);
    }

    #[test]
    fn output_budget_counts_what_it_drops() {
        let mut l = OutputLimit::new(3);
        let allowed = (0..10).filter(|_| l.allow()).count();
        assert_eq!(allowed, 3);
        assert_eq!(l.dropped, 7);
    }
}
