//! What this machine offers for confinement: the Landlock ABI, a delegated cgroup v2, and
//! the user deployed programs run as.

use std::path::{Path, PathBuf};

/// The Landlock ABI version the kernel supports, or why there is none.
#[allow(unsafe_code)]
pub fn landlock_abi() -> Result<u32, String> {
    const LANDLOCK_CREATE_RULESET_VERSION: u32 = 1;
    // SAFETY: with a null attribute pointer, size 0 and the VERSION flag, the call only
    // returns a number; it reads and writes no memory of ours.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    if rc > 0 {
        return u32::try_from(rc).map_err(|_| "Landlock answered nonsense".to_owned());
    }
    let err = std::io::Error::last_os_error();
    Err(match err.raw_os_error() {
        Some(libc::ENOSYS) => "this kernel has no Landlock (Linux 5.13 or later with CONFIG_SECURITY_LANDLOCK)".into(),
        Some(libc::EOPNOTSUPP) => "Landlock is built into this kernel but not enabled (add \"landlock\" to the lsm= boot parameter)".into(),
        Some(libc::EPERM) => "Landlock calls are forbidden here (a seccomp filter, e.g. an old container runtime's)".into(),
        _ => format!("Landlock is not usable: {err}"),
    })
}

/// What an ABI version gives, in words.
pub fn landlock_features(abi: u32) -> Vec<&'static str> {
    let mut f = vec!["files"];
    if abi >= 2 {
        f.push("no cross-directory links");
    }
    if abi >= 3 {
        f.push("truncation");
    }
    if abi >= 4 {
        f.push("TCP bind to its own port only");
    }
    if abi >= 5 {
        f.push("device ioctls");
    }
    if abi >= 6 {
        f.push("no signals or abstract sockets beyond its sandbox");
    }
    if abi >= 7 {
        f.push("denials in the kernel audit log");
    }
    if abi >= 9 {
        f.push("named UNIX sockets");
    }
    f
}

/// What Landlock of this ABI does not give, which an operator should know.
pub fn landlock_gaps(abi: u32) -> Vec<&'static str> {
    let mut g = Vec::new();
    if abi < 4 {
        g.push("a program may listen on any TCP port (Landlock ABI 4, Linux 6.7)");
    }
    if abi < 6 {
        g.push("a program may signal processes of the same user, ezforge's included, when it runs as ezforge's user (Landlock ABI 6, Linux 6.12)");
    }
    if abi < 9 {
        g.push("a program may connect to named UNIX sockets its user may write (Landlock ABI 9)");
    }
    g
}

/// A user deployed programs run as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

/// Reads `deploy.run_as`: `uid:gid`, or a name in `passwd` (a file in /etc/passwd's format).
pub fn resolve_user(spec: &str, passwd: &Path) -> Result<RunAs, String> {
    let spec = spec.trim();
    let user = if let Some((u, g)) = spec.split_once(':') {
        let parse = |s: &str| s.trim().parse::<u32>().ok();
        match (parse(u), parse(g)) {
            (Some(uid), Some(gid)) => RunAs {
                name: spec.to_owned(),
                uid,
                gid,
            },
            _ => {
                return Err(format!(
                    "deploy.run_as {spec:?}: write a user name or uid:gid"
                ));
            }
        }
    } else {
        let text = std::fs::read_to_string(passwd)
            .map_err(|e| format!("cannot read {}: {e}", passwd.display()))?;
        text.lines()
            .filter_map(|line| {
                let mut f = line.split(':');
                let name = f.next()?;
                let _password = f.next()?;
                let uid = f.next()?.parse().ok()?;
                let gid = f.next()?.parse().ok()?;
                (name == spec).then(|| RunAs {
                    name: name.to_owned(),
                    uid,
                    gid,
                })
            })
            .next()
            .ok_or_else(|| {
                format!(
                    "deploy.run_as: no user {spec:?} in {} (create it, or write uid:gid)",
                    passwd.display()
                )
            })?
    };
    if user.uid == 0 || user.gid == 0 {
        return Err(format!(
            "deploy.run_as {spec:?} is root (uid or gid 0); deployed programs never run as root"
        ));
    }
    Ok(user)
}

/// Whether this process runs as root.
#[allow(unsafe_code)]
pub fn is_root() -> bool {
    // SAFETY: geteuid(2) takes nothing and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// This process's cgroup v2 directory, from `/proc/self/cgroup` and `/proc/self/mountinfo`.
pub fn own_cgroup() -> Result<PathBuf, String> {
    let cgroup = std::fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| format!("cannot read /proc/self/cgroup: {e}"))?;
    let rel = cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .ok_or("this machine has no cgroup v2 hierarchy")?;
    let rel = rel.trim().trim_start_matches('/');
    if rel.is_empty() {
        return Err("ezforge runs in the root cgroup (not one delegated to it)".into());
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| format!("cannot read /proc/self/mountinfo: {e}"))?;
    let mount = cgroup2_mount(&mountinfo).ok_or("the cgroup v2 filesystem is not mounted")?;
    Ok(mount.join(rel))
}

/// The mount point of the cgroup2 filesystem in a mountinfo listing.
fn cgroup2_mount(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let fstype = right.split_whitespace().next()?;
        let mount_point = left.split_whitespace().nth(4)?;
        (fstype == "cgroup2").then(|| PathBuf::from(mount_point))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_as_reads_names_and_numbers_and_never_root() {
        let tmp = tempfile::tempdir().expect("tmp");
        let passwd = tmp.path().join("passwd");
        std::fs::write(
            &passwd,
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/nonexistent:/usr/sbin/nologin\nmcp:x:990:980::/srv:/bin/false\n",
        )
        .expect("write");
        let u = resolve_user("mcp", &passwd).expect("mcp");
        assert_eq!((u.uid, u.gid), (990, 980));
        let u = resolve_user("1234:5678", &passwd).expect("numbers");
        assert_eq!((u.uid, u.gid), (1234, 5678));
        for bad in ["root", "0:0", "100:0", "ghost", "x:y"] {
            assert!(resolve_user(bad, &passwd).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn the_cgroup2_mount_is_found_in_mountinfo() {
        let info = "25 30 0:22 / /sys rw - sysfs sysfs rw\n\
                    31 25 0:27 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(cgroup2_mount(info), Some(PathBuf::from("/sys/fs/cgroup")));
        assert_eq!(
            cgroup2_mount("25 30 0:22 / /sys rw - sysfs sysfs rw\n"),
            None
        );
    }

    #[test]
    fn features_grow_with_the_abi() {
        assert_eq!(landlock_features(1), ["files"]);
        assert!(landlock_features(6).contains(&"TCP bind to its own port only"));
        assert!(landlock_gaps(7).iter().all(|g| !g.contains("TCP port")));
        assert!(landlock_gaps(3).iter().any(|g| g.contains("TCP port")));
    }
}
