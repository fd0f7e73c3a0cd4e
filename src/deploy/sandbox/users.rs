//! The users deployed programs run as, when ezforge runs as root: by default each server a uid
//! of its own (from `deploy.run_as_uids`), so that servers are apart also where Landlock does
//! not reach (process limits, other processes' priorities, UNIX sockets, `/proc` entries), and
//! whatever a server left running can be found and ended by its uid.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Mutex;

use super::probe::{self, RunAs};
use crate::config::ProgramUser;
use crate::deploy::signals::kill_pid;

enum Plan {
    /// ezforge is not root: programs run as its user.
    Ours,
    /// Every server as this one user.
    Shared(RunAs),
    /// Each server as a uid of its own, from this range.
    PerServer { first: u32, last: u32 },
    /// No user programs may run as (why).
    Refused(String),
}

pub struct Users {
    plan: Plan,
    /// Servers' uids, as given out (per-server plan).
    given: Mutex<HashMap<String, RunAs>>,
}

impl Users {
    /// Reads `deploy.run_as` (`root`: whether ezforge runs as root).
    pub fn new(run_as: &ProgramUser, uids: (u32, u32), root: bool) -> Users {
        let plan = match (root, run_as) {
            (false, _) => Plan::Ours,
            (true, ProgramUser::PerServer) => Plan::PerServer {
                first: uids.0,
                last: uids.1,
            },
            (true, ProgramUser::Named(spec)) => {
                match probe::resolve_user(spec, Path::new("/etc/passwd")) {
                    Ok(u) => Plan::Shared(u),
                    Err(why) => Plan::Refused(why),
                }
            }
        };
        Users {
            plan,
            given: Mutex::new(HashMap::new()),
        }
    }

    /// Why programs cannot be run, if they cannot.
    pub fn problem(&self) -> Option<&str> {
        match &self.plan {
            Plan::Refused(why) => Some(why),
            _ => None,
        }
    }

    pub fn describe(&self) -> String {
        match &self.plan {
            Plan::Ours => {
                "programs run as ezforge's own user (Landlock keeps them from its files)".into()
            }
            Plan::Shared(u) => format!(
                "programs of every server run as {} (uid {}, gid {})",
                u.name, u.uid, u.gid
            ),
            Plan::PerServer { first, last } => {
                format!("each server's programs run as a uid of their own, from {first} to {last}")
            }
            Plan::Refused(why) => format!("programs cannot run: {why}"),
        }
    }

    /// Whether programs run as users other than ezforge's.
    pub fn switches(&self) -> bool {
        matches!(self.plan, Plan::Shared(_) | Plan::PerServer { .. })
    }

    /// The user a server's programs run as; `work` is its directory, whose owner records a uid
    /// given before. Blocking.
    pub fn for_server(&self, server_id: &str, work: &Path) -> Result<Option<RunAs>, String> {
        let (first, last) = match &self.plan {
            Plan::Ours => return Ok(None),
            Plan::Shared(u) => return Ok(Some(u.clone())),
            Plan::Refused(why) => return Err(why.clone()),
            Plan::PerServer { first, last } => (*first, *last),
        };
        let mut given = self.given.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(u) = given.get(server_id) {
            return Ok(Some(u.clone()));
        }
        let in_range = |uid: u32| (first..=last).contains(&uid);
        let mine = std::fs::metadata(work)
            .ok()
            .map(|m| m.uid())
            .filter(|u| in_range(*u));
        let uid = match mine {
            Some(uid) if !given.values().any(|u| u.uid == uid) => uid,
            _ => {
                let mut used: HashSet<u32> = given.values().map(|u| u.uid).collect();
                used.extend(owners(work.parent().unwrap_or(work), server_id));
                used.extend(passwd_uids());
                // Another instance's (whose directories are elsewhere) or a stranger's.
                used.extend(running_uids());
                (first..=last).find(|u| !used.contains(u)).ok_or_else(|| {
                    format!("every uid of deploy.run_as_uids ({first}-{last}) is taken")
                })?
            }
        };
        let user = RunAs {
            name: format!("ezforge-{uid}"),
            uid,
            gid: uid,
        };
        given.insert(server_id.to_owned(), user.clone());
        Ok(Some(user))
    }

    /// A server's own uid, when it has one.
    pub fn own_uid(&self, server_id: &str) -> Option<u32> {
        match self.plan {
            Plan::PerServer { .. } => self
                .given
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(server_id)
                .map(|u| u.uid),
            _ => None,
        }
    }

    /// Every uid given to a server.
    pub fn own_uids(&self) -> Vec<u32> {
        match self.plan {
            Plan::PerServer { .. } => self
                .given
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .values()
                .map(|u| u.uid)
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// The owners of the other servers' directories.
fn owners(servers: &Path, except: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir(servers) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.file_name() != except)
        .filter_map(|e| e.metadata().ok().map(|m| m.uid()))
        .collect()
}

/// The uids of the accounts this machine has.
fn passwd_uids() -> Vec<u32> {
    std::fs::read_to_string("/etc/passwd")
        .map(|t| {
            t.lines()
                .filter_map(|l| l.split(':').nth(2)?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The uids processes run as now.
fn running_uids() -> HashSet<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return HashSet::new();
    };
    entries
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.parse::<u32>().is_ok())
        })
        .filter_map(|e| uid_of(&e.path()))
        .collect()
}

/// The real uid of the process at `/proc/{pid}`.
fn uid_of(proc_dir: &Path) -> Option<u32> {
    std::fs::read_to_string(proc_dir.join("status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Kills every process running as `uid` (what a server left behind, `setsid` or not).
/// Blocking: reads `/proc`.
pub fn kill_processes_of(uid: u32) -> usize {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut killed = 0;
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if uid != 0 && uid_of(&e.path()) == Some(uid) {
            kill_pid(pid);
            killed += 1;
        }
    }
    killed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_server_gets_a_uid_of_its_own_and_keeps_it() {
        let tmp = tempfile::tempdir().expect("tmp");
        let users = Users::new(&ProgramUser::PerServer, (59990, 59992), true);
        let a = tmp.path().join("srv_a");
        let b = tmp.path().join("srv_b");
        let c = tmp.path().join("srv_c");
        let d = tmp.path().join("srv_d");
        for dir in [&a, &b, &c, &d] {
            std::fs::create_dir(dir).expect("mkdir");
        }
        let ua = users.for_server("srv_a", &a).expect("a").expect("user");
        let ub = users.for_server("srv_b", &b).expect("b").expect("user");
        assert_ne!(ua.uid, ub.uid);
        assert_eq!(ua.uid, ua.gid);
        assert_eq!(users.for_server("srv_a", &a).expect("a").expect("user"), ua);
        users.for_server("srv_c", &c).expect("c").expect("user");
        let err = users.for_server("srv_d", &d).expect_err("range used up");
        assert!(err.contains("59990-59992"), "{err}");
        assert_eq!(users.own_uid("srv_b"), Some(ub.uid));
        // Not root: ezforge's own user; a shared user: that one.
        let ours = Users::new(&ProgramUser::PerServer, (1, 2), false);
        assert_eq!(ours.for_server("srv_a", &a).expect("a"), None);
        let root = Users::new(&"0:0".into(), (1, 2), true);
        assert!(root.problem().is_some_and(|p| p.contains("root")));
        assert!(root.for_server("srv_a", &a).is_err());
    }
}
