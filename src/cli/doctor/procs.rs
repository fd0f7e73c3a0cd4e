//! Processes, from `/proc`: which process holds the data directory's lock (read without taking
//! it), and whether the processes a running server supervises listen beyond loopback —
//! reachable on their port without the front door, so without a token. Blocking.

use std::collections::HashMap;
use std::fs::File;
use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::config::Config;
use crate::data_dir::LOCK_FILE;
use crate::deploy::sandbox::exposure;

use super::report::Check;

/// The lock's holder, from `/proc/locks`: the pids of `FLOCK` write locks on inode `ino`
/// (a matching device first: some file systems show another device number there than `stat`).
pub fn parse_proc_locks(text: &str, ino: u64, dev: (u32, u32)) -> Option<u32> {
    let mut same_ino = None;
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().filter(|f| *f != "->").collect();
        // 1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF
        if fields.get(1) != Some(&"FLOCK") || fields.get(3) != Some(&"WRITE") {
            continue;
        }
        let (Some(pid), Some(id)) = (fields.get(4), fields.get(5)) else {
            continue;
        };
        let parts: Vec<&str> = id.split(':').collect();
        let [maj, min, inode] = parts.as_slice() else {
            continue;
        };
        if inode.parse::<u64>().ok() != Some(ino) {
            continue;
        }
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        let d = (
            u32::from_str_radix(maj, 16).unwrap_or(u32::MAX),
            u32::from_str_radix(min, 16).unwrap_or(u32::MAX),
        );
        if d == dev {
            return Some(pid);
        }
        same_ino.get_or_insert(pid);
    }
    same_ino
}

/// What the process is, for a message: its command line, shortened.
fn describe_pid(pid: u32) -> String {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let text: Vec<String> = cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let mut s = text.join(" ");
    if s.chars().count() > 60 {
        s = s.chars().take(57).collect::<String>() + "...";
    }
    if s.is_empty() {
        format!("pid {pid}")
    } else {
        format!("pid {pid} ({s})")
    }
}

/// Whether a server runs on this data directory, and its pid. Reads the lock without taking
/// it: from `/proc/locks`; only when that names no holder is the lock tried (shared, and let go
/// at once) to be sure.
pub fn lock_holder(data_dir: &Path) -> (Check, Option<u32>) {
    let path = data_dir.join(LOCK_FILE);
    let not_running = |why: String| {
        Check::warn(
            "lock",
            why,
            "start it (ezforge serve, or systemctl start ezforge); the checks of the running server were skipped",
        )
    };
    let meta = match std::fs::metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return (
                not_running(format!(
                    "no server has run on {} yet (no {LOCK_FILE})",
                    data_dir.display()
                )),
                None,
            );
        }
        Err(e) => {
            return (
                Check::warn(
                    "lock",
                    format!("cannot look at {}: {e}", path.display()),
                    "run doctor as the user ezforge runs as (or root)",
                ),
                None,
            );
        }
    };
    let dev = (libc::major(meta.dev()), libc::minor(meta.dev()));
    let from_proc = std::fs::read_to_string("/proc/locks")
        .ok()
        .and_then(|t| parse_proc_locks(&t, meta.ino(), dev));
    let holder = from_proc.or_else(|| held_by(&path));
    match holder {
        Some(pid) => (
            Check::ok(
                "lock",
                format!(
                    "a server is running: {} holds {LOCK_FILE}",
                    describe_pid(pid)
                ),
            ),
            Some(pid),
        ),
        None => (
            not_running(format!("no server is running on {}", data_dir.display())),
            None,
        ),
    }
}

/// Tries the lock (shared, non-blocking, released at once): the pid written in the file when
/// it is held.
fn held_by(path: &Path) -> Option<u32> {
    let file = File::open(path).ok()?;
    match file.try_lock_shared() {
        Ok(()) => {
            let _ = file.unlock();
            None
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            std::fs::read_to_string(path).ok()?.trim().parse().ok()
        }
        // Locks unsupported here (some network file systems): nothing can be said.
        Err(std::fs::TryLockError::Error(_)) => None,
    }
}

/// The TCP addresses a process listens on (empty when its sockets cannot be read).
pub fn listening(pid: u32) -> Vec<SocketAddr> {
    let inodes = exposure::socket_inodes(&[pid]);
    let mut out: Vec<SocketAddr> = exposure::listeners()
        .into_iter()
        .filter(|l| inodes.contains(&l.inode))
        .map(|l| l.addr)
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The address the running server serves on: the configured one when it listens there, else
/// (started with `serve --listen`) the one other address it listens on besides its metrics.
pub fn bound_address(
    configured: SocketAddr,
    metrics: Option<SocketAddr>,
    listening: &[SocketAddr],
) -> Option<SocketAddr> {
    if listening.is_empty() || listening.contains(&configured) {
        return None;
    }
    let others: Vec<&SocketAddr> = listening.iter().filter(|a| Some(**a) != metrics).collect();
    match others.as_slice() {
        [one] => Some(**one),
        _ => None,
    }
}

/// One process: pid, parent, real uid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proc {
    pub pid: u32,
    pub ppid: u32,
    pub uid: u32,
}

fn processes() -> Vec<Proc> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // pid (comm) state ppid …; comm may hold spaces and parentheses.
            let rest = &stat[stat.rfind(')')? + 1..];
            let ppid = rest.split_whitespace().nth(1)?.parse().ok()?;
            let uid = std::fs::metadata(format!("/proc/{pid}")).ok()?.uid();
            Some(Proc { pid, ppid, uid })
        })
        .collect()
}

/// The processes a server supervises: its descendants, and (when each server's programs run as
/// a uid of their own) every process of those uids, wherever it moved. Not the server itself,
/// nor `exclude` (this process).
pub fn supervised(procs: &[Proc], server: u32, uids: Option<(u32, u32)>, exclude: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for p in procs {
        children.entry(p.ppid).or_default().push(p.pid);
    }
    let mut out: Vec<u32> = Vec::new();
    let mut stack = vec![server];
    while let Some(pid) = stack.pop() {
        for c in children.get(&pid).into_iter().flatten() {
            if !out.contains(c) && *c != server {
                out.push(*c);
                stack.push(*c);
            }
        }
    }
    if let Some((first, last)) = uids {
        let theirs: Vec<u32> = procs
            .iter()
            .filter(|p| (first..=last).contains(&p.uid) && !out.contains(&p.pid))
            .map(|p| p.pid)
            .collect();
        out.extend(theirs);
    }
    out.retain(|p| *p != exclude && *p != server);
    out.sort_unstable();
    out
}

/// Supervised processes listening beyond loopback. `server`: the pid holding the lock.
pub fn exposure(server: u32, config: &Config) -> Check {
    let data_dir_uid = std::fs::metadata(&config.server.data_dir).map(|m| m.uid());
    let per_server = config.deploy.run_as == crate::config::ProgramUser::PerServer
        && data_dir_uid.ok() == Some(0);
    let [first, last] = config.deploy.run_as_uids;
    let pids = supervised(
        &processes(),
        server,
        per_server.then_some((first, last)),
        std::process::id(),
    );
    let unreadable = pids
        .iter()
        .filter(|p| std::fs::read_dir(format!("/proc/{p}/fd")).is_err())
        .count();
    let mut owner: HashMap<u64, u32> = HashMap::new();
    for pid in &pids {
        for inode in exposure::socket_inodes(&[*pid]) {
            owner.insert(inode, *pid);
        }
    }
    let mut exposed: Vec<(u32, SocketAddr)> = exposure::listeners()
        .into_iter()
        .filter(|l| !exposure::is_loopback(l.addr.ip()))
        .filter_map(|l| owner.get(&l.inode).map(|pid| (*pid, l.addr)))
        .collect();
    exposed.sort();
    exposed.dedup();
    if !exposed.is_empty() {
        let list: Vec<String> = exposed
            .iter()
            .map(|(pid, addr)| format!("{} listens on {addr}", describe_pid(*pid)))
            .collect();
        return Check::fail(
            "exposure",
            format!(
                "{}: reachable on that port without the front door, so without a token",
                list.join("; ")
            ),
            "make the program listen on 127.0.0.1 only (it is given its PORT; set its host too), or firewall the port",
        );
    }
    if unreadable > 0 {
        return Check::warn(
            "exposure",
            format!(
                "could not look at the sockets of {unreadable} of {} supervised processes (permission)",
                pids.len()
            ),
            "run doctor as root, or as the user ezforge runs as",
        );
    }
    Check::ok(
        "exposure",
        format!(
            "{} supervised processes, none listening beyond loopback",
            pids.len()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_holder_is_read_from_proc_locks() {
        let text = "1: POSIX  ADVISORY  WRITE 11 08:01:42 0 EOF\n\
                    2: FLOCK  ADVISORY  READ  22 08:01:42 0 EOF\n\
                    3: FLOCK  ADVISORY  WRITE 33 00:2f:42 0 EOF\n\
                    3: -> FLOCK  ADVISORY  WRITE 44 08:01:42 0 EOF\n\
                    4: FLOCK  ADVISORY  WRITE 55 08:01:42 0 EOF\n";
        // The device that matches wins; else any holder of the inode.
        assert_eq!(parse_proc_locks(text, 42, (8, 1)), Some(44));
        assert_eq!(parse_proc_locks(text, 42, (9, 9)), Some(33));
        assert_eq!(parse_proc_locks(text, 43, (8, 1)), None);
        assert_eq!(parse_proc_locks("garbage\n1: FLOCK\n", 42, (8, 1)), None);
    }

    #[test]
    fn the_lock_is_seen_without_being_taken() {
        let dir = tempfile::tempdir().expect("tmp");
        assert!(lock_holder(dir.path()).1.is_none());
        let held = crate::data_dir::lock(dir.path()).expect("lock");
        let (check, pid) = lock_holder(dir.path());
        assert_eq!(pid, Some(std::process::id()), "{check:?}");
        assert!(check.message.contains(&std::process::id().to_string()));
        // Still held by its owner: a second server is still refused.
        assert!(crate::data_dir::lock(dir.path()).is_err());
        drop(held);
        assert!(lock_holder(dir.path()).1.is_none());
    }

    #[test]
    fn the_address_served_on_is_found_when_it_is_not_the_configured_one() {
        let a = |s: &str| s.parse::<SocketAddr>().expect("addr");
        let configured = a("127.0.0.1:8080");
        assert_eq!(
            bound_address(configured, None, &[a("127.0.0.1:8080")]),
            None
        );
        assert_eq!(
            bound_address(
                configured,
                Some(a("127.0.0.1:9100")),
                &[a("127.0.0.1:9000"), a("127.0.0.1:9100")]
            ),
            Some(a("127.0.0.1:9000"))
        );
        // Unreadable, or ambiguous (a test process with many servers): the configured one.
        assert_eq!(bound_address(configured, None, &[]), None);
        assert_eq!(
            bound_address(configured, None, &[a("127.0.0.1:1"), a("127.0.0.1:2")]),
            None
        );
    }

    #[test]
    fn supervised_processes_are_a_servers_descendants_and_its_uids() {
        let p = |pid, ppid, uid| Proc { pid, ppid, uid };
        let procs = [
            p(1, 0, 0),
            p(100, 1, 0),      // the server
            p(101, 100, 0),    // its program
            p(102, 101, 0),    // the program's child
            p(103, 100, 0),    // doctor, run from it (tests)
            p(200, 1, 59_001), // a program that left its parent
            p(300, 1, 1000),   // someone else's
        ];
        assert_eq!(
            supervised(&procs, 100, Some((59_000, 59_999)), 103),
            [101, 102, 200]
        );
        assert_eq!(supervised(&procs, 100, None, 103), [101, 102]);
    }
}
