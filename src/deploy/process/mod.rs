//! Processes `ezforge` starts: a clean environment (the server's env vars and a few harmless
//! variables of ours, never our secrets), output captured into the server's log with a rate
//! limit, and a whole process group stopped with SIGTERM, then SIGKILL.
//!
//! [`Supervisor`] keeps one HTTP MCP server process running: restarts it after a crash with
//! exponential backoff, stops it when idle and starts it again on the next request.

mod group;
mod launch;
mod output;
mod ports;
mod supervisor;

pub use self::group::{Group, TERM_GRACE, describe_exit, kill_all_groups};
pub use self::launch::Launch;
pub use self::output::{OutputLimit, read_line_capped};
pub use self::ports::free_port;
pub use self::supervisor::{ProcState, Supervisor};

#[cfg(test)]
pub(crate) mod tests {
    use super::Launch;
    use crate::deploy::sandbox::Dirs;
    use crate::shared::logs::LogHub;

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
}
