//! Confinement of the programs that command deployments run (HTTP and stdio alike).
//!
//! A deployed program is a project member's code, running on ezforge's machine. It must not
//! reach ezforge's data (the master key, the database), its config, TLS keys, other servers'
//! directories or processes, or ports other than its own. On Linux each program is started
//! through the launcher ([`launcher`], the ezforge binary itself) which applies, in order:
//! the server's cgroup (memory, processes, CPU; when ezforge has a delegated cgroup), resource
//! limits (open files, no core dumps, memory, processes), Landlock (files: system paths read
//! only, its own working and temporary directories read-write, nothing else; TCP: bind only
//! its own port; no signals or abstract sockets beyond its sandbox), `no_new_privs`, and a
//! user of its own when ezforge runs as root. [`Sandbox`] is probed and planned once at start.

pub mod cgroup;
pub mod exposure;
mod launcher;
mod paths;
pub mod policy;
pub mod probe;
mod seccomp;
pub mod users;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::config::{Config, PROGRAM_ENV_PREFIX, SandboxMode};

pub use launcher::run as launcher_main;
use policy::{Limits, Policy};
use probe::RunAs;
use users::Users;

/// The subcommand of the ezforge binary that is the launcher.
pub const LAUNCHER_SUBCOMMAND: &str = "sandbox-exec";

/// The program's environment as the launcher is given it.
pub fn encode_env(env: Vec<(OsString, OsString)>) -> impl Iterator<Item = (OsString, OsString)> {
    env.into_iter().map(|(k, v)| {
        let mut name = OsString::from(PROGRAM_ENV_PREFIX);
        name.push(k);
        (name, v)
    })
}

/// Whether command deployments can run, and how.
#[derive(Debug, Clone, PartialEq)]
pub enum Availability {
    /// Confined.
    Ready,
    /// `deploy.sandbox = "off"`: unconfined, by the operator's choice.
    Off,
    /// No sandbox on this machine: command deployments are refused, for this reason.
    Unavailable(String),
}

/// This machine's sandbox, planned once at start.
pub struct Sandbox {
    pub availability: Availability,
    launcher: PathBuf,
    abi: u32,
    read: Vec<PathBuf>,
    read_data: Vec<PathBuf>,
    devices: Vec<PathBuf>,
    limits: Limits,
    cgroup_limits: cgroup::CgroupLimits,
    users: Users,
    cgroups: Result<cgroup::Cgroups, String>,
    servers_dir: PathBuf,
    tmp_dir: PathBuf,
}

/// A server's directories: where its program runs, and its private temporary directory.
#[derive(Debug, Clone)]
pub struct Dirs {
    pub work: PathBuf,
    pub tmp: PathBuf,
}

/// How one server's processes are started: through the launcher, under a policy.
#[derive(Debug)]
pub struct Confinement {
    launcher: PathBuf,
    policy: Policy,
    pub user: Option<RunAs>,
    /// The uid no other server's programs run as (a user per server), if there is one.
    pub own_uid: Option<u32>,
}

impl Confinement {
    /// The program and arguments that run `command` confined; `port`: the one it may
    /// listen on.
    pub fn wrap(&self, command: &[String], port: Option<u16>) -> (PathBuf, Vec<OsString>) {
        let policy = Policy {
            bind_port: port,
            ..self.policy.clone()
        };
        let json = serde_json::to_string(&policy).unwrap_or_default();
        let mut args: Vec<OsString> = vec![
            LAUNCHER_SUBCOMMAND.into(),
            "--policy".into(),
            json.into(),
            "--".into(),
        ];
        args.extend(command.iter().map(OsString::from));
        (self.launcher.clone(), args)
    }

    /// The cgroup of the server's processes, if any.
    pub fn cgroup(&self) -> Option<&Path> {
        self.policy.cgroup.as_deref()
    }
}

impl Sandbox {
    /// Probes this machine and plans the policy. Blocking: reads `/proc`, `/etc/passwd`,
    /// directories. `serving`: for `serve`, which also empties the programs' temporary
    /// directories and takes over a delegated cgroup (moving this process into a cgroup of its
    /// own); otherwise (`config check`) nothing is changed.
    pub fn new(config: &Config, serving: bool) -> Sandbox {
        let sc = &config.deploy.sandbox;
        let data_dir = std::fs::canonicalize(&config.server.data_dir)
            .unwrap_or_else(|_| config.server.data_dir.clone());
        let abi = probe::landlock_abi();
        let [first, last] = config.deploy.run_as_uids;
        let users = Users::new(&config.deploy.run_as, (first, last), probe::is_root());
        let availability = match (sc.mode, &abi, users.problem()) {
            (SandboxMode::Off, _, _) => Availability::Off,
            (_, Err(why), _) => Availability::Unavailable(why.clone()),
            (_, _, Some(why)) => Availability::Unavailable(format!(
                "ezforge runs as root and deployed programs must not: {why}"
            )),
            _ => Availability::Ready,
        };
        let mut roots: Vec<PathBuf> = paths::SYSTEM_READ.iter().map(PathBuf::from).collect();
        roots.extend(sc.read_paths.iter().cloned());
        let protected = protected_paths(config, &data_dir);
        let cgroups = match availability {
            Availability::Ready => probe::own_cgroup().and_then(|base| {
                let pid = std::process::id();
                if serving {
                    cgroup::Cgroups::delegate(&base, pid)
                } else {
                    cgroup::Cgroups::inspect(&base, pid).map(|_| cgroup::Cgroups::planned())
                }
            }),
            _ => Err("not used".into()),
        };
        let memory = (sc.memory_limit.0 > 0).then_some(sc.memory_limit.0 as u64);
        let tmp_dir = data_dir.join("tmp");
        if serving {
            // Temporary files of the last run: nothing runs yet to need them.
            if tmp_dir.exists()
                && let Err(e) = std::fs::remove_dir_all(&tmp_dir)
            {
                tracing::warn!(dir = %tmp_dir.display(), error = %e, "could not empty the deployed programs' temporary directory");
            }
        }
        Sandbox {
            availability,
            launcher: sc
                .launcher
                .clone()
                .unwrap_or_else(|| PathBuf::from("/proc/self/exe")),
            abi: abi.unwrap_or(0),
            read: paths::expand(&roots, &protected),
            read_data: paths::expand(
                &paths::SYSTEM_READ_DATA
                    .iter()
                    .map(PathBuf::from)
                    .collect::<Vec<_>>(),
                &protected,
            ),
            devices: paths::DEVICES.iter().map(PathBuf::from).collect(),
            limits: Limits {
                open_files: sc.max_open_files,
                data: memory,
                processes: users.switches().then_some(sc.max_processes),
            },
            cgroup_limits: cgroup::CgroupLimits {
                memory,
                pids: sc.max_processes,
                cpu: (sc.cpu_limit > 0.0).then_some(sc.cpu_limit),
            },
            users,
            cgroups,
            servers_dir: data_dir.join("servers"),
            tmp_dir,
        }
    }

    /// The uid of a server's own, when its programs have one (`run_as = "per-server"`).
    pub fn server_uid(&self, server_id: &str) -> Option<u32> {
        self.users.own_uid(server_id)
    }

    /// Every server's own uid given out so far.
    pub fn server_uids(&self) -> Vec<u32> {
        self.users.own_uids()
    }

    /// Why command deployments are refused here, if they are.
    pub fn refusal(&self) -> Option<String> {
        match &self.availability {
            Availability::Unavailable(why) => Some(format!(
                "deployments that run a command need a sandbox, and this machine has none: {why}. \
                 Deploy an upstreamUrl, or (on a single-tenant instance only) set deploy.sandbox = \"off\""
            )),
            _ => None,
        }
    }

    /// Makes a server's directories, owned by the user its programs run as, and plans its
    /// confinement (`None` when the sandbox is off). Blocking.
    pub fn prepare(&self, server_id: &str) -> Result<(Dirs, Option<Confinement>), String> {
        if let Some(why) = self.refusal() {
            return Err(why);
        }
        let dirs = Dirs {
            work: self.servers_dir.join(server_id),
            tmp: self.tmp_dir.join(server_id),
        };
        let mkdir = |p: &Path| {
            std::fs::create_dir_all(p)
                .map_err(|e| format!("cannot create the directory {}: {e}", p.display()))
        };
        mkdir(&dirs.work)?;
        mkdir(&dirs.tmp)?;
        if self.availability == Availability::Off {
            return Ok((dirs, None));
        }
        let user = self.users.for_server(server_id, &dirs.work)?;
        if let Some(user) = &user {
            self.hand_over(&dirs, user)?;
        }
        let cgroup = match &self.cgroups {
            Ok(c) => Some(c.server(server_id, self.cgroup_limits)?),
            Err(_) => None,
        };
        if let Some(cg) = &cgroup {
            cgroup::sweep(cg);
        }
        let policy = Policy {
            read: self.read.clone(),
            read_data: self.read_data.clone(),
            write: vec![dirs.work.clone(), dirs.tmp.clone()],
            devices: self.devices.clone(),
            bind_port: None,
            limits: self.limits,
            user: user.as_ref().map(|u| (u.uid, u.gid)),
            cgroup,
        };
        Ok((
            dirs,
            Some(Confinement {
                launcher: self.launcher.clone(),
                policy,
                own_uid: self.users.own_uid(server_id),
                user,
            }),
        ))
    }

    /// Gives a server's directories to the user its programs run as, and lets that user
    /// reach them (search, not list, on the data directory and `servers/`, `tmp/`).
    fn hand_over(&self, dirs: &Dirs, user: &RunAs) -> Result<(), String> {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let fail = |p: &Path, e: std::io::Error| format!("cannot prepare {}: {e}", p.display());
        for dir in [&dirs.work, &dirs.tmp] {
            let meta = std::fs::metadata(dir).map_err(|e| fail(dir, e))?;
            if meta.uid() != user.uid {
                chown_tree(dir, user).map_err(|e| fail(dir, e))?;
            }
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| fail(dir, e))?;
        }
        if let Some(blocked) = self
            .servers_dir
            .ancestors()
            .skip(2)
            .find(|a| std::fs::metadata(a).is_ok_and(|m| m.permissions().mode() & 0o001 == 0))
        {
            return Err(format!(
                "deployed programs run as {} and cannot reach the data directory: {} is not searchable by other users (chmod o+x, or move server.data_dir)",
                user.name,
                blocked.display()
            ));
        }
        for dir in [&self.servers_dir, &self.tmp_dir] {
            let parent = dir.parent().unwrap_or(dir);
            for d in [parent, dir.as_path()] {
                let meta = std::fs::metadata(d).map_err(|e| fail(d, e))?;
                let mode = meta.permissions().mode() & 0o7777;
                if mode & 0o001 == 0 {
                    std::fs::set_permissions(d, std::fs::Permissions::from_mode(mode | 0o001))
                        .map_err(|e| fail(d, e))?;
                }
            }
        }
        Ok(())
    }

    /// What this machine gives, one line each (for `config check` and the start-up log).
    pub fn describe(&self) -> Vec<String> {
        let mut lines = Vec::new();
        match &self.availability {
            Availability::Off => lines.push(
                "sandbox: off (deploy.sandbox = \"off\"): deployed programs run unconfined, with ezforge's own access; single-tenant instances only".to_owned(),
            ),
            Availability::Unavailable(why) => lines.push(format!(
                "sandbox: unavailable, command deployments are refused: {why}"
            )),
            Availability::Ready => {
                lines.push(format!(
                    "sandbox: Landlock ABI {}: {}",
                    self.abi,
                    probe::landlock_features(self.abi).join(", ")
                ));
                for gap in probe::landlock_gaps(self.abi) {
                    lines.push(format!("sandbox: not on this kernel: {gap}"));
                }
                lines.push(format!(
                    "sandbox: limits per process: {} open files, no core dumps{}{}",
                    self.limits.open_files,
                    self.limits
                        .data
                        .map_or(String::new(), |b| format!(", {} MiB of data", b >> 20)),
                    self.limits
                        .processes
                        .map_or(String::new(), |n| format!(", {n} processes for the user"))
                ));
                match &self.cgroups {
                    Ok(_) => lines.push(format!(
                        "sandbox: cgroup v2 per server: memory {}, {} processes, CPU {}",
                        self.cgroup_limits
                            .memory
                            .map_or("unlimited".to_owned(), |b| format!("{} MiB", b >> 20)),
                        self.cgroup_limits.pids,
                        self.cgroup_limits
                            .cpu
                            .map_or("unlimited".to_owned(), |c| format!("{c} cores"))
                    )),
                    Err(why) => lines.push(format!("sandbox: no cgroup limits: {why}")),
                }
                lines.push(format!("sandbox: {}", self.users.describe()));
            }
        }
        lines
    }
}

/// What no deployed program may read: ezforge's data, config, TLS keys and secret files.
fn protected_paths(config: &Config, data_dir: &Path) -> Vec<PathBuf> {
    let mut p = vec![data_dir.to_path_buf()];
    p.extend(config.source_file.iter().cloned());
    p.extend(config.tls.cert_file.iter().cloned());
    p.extend(config.tls.key_file.iter().cloned());
    p.extend(
        std::env::vars_os()
            .filter(|(k, _)| {
                let k = k.to_string_lossy();
                k.starts_with("EZFORGE_") && k.ends_with("_FILE")
            })
            .map(|(_, v)| PathBuf::from(v)),
    );
    p
}

/// `chown -R` that follows no link and cannot be led elsewhere by a directory swapped for a
/// link meanwhile: each directory is opened (without following a link) and walked through its
/// descriptor, each entry changed through a descriptor of its own.
fn chown_tree(path: &Path, user: &RunAs) -> std::io::Result<()> {
    let dir = open_no_follow(path)?;
    chown_open(&dir, user)
}

fn open_no_follow(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
}

fn chown_open(file: &std::fs::File, user: &RunAs) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    std::os::unix::fs::fchown(file, Some(user.uid), Some(user.gid))?;
    if !file.metadata()?.is_dir() {
        return Ok(());
    }
    // This very directory, whatever its path now leads to.
    let here = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
    for entry in std::fs::read_dir(&here)? {
        let path = here.join(entry?.file_name());
        match open_no_follow(&path) {
            Ok(f) => chown_open(&f, user)?,
            // A link (ELOOP), a socket (ENXIO): the entry itself, not what it leads to.
            Err(_) => std::os::unix::fs::lchown(&path, Some(user.uid), Some(user.gid))?,
        }
    }
    Ok(())
}
