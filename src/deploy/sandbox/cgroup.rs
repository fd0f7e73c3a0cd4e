//! cgroup v2 limits per server, when ezforge runs in a cgroup delegated to it (systemd's
//! `Delegate=yes`, or a container with a cgroup namespace of its own):
//!
//! ```text
//! {base}/                 ezforge's cgroup, delegated; subtree: memory pids cpu
//!   ezforge/              ezforge itself (a cgroup with children holds no process)
//!   servers/              subtree: memory pids cpu
//!     {server id}/        memory.max, pids.max, cpu.max: for all of a server's processes
//!       p{pid}/           one started process and what it starts (killed whole on stop)
//! ```

use std::io;
use std::path::{Path, PathBuf};

use super::policy::process_cgroup;

const CONTROLLERS: &[&str] = &["memory", "pids", "cpu"];

/// Per-server limits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CgroupLimits {
    /// Bytes; `None`: no limit.
    pub memory: Option<u64>,
    pub pids: u64,
    /// Cores; `None`: no limit.
    pub cpu: Option<f64>,
}

#[derive(Debug, Clone)]
pub struct Cgroups {
    servers: PathBuf,
}

impl Cgroups {
    /// Takes over `base`, this process's own cgroup, when it is delegated to us: moves this
    /// process into `base/ezforge` and enables the controllers below. A cgroup that holds
    /// other processes too (a login session's) is not taken over.
    pub fn delegate(base: &Path, own_pid: u32) -> Result<Cgroups, String> {
        let base = Self::inspect(base, own_pid)?;
        let own = base.join("ezforge");
        let procs = read(&base.join("cgroup.procs"))?;
        mkdir(&own)?;
        if procs.split_whitespace().any(|p| p == own_pid.to_string()) {
            write(&own.join("cgroup.procs"), &own_pid.to_string())?;
        }
        let enable: String = CONTROLLERS.iter().map(|c| format!("+{c} ")).collect();
        write(&base.join("cgroup.subtree_control"), enable.trim_end())?;
        let servers = base.join("servers");
        mkdir(&servers)?;
        write(&servers.join("cgroup.subtree_control"), enable.trim_end())?;
        Ok(Cgroups { servers })
    }

    /// A plan only (for `config check`): what [`Cgroups::delegate`] would set up.
    pub fn planned() -> Cgroups {
        Cgroups {
            servers: PathBuf::new(),
        }
    }

    /// Whether `base` (this process's cgroup) is delegated to us alone, with the
    /// controllers we need; the cgroup to take over. Changes nothing.
    pub fn inspect(base: &Path, own_pid: u32) -> Result<PathBuf, String> {
        let base = if base.file_name().is_some_and(|n| n == "ezforge")
            && base.parent().is_some_and(|p| p.join("servers").is_dir())
        {
            // Already set up (another app in this process).
            base.parent().map(Path::to_path_buf).unwrap_or_default()
        } else {
            base.to_path_buf()
        };
        let available = read(&base.join("cgroup.controllers"))?;
        let missing: Vec<&str> = CONTROLLERS
            .iter()
            .copied()
            .filter(|c| !available.split_whitespace().any(|a| a == *c))
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "the cgroup {} is not delegated the {} controller(s)",
                base.display(),
                missing.join(", ")
            ));
        }
        let procs = read(&base.join("cgroup.procs"))?;
        let me = own_pid.to_string();
        let others: Vec<&str> = procs.split_whitespace().filter(|p| *p != me).collect();
        if !others.is_empty() {
            return Err(format!(
                "the cgroup {} also holds other processes ({}): not one delegated to ezforge alone",
                base.display(),
                others.join(" ")
            ));
        }
        Ok(base)
    }

    /// The cgroup of a server's processes, with its limits written.
    pub fn server(&self, server_id: &str, limits: CgroupLimits) -> Result<PathBuf, String> {
        let dir = self.servers.join(server_id);
        mkdir(&dir)?;
        let memory = limits.memory.map_or("max".to_owned(), |b| b.to_string());
        write(&dir.join("memory.max"), &memory)?;
        // Past the memory limit the process is killed rather than swapped to a crawl.
        let _ = write(&dir.join("memory.swap.max"), "0");
        write(&dir.join("pids.max"), &limits.pids.to_string())?;
        let period = 100_000u64;
        let quota = limits.cpu.map_or("max".to_owned(), |c| {
            ((c * period as f64) as u64).max(1000).to_string()
        });
        write(&dir.join("cpu.max"), &format!("{quota} {period}"))?;
        Ok(dir)
    }
}

/// Ends every process of one started process's cgroup (those that left its process group
/// too), then removes the cgroup. Best effort.
pub fn kill_process(server: &Path, pid: u32) {
    let leaf = process_cgroup(server, pid);
    if leaf.exists() {
        let _ = std::fs::write(leaf.join("cgroup.kill"), "1");
        // The kernel removes members asynchronously; an emptied cgroup is removed now or by
        // the next start's sweep.
        let _ = std::fs::remove_dir(&leaf);
    }
}

/// Removes the empty process cgroups a server's earlier processes left behind.
pub fn sweep(server: &Path) {
    if let Ok(entries) = std::fs::read_dir(server) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with('p') && e.path().is_dir() {
                let _ = std::fs::remove_dir(e.path());
            }
        }
    }
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| describe(path, e))
}

fn write(path: &Path, value: &str) -> Result<(), String> {
    std::fs::write(path, value).map_err(|e| describe(path, e))
}

fn mkdir(path: &Path) -> Result<(), String> {
    match std::fs::create_dir(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(describe(path, e)),
    }
}

fn describe(path: &Path, e: io::Error) -> String {
    format!("{}: {e}", path.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory laid out like a delegated cgroup (plain files: the kernel's side is not
    /// here, only what ezforge writes).
    fn fake_base(controllers: &str, procs: &str) -> tempfile::TempDir {
        let tmp = tempfile::tempdir().expect("tmp");
        let base = tmp.path().join("ezforge.service");
        std::fs::create_dir(&base).expect("mkdir");
        std::fs::write(base.join("cgroup.controllers"), controllers).expect("write");
        std::fs::write(base.join("cgroup.procs"), procs).expect("write");
        tmp
    }

    #[test]
    fn a_delegated_cgroup_gets_ezforge_a_leaf_and_servers_their_limits() {
        let tmp = fake_base("cpuset cpu io memory pids", "4242\n");
        let base = tmp.path().join("ezforge.service");
        let cg = Cgroups::delegate(&base, 4242).expect("delegated");
        assert_eq!(
            std::fs::read_to_string(base.join("ezforge/cgroup.procs")).expect("moved"),
            "4242"
        );
        assert_eq!(
            std::fs::read_to_string(base.join("cgroup.subtree_control")).expect("enabled"),
            "+memory +pids +cpu"
        );
        let dir = cg
            .server(
                "srv_1",
                CgroupLimits {
                    memory: Some(1 << 30),
                    pids: 64,
                    cpu: Some(0.5),
                },
            )
            .expect("server");
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).expect(f);
        assert_eq!(read("memory.max"), "1073741824");
        assert_eq!(read("pids.max"), "64");
        assert_eq!(read("cpu.max"), "50000 100000");
        let dir = cg
            .server(
                "srv_2",
                CgroupLimits {
                    memory: None,
                    pids: 8,
                    cpu: None,
                },
            )
            .expect("server");
        assert_eq!(
            std::fs::read_to_string(dir.join("cpu.max")).expect("cpu"),
            "max 100000"
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("memory.max")).expect("mem"),
            "max"
        );
    }

    #[test]
    fn cgroups_not_ours_alone_or_without_controllers_are_left_alone() {
        let tmp = fake_base("memory pids cpu", "4242\n77\n");
        let err = Cgroups::delegate(&tmp.path().join("ezforge.service"), 4242).expect_err("shared");
        assert!(err.contains("other processes"), "{err}");
        let tmp = fake_base("memory", "4242\n");
        let err =
            Cgroups::delegate(&tmp.path().join("ezforge.service"), 4242).expect_err("no pids");
        assert!(err.contains("pids"), "{err}");
        assert!(!tmp.path().join("ezforge.service/ezforge").exists());
    }
}
