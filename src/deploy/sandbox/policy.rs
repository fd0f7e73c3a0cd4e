//! What one confined process may do: built by ezforge, carried to the launcher
//! (`ezforge sandbox-exec --policy …`) as JSON, applied there just before the program runs.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Read and execute, with what is below.
    pub read: Vec<PathBuf>,
    /// Read only.
    pub read_data: Vec<PathBuf>,
    /// Read, write, create, remove: the program's own directories.
    pub write: Vec<PathBuf>,
    /// Device files to read and write.
    pub devices: Vec<PathBuf>,
    /// The one TCP port the program may listen on; `None`: none at all.
    pub bind_port: Option<u16>,
    pub limits: Limits,
    /// Run as this user and group (when ezforge runs as root).
    pub user: Option<(u32, u32)>,
    /// The server's cgroup: the process joins a group of its own below it.
    pub cgroup: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    pub open_files: u64,
    /// `RLIMIT_DATA` in bytes; `None`: unlimited.
    pub data: Option<u64>,
    /// `RLIMIT_NPROC`; only set when the program has a user of its own.
    pub processes: Option<u64>,
}

/// The cgroup a process with this pid joins below its server's.
pub fn process_cgroup(server: &std::path::Path, pid: u32) -> PathBuf {
    server.join(format!("p{pid}"))
}
