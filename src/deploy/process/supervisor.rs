//! [`Supervisor`] keeps one HTTP MCP server process running: restarts it after a crash with
//! exponential backoff, stops it when idle and starts it again on the next request.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU32, Ordering::Relaxed};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use tokio::sync::{Notify, watch};
use url::Url;

use super::group::{Group, describe_exit};
use super::launch::Launch;
use super::ports::wait_for_port;
use crate::domain;
use crate::domain::endpoint::Endpoint;

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

/// How one started process's life ended, for the supervision loop.
enum Life {
    /// It exited, failed to come up, or crashed: restarted after a backoff. Says how.
    Ended(String),
    /// Stopped for idleness: started again on the next request.
    Idle,
    /// Told to stop: the loop ends.
    Stopped,
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

    /// The state machine: start, wait until up, run until the process ends (restarted after
    /// a backoff), is idle (stopped until woken) or is told to stop (the loop ends).
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
            let mut child = match self.launch_process() {
                Ok(c) => c,
                Err(reason) => {
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
            let ended = match self.supervise(&mut child, pid).await {
                Life::Ended(reason) => reason,
                Life::Idle => continue,
                Life::Stopped => break,
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

    /// Starts the process on its port, which must be free: whatever listens on it would pass
    /// for this process (another server's, one that took it while this one was stopped).
    fn launch_process(&self) -> Result<Group, String> {
        if let Err(e) = std::net::TcpListener::bind(("127.0.0.1", self.port)) {
            return Err(format!(
                "could not be started: port {} is not free: {e}",
                self.port
            ));
        }
        self.launch
            .spawn(Some(self.port), false)
            .map_err(|e| format!("could not be started: {e}"))
    }

    /// Waits until the started process accepts connections on its port, then runs it until
    /// its life ends.
    async fn supervise(&self, child: &mut Group, pid: u32) -> Life {
        let up = tokio::select! {
            status = child.wait() => Err(describe_exit(status)),
            r = self.comes_up(pid) => r,
            () = self.stop.notified() => {
                child.terminate().await;
                return Life::Stopped;
            }
        };
        match up {
            Ok(()) => self.serve(child, pid).await,
            Err(reason) => {
                child.terminate().await;
                Life::Ended(reason)
            }
        }
    }

    /// Whose processes this server's are (`pid`: the one it runs): its own user's, when no
    /// other server's programs run as that user (not a shared `deploy.run_as` user), else its
    /// process tree's.
    pub fn owner(&self, pid: u32) -> crate::deploy::sandbox::exposure::Owner {
        use crate::deploy::sandbox::exposure::Owner;
        self.launch
            .confinement
            .as_ref()
            .and_then(|c| c.own_uid)
            .map_or(Owner::Group(pid), Owner::Uid)
    }

    /// Waits, within the start timeout, until the process accepts connections on its port and
    /// the listener there is its own.
    async fn comes_up(&self, pid: u32) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + self.start_timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            wait_for_port(self.port, left).await?;
            if self.holds_its_port(pid).await? {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!(
                    "did not keep listening on port {} within {}",
                    self.port,
                    humantime::format_duration(self.start_timeout)
                ));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Whether what answers on the port is this process's (`Ok(false)`: nobody listens there
    /// any more, a program that let go of the port after answering). Another program that took
    /// the port while this one was starting (or stopped) would otherwise be sent its requests.
    async fn holds_its_port(&self, pid: u32) -> Result<bool, String> {
        use crate::deploy::sandbox::exposure::{PortHolder, port_holder};
        let owner = self.owner(pid);
        let port = self.port;
        let held = tokio::task::spawn_blocking(move || port_holder(owner, port)).await;
        match held.unwrap_or(PortHolder::Unknown) {
            // Unknown: no /proc to tell (the connection is all there is to go by).
            PortHolder::Owner | PortHolder::Unknown => Ok(true),
            PortHolder::Nobody => Ok(false),
            PortHolder::Other => {
                let why = format!(
                    "port {port} answers, but not from this server's processes: another program holds it, and is not sent this server's requests"
                );
                self.launch.log("error", why.clone());
                Err(why)
            }
        }
    }

    /// The process is up: it runs until it exits, is told to stop, or is stopped for
    /// idleness.
    async fn serve(&self, child: &mut Group, pid: u32) -> Life {
        // Asked for before it ran, these are answered now: a stop for idleness noted while
        // the last process was being stopped, a wake-up from a request that waited for this
        // start. Kept, they would stop this process at once or start the next one unasked.
        let _ = self.sleep.notified().now_or_never();
        let _ = self.wake.notified().now_or_never();
        self.state.send_replace(ProcState::Running {
            pid,
            since_ms: domain::now_ms(),
        });
        self.touch();
        tokio::select! {
            status = child.wait() => Life::Ended(describe_exit(status)),
            () = self.stop.notified() => {
                child.terminate().await;
                self.launch.log("info", format!("process {pid} stopped"));
                Life::Stopped
            }
            () = self.sleep.notified() => {
                child.terminate().await;
                self.launch.log("info", format!("process {pid} stopped after {} s without requests", self.idle_ms() / 1000));
                self.state.send_replace(ProcState::Stopped);
                Life::Idle
            }
        }
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

#[cfg(test)]
mod tests {
    use super::super::ports::free_port;
    use super::super::tests::launch;
    use super::*;

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
        let port = free_port(|_| false).expect("port");
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

    /// Another program that takes the port while the process is starting (after the check
    /// that it is free) is not taken for the process.
    #[tokio::test]
    async fn a_port_taken_while_the_process_starts_is_not_its() {
        let dir = tempfile::tempdir().expect("tmp");
        let port = free_port(|_| false).expect("port");
        let (started, go) = (dir.path().join("started"), dir.path().join("go"));
        // Says it runs (past the check that the port is free), and binds $PORT only once told
        // to: the squatter is in first.
        let slow = format!(
            "import os,socket,time\n\
             open({started:?}, 'w').close()\n\
             while not os.path.exists({go:?}): time.sleep(0.01)\n\
             s=socket.socket(); s.bind(('127.0.0.1', int(os.environ['PORT']))); s.listen()\n\
             while True: time.sleep(1)\n",
            started = started.display().to_string(),
            go = go.display().to_string()
        );
        let launch = launch(dir.path(), &["python3", "-c", &slow]);
        let sup = Supervisor::start(launch, port, Duration::from_secs(10));
        let deadline = Instant::now() + Duration::from_secs(10);
        while !started.exists() {
            assert!(Instant::now() < deadline, "the process never ran");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let squatter = std::net::TcpListener::bind(("127.0.0.1", port)).expect("take the port");
        let up = sup.ready(Duration::from_secs(5), true).await;
        let reason = up.expect_err("another program's listener passed for the process");
        assert!(
            reason.contains("not from this server's processes"),
            "{reason}"
        );
        // Nothing was sent to it.
        squatter.set_nonblocking(true).expect("nonblocking");
        let sent = std::iter::from_fn(|| squatter.accept().ok())
            .filter_map(|(mut c, _)| {
                use std::io::Read;
                c.set_nonblocking(false).ok()?;
                c.set_read_timeout(Some(Duration::from_millis(100))).ok()?;
                let mut buf = [0u8; 1];
                c.read(&mut buf).ok().filter(|n| *n > 0)
            })
            .count();
        assert_eq!(sent, 0, "a request reached the squatter");
        std::fs::write(&go, b"").expect("go");
        drop(squatter);
        sup.shutdown();
        sup.exited().await;
    }
}
