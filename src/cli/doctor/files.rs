//! The data directory on disk: who may read it, and how much room is left. Blocking.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::config::{Config, TlsMode};
use crate::deploy::sandbox::users::Users;

use super::report::{Check, Status};

/// The data directory's mode: 0700; or, when deployed programs run as other users (ezforge as
/// root), 0711 — they must be able to pass through it to their own directories, not list it.
/// Others' write access fails; others' reading (listing) warns: the secrets in it are 0600
/// themselves, but nothing there is for other users.
pub fn judge_dir_mode(mode: u32, programs_run_as_others: bool) -> (Status, String) {
    let mode = mode & 0o7777;
    let others = mode & 0o077;
    if others == 0 {
        (Status::Ok, format!("{mode:04o}"))
    } else if others & 0o022 != 0 {
        (
            Status::Fail,
            format!("{mode:04o}: other users may add, remove or replace what is in it"),
        )
    } else if others & 0o044 != 0 {
        (
            Status::Warn,
            format!("{mode:04o}: other users may list what is in it"),
        )
    } else if programs_run_as_others {
        (
            Status::Ok,
            format!("{mode:04o} (deployed programs run as other users and pass through it)"),
        )
    } else {
        (
            Status::Warn,
            format!("{mode:04o}: others may pass through it, and nothing here needs them to"),
        )
    }
}

/// Whether a secret file's mode lets anyone but its owner in.
pub fn is_private(mode: u32) -> bool {
    mode & 0o077 == 0
}

/// The files no one but ezforge may read, that exist.
fn secret_files(config: &Config) -> Vec<PathBuf> {
    let dir = &config.server.data_dir;
    let mut files: Vec<PathBuf> = [
        "ezforge.db",
        "ezforge.db-wal",
        "ezforge.db-shm",
        "master.key",
        "tls/key.pem",
    ]
    .iter()
    .map(|f| dir.join(f))
    .collect();
    if config.tls.mode == TlsMode::Files {
        files.extend(config.tls.key_file.iter().cloned());
    }
    files.retain(|f| f.exists());
    files
}

pub fn permissions(config: &Config) -> Vec<Check> {
    let dir = &config.server.data_dir;
    let meta = match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => m,
        Ok(_) => {
            return vec![Check::fail(
                "permissions",
                format!("{} is not a directory", dir.display()),
                "point server.data_dir at a directory",
            )];
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return vec![Check::warn(
                "permissions",
                format!("{} does not exist yet", dir.display()),
                "start the server once (it makes the directory, 0700), or fix server.data_dir",
            )];
        }
        Err(e) => {
            return vec![Check::fail(
                "permissions",
                format!("{}: {e}", dir.display()),
                "run doctor as the user ezforge runs as (or root)",
            )];
        }
    };
    // Programs run as other users when ezforge runs as root, which owns the directory then.
    let [first, last] = config.deploy.run_as_uids;
    let others = Users::new(&config.deploy.run_as, (first, last), meta.uid() == 0).switches();
    let (status, what) = judge_dir_mode(meta.permissions().mode(), others);
    let message = format!("{}: {what}", dir.display());
    let fix = format!("chmod 700 {}", dir.display());
    let mut out = vec![match status {
        Status::Ok => Check::ok("permissions.data_dir", message),
        Status::Warn => Check::warn("permissions.data_dir", message, fix),
        Status::Fail => Check::fail("permissions.data_dir", message, fix),
    }];
    let mut open = Vec::new();
    let mut fine = Vec::new();
    for f in secret_files(config) {
        match std::fs::metadata(&f) {
            Ok(m) if is_private(m.permissions().mode()) => fine.push(f),
            Ok(m) => open.push((f, m.permissions().mode() & 0o7777)),
            Err(_) => {}
        }
    }
    let readable = std::fs::read_dir(dir).is_ok();
    out.push(if !readable {
        Check::warn(
            "permissions.files",
            format!("cannot look inside {} as this user", dir.display()),
            "run doctor as the user ezforge runs as (or root)",
        )
    } else if open.is_empty() {
        Check::ok(
            "permissions.files",
            match names(&fine) {
                Some(list) => format!("{list}: readable by their owner only"),
                None => "no secret file yet".to_owned(),
            },
        )
    } else {
        let list: Vec<String> = open
            .iter()
            .map(|(f, m)| format!("{} is {m:04o}", f.display()))
            .collect();
        let paths: Vec<String> = open.iter().map(|(f, _)| f.display().to_string()).collect();
        Check::fail(
            "permissions.files",
            format!("{}: other users may read secrets", list.join(", ")),
            format!("chmod 600 {}", paths.join(" ")),
        )
    });
    out
}

fn names(files: &[PathBuf]) -> Option<String> {
    (!files.is_empty()).then(|| {
        files
            .iter()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    })
}

/// Free space: below 1 GiB a warning, below 100 MiB a failure (SQLite needs room for its WAL
/// and for backups; a full disk stops every write).
pub fn judge_disk(available: u64, total: u64) -> (Status, String) {
    const MIB: u64 = 1 << 20;
    let percent = if total == 0 {
        0.0
    } else {
        available as f64 * 100.0 / total as f64
    };
    let what = if available >= 10 * 1024 * MIB {
        format!("{} GiB free ({percent:.0}%)", available / (1024 * MIB))
    } else {
        format!("{} MiB free ({percent:.1}%)", available / MIB)
    };
    let status = if available < 100 * MIB {
        Status::Fail
    } else if available < 1024 * MIB {
        Status::Warn
    } else {
        Status::Ok
    };
    (status, what)
}

/// The free space of the file system the data directory is on (or would be made on).
#[allow(unsafe_code)]
pub fn disk(dir: &Path) -> Check {
    let Some(existing) = dir.ancestors().find(|a| a.exists()) else {
        return Check::warn(
            "disk",
            format!("nothing of {} exists", dir.display()),
            "fix server.data_dir",
        );
    };
    let Ok(path) = std::ffi::CString::new(existing.as_os_str().as_encoded_bytes()) else {
        return Check::warn(
            "disk",
            format!("{} cannot be asked about", existing.display()),
            "fix server.data_dir",
        );
    };
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a NUL-terminated string that outlives the call; `st` is a valid,
    // writable statvfs the call fills in.
    let rc = unsafe { libc::statvfs(path.as_ptr(), &mut st) };
    if rc != 0 {
        return Check::warn(
            "disk",
            format!(
                "{}: {}",
                existing.display(),
                std::io::Error::last_os_error()
            ),
            "check the file system",
        );
    }
    let block = st.f_frsize as u64;
    let (status, what) = judge_disk(st.f_bavail as u64 * block, st.f_blocks as u64 * block);
    let message = format!("{what} on the file system of {}", existing.display());
    let fix =
        "free space there (old backups, logs), or move server.data_dir to a larger file system";
    match status {
        Status::Ok => Check::ok("disk", message),
        Status::Warn => Check::warn("disk", message, fix),
        Status::Fail => Check::fail("disk", message, fix),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_data_directory_is_for_ezforge_alone_or_passed_through_by_its_programs() {
        assert_eq!(judge_dir_mode(0o40700, false).0, Status::Ok);
        assert_eq!(judge_dir_mode(0o711, true).0, Status::Ok);
        assert_eq!(judge_dir_mode(0o701, true).0, Status::Ok);
        assert_eq!(judge_dir_mode(0o711, false).0, Status::Warn);
        assert_eq!(judge_dir_mode(0o755, true).0, Status::Warn);
        assert_eq!(judge_dir_mode(0o750, false).0, Status::Warn);
        assert_eq!(judge_dir_mode(0o770, false).0, Status::Fail);
        assert_eq!(
            judge_dir_mode(0o777, false).1,
            "0777: other users may add, remove or replace what is in it"
        );
        assert!(is_private(0o100600));
        assert!(!is_private(0o640));
        assert!(!is_private(0o604));
    }

    #[test]
    fn readable_secrets_fail_with_the_chmod_to_run() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut config = Config::default();
        config.server.data_dir = dir.path().to_path_buf();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))
            .expect("chmod");
        let key = dir.path().join("master.key");
        std::fs::write(&key, "k").expect("write");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let checks = permissions(&config);
        assert_eq!(checks[0].status, Status::Ok, "{checks:?}");
        assert_eq!(checks[1].status, Status::Fail, "{checks:?}");
        assert_eq!(
            checks[1].fix.as_deref(),
            Some(format!("chmod 600 {}", key.display()).as_str())
        );
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        assert_eq!(permissions(&config)[1].status, Status::Ok);
        config.server.data_dir = dir.path().join("missing");
        assert_eq!(permissions(&config)[0].status, Status::Warn);
    }

    #[test]
    fn free_space_is_judged_in_bytes_and_share() {
        const GIB: u64 = 1 << 30;
        assert_eq!(judge_disk(50 * GIB, 100 * GIB).0, Status::Ok);
        assert_eq!(judge_disk(GIB / 2, 100 * GIB).0, Status::Warn);
        assert_eq!(judge_disk(3 * GIB, 1000 * GIB).0, Status::Ok);
        assert_eq!(judge_disk(50 << 20, 100 * GIB).0, Status::Fail);
        assert_eq!(judge_disk(0, 0).0, Status::Fail);
        assert_eq!(judge_disk(50 * GIB, 100 * GIB).1, "50 GiB free (50%)");
        let here = disk(Path::new("/tmp/does/not/exist/yet"));
        assert!(
            here.message.contains("on the file system of /tmp"),
            "{here:?}"
        );
    }
}
