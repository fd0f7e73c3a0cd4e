//! The launcher: `ezforge sandbox-exec --policy JSON -- PROGRAM ARGS…`, which ezforge runs in
//! place of a deployed program. Still single-threaded and still ezforge's own code, it joins
//! the server's cgroup, sets resource limits, closes what it inherited, confines itself with
//! Landlock (and `no_new_privs`) and a seccomp filter, drops to the deployment user, and only
//! then executes the program, which inherits every restriction and can undo none. The
//! program's environment reaches it encoded ([`crate::config::PROGRAM_ENV_PREFIX`]) and is
//! decoded only for the program.
//!
//! It fails closed: when a restriction cannot be applied, the program is not run and the
//! reason goes to stderr (the server's log).

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::process::ExitCode;

use landlock::{
    ABI, Access, AccessFs, AccessNet, CompatLevel, Compatible, NetPort, Ruleset, RulesetAttr,
    RulesetCreatedAttr, RulesetStatus, Scope, path_beneath_rules,
};

use super::policy::{Limits, Policy, process_cgroup};

/// The newest Landlock ABI whose rights we ask for; an older kernel enforces what it knows.
const ABI_WANTED: ABI = ABI::V9;

/// Runs `command` under `policy`; returns only when that could not be done.
pub fn run(policy: &str, command: &[OsString]) -> ExitCode {
    let result = serde_json::from_str::<Policy>(policy)
        .map_err(|e| format!("unreadable policy: {e}"))
        .and_then(|p| confine(&p).map(|()| p));
    let policy = match result {
        Ok(p) => p,
        Err(e) => {
            eprintln!("ezforge sandbox: {e}; the program was not started");
            return ExitCode::from(126);
        }
    };
    let Some((program, args)) = command.split_first() else {
        eprintln!("ezforge sandbox: no program to run");
        return ExitCode::from(126);
    };
    let mut cmd = std::process::Command::new(program);
    cmd.args(args).env_clear().envs(program_env());
    if let Some((uid, gid)) = policy.user {
        // Supplementary groups are cleared, then the group, then the user (std's order).
        cmd.uid(uid).gid(gid);
    }
    let err = cmd.exec();
    eprintln!(
        "ezforge sandbox: cannot run {}: {err}",
        program.to_string_lossy()
    );
    ExitCode::from(if err.kind() == std::io::ErrorKind::NotFound {
        127
    } else {
        126
    })
}

/// The program's variables: ours, under [`crate::config::PROGRAM_ENV_PREFIX`], without it;
/// nothing else.
fn program_env() -> impl Iterator<Item = (std::ffi::OsString, std::ffi::OsString)> {
    use std::os::unix::ffi::OsStrExt;
    let prefix = crate::config::PROGRAM_ENV_PREFIX.as_bytes();
    std::env::vars_os().filter_map(move |(k, v)| {
        let name = k.as_bytes().strip_prefix(prefix)?;
        (!name.is_empty()).then(|| (std::ffi::OsStr::from_bytes(name).to_owned(), v))
    })
}

fn confine(policy: &Policy) -> Result<(), String> {
    if let Some(server) = &policy.cgroup {
        join_cgroup(server).map_err(|e| format!("cannot join the server's cgroup: {e}"))?;
    }
    set_limits(&policy.limits)?;
    close_inherited();
    landlock(policy)?;
    super::seccomp::apply(policy.bind_port.is_some())
}

fn join_cgroup(server: &std::path::Path) -> std::io::Result<()> {
    let pid = std::process::id();
    let leaf = process_cgroup(server, pid);
    match std::fs::create_dir(&leaf) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    std::fs::write(leaf.join("cgroup.procs"), pid.to_string())
}

fn landlock(policy: &Policy) -> Result<(), String> {
    let fail = |e: landlock::RulesetError| format!("cannot confine the program (Landlock): {e}");
    let read = AccessFs::from_read(ABI_WANTED);
    let data = AccessFs::ReadFile | AccessFs::ReadDir;
    let device = AccessFs::ReadFile | AccessFs::WriteFile | AccessFs::Truncate;
    let mut created = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(AccessFs::from_all(ABI_WANTED))
        .map_err(fail)?
        .handle_access(AccessNet::BindTcp)
        .map_err(fail)?
        .scope(Scope::Signal | Scope::AbstractUnixSocket)
        .map_err(fail)?
        .create()
        .map_err(fail)?
        .add_rules(path_beneath_rules(&policy.read, read))
        .map_err(fail)?
        .add_rules(path_beneath_rules(&policy.read_data, data))
        .map_err(fail)?
        .add_rules(path_beneath_rules(
            &policy.write,
            AccessFs::from_all(ABI_WANTED),
        ))
        .map_err(fail)?
        .add_rules(path_beneath_rules(&policy.devices, device))
        .map_err(fail)?;
    if let Some(port) = policy.bind_port {
        created = created
            .add_rule(NetPort::new(port, AccessNet::BindTcp))
            .map_err(fail)?;
    }
    let status = created.restrict_self().map_err(fail)?;
    if status.ruleset == RulesetStatus::NotEnforced {
        return Err("Landlock is not enforced by this kernel".into());
    }
    if !status.no_new_privs {
        return Err("no_new_privs could not be set".into());
    }
    Ok(())
}

fn set_limits(limits: &Limits) -> Result<(), String> {
    let fail = |what: &str, e: std::io::Error| format!("cannot limit {what}: {e}");
    rlimit::set(rlimit::Resource::Core, 0).map_err(|e| fail("core dumps", e))?;
    let hard = rlimit::hard(rlimit::Resource::OpenFiles).unwrap_or(limits.open_files);
    rlimit::set(rlimit::Resource::OpenFiles, limits.open_files.min(hard))
        .map_err(|e| fail("open files", e))?;
    if let Some(bytes) = limits.data {
        rlimit::set(rlimit::Resource::Data, bytes).map_err(|e| fail("memory", e))?;
    }
    if let Some(n) = limits.processes {
        rlimit::set(rlimit::Resource::Processes, n).map_err(|e| fail("processes", e))?;
    }
    Ok(())
}

/// Marks every descriptor above stderr close-on-exec: the program gets its three pipes and
/// nothing else of ezforge's, whatever a library left open.
#[allow(unsafe_code)]
fn close_inherited() {
    // SAFETY: close_range(2) takes plain integers; with CLOSE_RANGE_CLOEXEC it only sets a
    // flag on descriptors, which this single-threaded launcher no longer needs across exec.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        );
    }
}

/// `setrlimit(2)` for the few limits we set.
mod rlimit {
    #[derive(Clone, Copy)]
    pub enum Resource {
        Core,
        OpenFiles,
        Data,
        Processes,
    }

    macro_rules! with_resource {
        ($r:expr, |$res:ident| $body:expr) => {
            match $r {
                Resource::Core => {
                    let $res = libc::RLIMIT_CORE;
                    $body
                }
                Resource::OpenFiles => {
                    let $res = libc::RLIMIT_NOFILE;
                    $body
                }
                Resource::Data => {
                    let $res = libc::RLIMIT_DATA;
                    $body
                }
                Resource::Processes => {
                    let $res = libc::RLIMIT_NPROC;
                    $body
                }
            }
        };
    }

    /// Sets the soft and hard limit.
    #[allow(unsafe_code)]
    pub fn set(r: Resource, value: u64) -> std::io::Result<()> {
        let lim = libc::rlimit {
            rlim_cur: value as libc::rlim_t,
            rlim_max: value as libc::rlim_t,
        };
        // SAFETY: setrlimit(2) reads the struct we pass by reference and nothing else.
        let rc = with_resource!(r, |res| unsafe { libc::setrlimit(res, &lim) });
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }

    /// The hard limit now in force.
    #[allow(unsafe_code)]
    pub fn hard(r: Resource) -> Option<u64> {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit(2) writes the struct we pass by mutable reference.
        let rc = with_resource!(r, |res| unsafe { libc::getrlimit(res, &mut lim) });
        (rc == 0).then_some(lim.rlim_max)
    }
}
