//! A started process's group: waited for, stopped (SIGTERM, then SIGKILL), and never left
//! behind — what outlives its leader is killed, and every group still live can be killed at
//! once.

use std::path::PathBuf;
use std::time::Duration;

use tokio::process::Child;

use crate::deploy::sandbox::cgroup;
use crate::deploy::signals::signal_group;

/// How long a stopping process gets between SIGTERM and SIGKILL.
pub const TERM_GRACE: Duration = Duration::from_secs(5);

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
    cgroup: Option<PathBuf>,
}

impl Group {
    /// A process just started in a group of its own (and, with `cgroup`, in a cgroup of its
    /// own below the server's), counted among the live groups until it has ended.
    pub(super) fn started(child: Child, cgroup: Option<PathBuf>) -> Self {
        let pgid = child.id();
        if let Some(id) = pgid {
            LIVE_GROUPS
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(id);
        }
        Self {
            child,
            pgid,
            cgroup,
        }
    }

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

#[cfg(test)]
mod tests {
    use super::super::tests::launch;
    use super::*;

    fn alive(pid: u32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| {
                let state = stat.rsplit_once(") ")?.1.chars().next()?;
                Some(state != 'Z' && state != 'X')
            })
            .unwrap_or(false)
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
}
