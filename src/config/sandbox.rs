//! `[deploy.sandbox]`: how the processes of command deployments are confined.
//!
//! Written as a table, or as the shorthand `deploy.sandbox = "off"` (or `"on"`).

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer, Serialize};

use super::ByteSize;

/// The launcher's environment holds the program's variables under this prefix only, so that
/// nothing in them (`LD_PRELOAD`, `GLIBC_TUNABLES`, `RUST_*`…) acts on the launcher, which
/// runs ezforge's code with ezforge's privileges until it has confined itself. (Here, so that
/// `config check` knows these variables are not misspelt config keys.)
pub const PROGRAM_ENV_PREFIX: &str = "EZFORGE_PROGRAM_ENV__";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SandboxMode {
    /// Every command deployment runs confined; without a sandbox on this machine, command
    /// deployments are refused.
    #[default]
    On,
    /// No confinement: a deployed program may do whatever ezforge's user may. Single-tenant
    /// instances only.
    Off,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SandboxConfig {
    pub mode: SandboxMode,
    /// Paths a deployed program may also read and execute, besides the system ones (`/usr`,
    /// `/lib*`, `/bin`, `/sbin`, `/etc`, `/opt`): where its code and runtime live.
    pub read_paths: Vec<PathBuf>,
    /// Per process (`RLIMIT_DATA`), and per server when a delegated cgroup gives
    /// `memory.max`. 0 = no limit.
    pub memory_limit: ByteSize,
    /// Open files per process (`RLIMIT_NOFILE`).
    pub max_open_files: u64,
    /// Processes (and threads) per server (cgroup `pids.max`); also `RLIMIT_NPROC` when
    /// deployed programs run as a user of their own (`deploy.run_as`).
    pub max_processes: u64,
    /// CPU per server, in cores (cgroup `cpu.max`). 0 = no limit.
    pub cpu_limit: f64,
    /// The ezforge executable that confines a program and then runs it. Default: the
    /// running one. Only for ezforge embedded in another program (its own tests).
    pub launcher: Option<PathBuf>,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            mode: SandboxMode::On,
            read_paths: Vec::new(),
            memory_limit: ByteSize(2 << 30),
            max_open_files: 4096,
            max_processes: 512,
            cpu_limit: 1.0,
            launcher: None,
        }
    }
}

impl SandboxConfig {
    pub fn problem(&self) -> Option<(&'static str, String)> {
        if let Some(p) = self.read_paths.iter().find(|p| !p.is_absolute()) {
            return Some((
                "deploy.sandbox.read_paths",
                format!("{} is not an absolute path", p.display()),
            ));
        }
        if !(0.0..=1024.0).contains(&self.cpu_limit) || self.cpu_limit.is_nan() {
            return Some((
                "deploy.sandbox.cpu_limit",
                "must be a number of cores from 0 (no limit) to 1024".into(),
            ));
        }
        if !(16..=1 << 20).contains(&self.max_open_files) {
            return Some((
                "deploy.sandbox.max_open_files",
                "must be from 16 to 1048576".into(),
            ));
        }
        if !(8..=1 << 22).contains(&self.max_processes) {
            return Some((
                "deploy.sandbox.max_processes",
                "must be from 8 to 4194304".into(),
            ));
        }
        let mem = self.memory_limit.0;
        if mem != 0 && mem < 16 << 20 {
            return Some((
                "deploy.sandbox.memory_limit",
                "must be at least 16MiB, or 0 for no limit".into(),
            ));
        }
        None
    }
}

impl<'de> Deserialize<'de> for SandboxConfigOrMode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = SandboxConfigOrMode;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"on\", \"off\", or a table of sandbox settings")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                let mode = SandboxMode::deserialize(serde::de::value::StrDeserializer::<E>::new(v))
                    .map_err(|_| {
                        E::custom(format!("invalid sandbox {v:?}: write \"on\" or \"off\""))
                    })?;
                Ok(SandboxConfigOrMode(SandboxConfig {
                    mode,
                    ..SandboxConfig::default()
                }))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Self::Value, A::Error> {
                SandboxConfig::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(SandboxConfigOrMode)
            }
        }
        d.deserialize_any(V)
    }
}

/// `[deploy.sandbox]` as a table or as its mode alone.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
#[serde(transparent)]
pub struct SandboxConfigOrMode(pub SandboxConfig);

impl std::ops::Deref for SandboxConfigOrMode {
    type Target = SandboxConfig;
    fn deref(&self) -> &SandboxConfig {
        &self.0
    }
}

impl std::ops::DerefMut for SandboxConfigOrMode {
    fn deref_mut(&mut self) -> &mut SandboxConfig {
        &mut self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Holder {
        sandbox: SandboxConfigOrMode,
    }

    #[test]
    fn the_shorthand_and_the_table_both_read() {
        let h: Holder = toml::from_str("sandbox = \"off\"").expect("shorthand");
        assert_eq!(h.sandbox.mode, SandboxMode::Off);
        assert_eq!(h.sandbox.max_open_files, 4096);
        let h: Holder =
            toml::from_str("[sandbox]\nread_paths = [\"/srv/mcp\"]\nmax_processes = 64")
                .expect("table");
        assert_eq!(h.sandbox.mode, SandboxMode::On);
        assert_eq!(h.sandbox.read_paths, [PathBuf::from("/srv/mcp")]);
        assert_eq!(h.sandbox.max_processes, 64);
        let e = toml::from_str::<Holder>("sandbox = \"maybe\"")
            .err()
            .expect("refused");
        assert!(e.to_string().contains("\"on\" or \"off\""), "{e}");
        let e = toml::from_str::<Holder>("[sandbox]\nread_path = []")
            .err()
            .expect("refused");
        assert!(e.to_string().contains("read_path"), "{e}");
    }
}
