//! Which paths a confined program may read: the system's, less anything of ezforge's.
//!
//! Landlock grants whole hierarchies and cannot take a part of one back, so a granted
//! directory that holds something of ezforge's (the data directory under `/opt`, the config
//! file in `/etc/ezforge`) is granted entry by entry instead, leaving that one out.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// Read and execute: where programs, their libraries and the system's settings live.
pub const SYSTEM_READ: &[&str] = &[
    "/usr", "/lib", "/lib32", "/lib64", "/libx32", "/bin", "/sbin", "/etc", "/opt",
];

/// Read only (no execute): what runtimes ask of the kernel (CPU count, memory, their own
/// process). Other processes' `/proc` entries that matter (`environ`, `mem`, `fd`) are also
/// guarded by Landlock's ptrace rule: only processes in the same sandbox are visible there.
pub const SYSTEM_READ_DATA: &[&str] = &["/proc", "/sys/devices/system/cpu"];

/// Devices a program may read and write.
pub const DEVICES: &[&str] = &[
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
];

/// `roots` that exist, canonical, with every `protected` path (and what is below it) left
/// out. Blocking: reads directories.
pub fn expand(roots: &[PathBuf], protected: &[PathBuf]) -> Vec<PathBuf> {
    let protected: Vec<PathBuf> = protected.iter().filter_map(|p| canonical(p)).collect();
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for root in roots {
        if let Ok(root) = std::fs::canonicalize(root) {
            grant(root, &protected, &mut seen, &mut out);
        }
    }
    out.sort();
    out.dedup();
    out
}

fn grant(
    path: PathBuf,
    protected: &[PathBuf],
    seen: &mut HashSet<PathBuf>,
    out: &mut Vec<PathBuf>,
) {
    if !seen.insert(path.clone()) || protected.iter().any(|p| path.starts_with(p)) {
        return;
    }
    if !protected.iter().any(|p| p.starts_with(&path)) {
        out.push(path);
        return;
    }
    // It holds something protected: grant its entries one by one. An entry may be a link to
    // elsewhere (even to a protected path), hence its canonical form, checked again.
    let Ok(entries) = std::fs::read_dir(&path) else {
        return;
    };
    for entry in entries.flatten() {
        if let Ok(p) = std::fs::canonicalize(entry.path()) {
            grant(p, protected, seen, out);
        }
    }
}

/// The canonical form of an existing path; a path that does not exist yet (a config key
/// naming a file to come) is kept as written, made absolute.
fn canonical(path: &Path) -> Option<PathBuf> {
    match std::fs::canonicalize(path) {
        Ok(p) => Some(p),
        Err(_) if path.is_absolute() => Some(path.to_path_buf()),
        Err(_) => std::env::current_dir().ok().map(|d| d.join(path)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_protected_path_inside_a_granted_one_is_left_out_entry_by_entry() {
        let tmp = tempfile::tempdir().expect("tmp");
        let root = tmp.path().join("opt");
        let data = root.join("ezforge").join("data");
        std::fs::create_dir_all(&data).expect("mkdir");
        std::fs::create_dir_all(root.join("ezforge").join("bin")).expect("mkdir");
        std::fs::create_dir_all(root.join("node")).expect("mkdir");
        std::fs::write(root.join("ezforge").join("README"), "x").expect("write");
        std::os::unix::fs::symlink(&data, root.join("shortcut")).expect("link");
        std::os::unix::fs::symlink(&root, root.join("loop")).expect("link");

        let got = expand(std::slice::from_ref(&root), std::slice::from_ref(&data));
        let root = std::fs::canonicalize(&root).expect("canonical");
        let want = [
            root.join("ezforge").join("README"),
            root.join("ezforge").join("bin"),
            root.join("node"),
        ];
        for w in &want {
            assert!(got.contains(w), "{w:?} missing from {got:?}");
        }
        let data = std::fs::canonicalize(&data).expect("canonical");
        assert!(
            got.iter()
                .all(|g| !g.starts_with(&data) && !data.starts_with(g)),
            "the data directory or a parent of it was granted: {got:?}"
        );
    }

    #[test]
    fn roots_without_anything_protected_stay_whole_and_missing_ones_are_dropped() {
        let tmp = tempfile::tempdir().expect("tmp");
        let a = tmp.path().join("a");
        std::fs::create_dir_all(&a).expect("mkdir");
        let got = expand(
            &[a.clone(), tmp.path().join("missing")],
            &[tmp.path().join("b")],
        );
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(got.contains(&std::fs::canonicalize(&a).expect("canonical")));
        // A protected parent takes the whole root away.
        assert!(expand(std::slice::from_ref(&a), &[tmp.path().to_path_buf()]).is_empty());
    }
}
