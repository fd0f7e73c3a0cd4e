//! The credentials file: `$XDG_CONFIG_HOME/ezforge/credentials`, else
//! `$HOME/.config/ezforge/credentials`; JSON `{"url", "token", "expiresAt", "email"}`, mode 0600
//! in a directory made with 0700.

use std::ffi::OsString;
use std::fmt;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stored {
    /// The server the session belongs to (normalised base URL).
    pub url: String,
    /// The session token (`ezf_sess_…`).
    pub token: String,
    #[serde(default)]
    pub expires_at: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
}

impl fmt::Debug for Stored {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stored")
            .field("url", &self.url)
            .field("token", &"***")
            .field("expires_at", &self.expires_at)
            .field("email", &self.email)
            .finish()
    }
}

/// The file's place according to the environment; `None` when neither variable helps.
pub fn default_path() -> Option<PathBuf> {
    path_from(
        std::env::var_os("XDG_CONFIG_HOME"),
        std::env::var_os("HOME"),
    )
}

/// XDG base directories: a relative or empty `XDG_CONFIG_HOME` is ignored.
pub fn path_from(xdg_config_home: Option<OsString>, home: Option<OsString>) -> Option<PathBuf> {
    let config = xdg_config_home
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| {
            home.filter(|h| !h.is_empty())
                .map(|h| PathBuf::from(h).join(".config"))
        })?;
    Some(config.join("ezforge").join("credentials"))
}

/// `Ok(None)` when there is no file.
pub fn load(path: &Path) -> anyhow::Result<Option<Stored>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).context("cannot read it"),
    };
    let stored = serde_json::from_str(&text)
        .context("not a credentials file; run `ezforge auth login` to replace it")?;
    Ok(Some(stored))
}

/// Writes the file atomically (a 0600 temporary file renamed over it).
pub fn save(path: &Path, stored: &Stored) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .context("the credentials path has no directory")?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let tmp = dir.join(".credentials.tmp");
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        // `mode` only applies to a new file; a leftover one may have been looser.
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        let mut json = serde_json::to_vec_pretty(stored)?;
        json.push(b'\n');
        f.write_all(&json)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        anyhow::Error::new(e).context(format!("cannot write {}", path.display()))
    })
}

/// Deletes the file; `Ok(false)` when there was none.
pub fn remove(path: &Path) -> anyhow::Result<bool> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("cannot delete {}", path.display())),
    }
}

/// True when an RFC 3339 time has passed; false when it cannot be read (the server decides).
pub fn is_past(rfc3339: &str) -> bool {
    humantime::parse_rfc3339_weak(rfc3339)
        .map(|t| t <= std::time::SystemTime::now())
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xdg_config_home_wins_over_home_when_absolute() {
        let p = |x: Option<&str>, h: Option<&str>| {
            path_from(x.map(OsString::from), h.map(OsString::from))
        };
        assert_eq!(
            p(Some("/x"), Some("/home/a")),
            Some(PathBuf::from("/x/ezforge/credentials"))
        );
        assert_eq!(
            p(None, Some("/home/a")),
            Some(PathBuf::from("/home/a/.config/ezforge/credentials"))
        );
        assert_eq!(
            p(Some(""), Some("/home/a")),
            Some(PathBuf::from("/home/a/.config/ezforge/credentials"))
        );
        assert_eq!(
            p(Some("rel"), Some("/home/a")),
            Some(PathBuf::from("/home/a/.config/ezforge/credentials"))
        );
        assert_eq!(p(None, None), None);
        assert_eq!(p(None, Some("")), None);
    }

    #[test]
    fn saved_credentials_are_private_and_read_back() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("cfg/ezforge/credentials");
        let s = Stored {
            url: "http://127.0.0.1:8080".into(),
            token: "ezf_sess_abc".into(),
            expires_at: Some("2026-01-15T10:00:00Z".into()),
            email: Some("a@example.com".into()),
        };
        save(&path, &s).expect("save");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let dmode = std::fs::metadata(path.parent().expect("dir"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(dmode & 0o777, 0o700);
        let back = load(&path).expect("load").expect("some");
        assert_eq!(back.token, "ezf_sess_abc");
        assert_eq!(back.expires_at.as_deref(), Some("2026-01-15T10:00:00Z"));
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(text.contains("\"expiresAt\""), "{text}");
        assert!(!format!("{back:?}").contains("ezf_sess_abc"));
        assert!(remove(&path).expect("rm"));
        assert!(!remove(&path).expect("rm again"));
        assert!(load(&path).expect("load").is_none());
    }

    #[test]
    fn expiry_is_checked_only_when_readable() {
        assert!(is_past("2000-01-01T00:00:00Z"));
        assert!(!is_past("2999-01-01T00:00:00Z"));
        assert!(!is_past("soon"));
    }
}
