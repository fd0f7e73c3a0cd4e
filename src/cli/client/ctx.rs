//! What every client command shares before it sends anything: the server's URL, the output
//! mode and the caller's credential.

use std::path::PathBuf;

use anyhow::{Context, bail};

use crate::domain::Secret;

use super::api::{Api, Credential};
use super::args::ClientOpts;
use super::credentials::{self, Stored};

/// Where a client command goes when neither `--url`, `EZFORGE_URL` nor a stored session names a
/// server: the listener `ezforge serve` uses without a config.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8080";

/// What a client command knows before it sends anything.
pub struct Ctx {
    /// The server's base URL, normalised, without a trailing slash.
    pub base: String,
    pub json: bool,
    /// The credentials file, when HOME or XDG_CONFIG_HOME says where it is.
    pub creds_path: Option<PathBuf>,
    /// Its content, when it exists and parses.
    pub stored: Option<Stored>,
    /// `EZFORGE_API_KEY`, which wins over a stored session.
    pub api_key: Option<Secret>,
}

impl Ctx {
    pub(super) fn new(opts: ClientOpts) -> anyhow::Result<Self> {
        let creds_path = credentials::default_path();
        let stored = match &creds_path {
            Some(p) => match credentials::load(p) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("warning: ignoring {}: {e:#}", p.display());
                    None
                }
            },
            None => None,
        };
        let url = opts
            .url
            .filter(|u| !u.trim().is_empty())
            .or_else(|| stored.as_ref().map(|s| s.url.clone()))
            .unwrap_or_else(|| DEFAULT_URL.to_owned());
        let base = normalize_url(&url)?;
        let api_key = std::env::var("EZFORGE_API_KEY")
            .ok()
            .map(|k| k.trim().to_owned())
            .filter(|k| !k.is_empty())
            .map(Secret::new);
        Ok(Self {
            base,
            json: opts.json,
            creds_path,
            stored,
            api_key,
        })
    }

    /// The API with the caller's credential: `EZFORGE_API_KEY`, else the session stored for this
    /// URL. Refuses to send a session to a server other than the one it came from.
    pub fn api(&self) -> anyhow::Result<Api> {
        if let Some(key) = &self.api_key {
            return Api::new(&self.base, Credential::ApiKey(key.clone()));
        }
        let Some(stored) = &self.stored else {
            bail!(
                "not logged in to {}: run `ezforge auth login --email EMAIL` or set EZFORGE_API_KEY",
                self.base
            );
        };
        if normalize_url(&stored.url).ok().as_deref() != Some(self.base.as_str()) {
            bail!(
                "not logged in to {} (the stored session is for {}): run `ezforge auth login --url {}` or set EZFORGE_API_KEY",
                self.base,
                stored.url,
                self.base
            );
        }
        if let Some(exp) = stored.expires_at.as_deref()
            && credentials::is_past(exp)
        {
            bail!(
                "the session for {} expired at {exp}: run `ezforge auth login`",
                self.base
            );
        }
        Api::new(
            &self.base,
            Credential::Session(Secret::new(stored.token.clone())),
        )
    }
}

/// `http(s)://host[:port][/prefix]` without a trailing slash; anything else is refused.
pub fn normalize_url(raw: &str) -> anyhow::Result<String> {
    let raw = raw.trim();
    let url = url::Url::parse(raw).with_context(|| format!("invalid server URL {raw:?}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        bail!("invalid server URL {raw:?}: expected http(s)://host[:port]");
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        bail!("invalid server URL {raw:?}: no query, fragment or user name allowed");
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// Splits `"a,b"` (or `"a b"`) into scopes, dropping blanks.
pub fn split_scopes(s: &str) -> Vec<String> {
    s.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_normalised() {
        let n = |s: &str| normalize_url(s).ok();
        assert_eq!(
            n("http://127.0.0.1:8080/").as_deref(),
            Some("http://127.0.0.1:8080")
        );
        assert_eq!(
            n(" HTTPS://Forge.Example.com ").as_deref(),
            Some("https://forge.example.com")
        );
        assert_eq!(
            n("https://h.example/prefix/").as_deref(),
            Some("https://h.example/prefix")
        );
        assert!(n("ftp://h").is_none());
        assert!(n("localhost:8080").is_none());
        assert!(n("http://h/?a=1").is_none());
        assert!(n("http://user@h/").is_none());
    }

    #[test]
    fn scopes_split_on_commas_and_spaces() {
        assert_eq!(
            split_scopes("servers:read, servers:write,,logs:read"),
            ["servers:read", "servers:write", "logs:read"]
        );
        assert_eq!(
            split_scopes("mcp:read mcp:execute"),
            ["mcp:read", "mcp:execute"]
        );
        assert!(split_scopes(" , ").is_empty());
    }
}
