//! Outbound HTTPS (metadata documents, BYOA JWKS): https only, extra CA files from config, a
//! timeout and a size cap, and an SSRF guard that refuses loopback, private and link-local
//! addresses (after DNS resolution and on every redirect) unless the config allows them.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::Url;

use crate::config::OutboundConfig;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{0} is not an https URL")]
    NotHttps(String),
    #[error("{0} resolves to a private, loopback or link-local address")]
    Forbidden(String),
    #[error("{url} answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("{url} is larger than {limit} bytes")]
    TooLarge { url: String, limit: usize },
    #[error("{url}: {reason}")]
    Transport { url: String, reason: String },
    #[error("{url} is not valid JSON: {reason}")]
    Json { url: String, reason: String },
    #[error("cannot read CA file {path}: {reason}")]
    CaFile { path: String, reason: String },
}

/// Addresses a fetch must not reach unless `outbound.allow_private_addresses` is set.
pub fn is_forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xC0) == 64) // 100.64.0.0/10 shared address space
                || (o[0] == 198 && (o[1] & 0xFE) == 18) // 198.18.0.0/15 benchmarking
                || o[0] >= 224 // multicast and reserved
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_forbidden(IpAddr::V4(v4));
            }
            let seg = v6.segments();
            let embedded = |hi: u16, lo: u16| {
                is_forbidden(IpAddr::V4(std::net::Ipv4Addr::from(
                    (u32::from(hi) << 16) | u32::from(lo),
                )))
            };
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || seg[..6] == [0; 6] // IPv4-compatible (::a.b.c.d), deprecated
                || (seg[0] == 0x2002 && embedded(seg[1], seg[2])) // 6to4 of a forbidden address
                || (seg[0] == 0x2001 && seg[1] == 0) // Teredo tunnels to anything
                || (seg[0] & 0xFE00) == 0xFC00 // unique local
                || (seg[0] & 0xFFC0) == 0xFE80 // link-local
                || (seg[0] & 0xFFC0) == 0xFEC0 // site-local, deprecated
                || (seg[0] == 0x64 && seg[1] == 0xFF9B) // NAT64 can reach anything
                || (seg[0] == 0x2001 && seg[1] == 0x0DB8) // documentation
        }
    }
}

/// Resolves with the system resolver, then drops forbidden addresses.
struct GuardedResolver;

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = addrs
                .into_iter()
                .filter(|a| !is_forbidden(a.ip()))
                .collect();
            if allowed.is_empty() {
                return Err(format!(
                    "{host} resolves only to private, loopback or link-local addresses"
                )
                .into());
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// Is this URL allowed at all: https, and not an IP literal in a forbidden range?
fn check_url(url: &Url, allow_private: bool) -> Result<(), FetchError> {
    if url.scheme() != "https" {
        return Err(FetchError::NotHttps(url.to_string()));
    }
    if !allow_private {
        let literal = match url.host() {
            Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            Some(url::Host::Domain(d))
                if d.eq_ignore_ascii_case("localhost") || d.ends_with(".localhost") =>
            {
                return Err(FetchError::Forbidden(url.to_string()));
            }
            _ => None,
        };
        if literal.is_some_and(is_forbidden) {
            return Err(FetchError::Forbidden(url.to_string()));
        }
    }
    Ok(())
}

/// The clients for every outbound fetch, built once.
#[derive(Clone)]
pub struct Outbound {
    client: reqwest::Client,
    /// The same, following no redirect (what must come from the very URL asked for).
    exact: reqwest::Client,
    allow_private: bool,
    max_size: usize,
}

impl Outbound {
    pub fn new(config: &OutboundConfig) -> Result<Self, FetchError> {
        let allow_private = config.allow_private_addresses;
        let guarded = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= 5 {
                attempt.error("too many redirects")
            } else if let Err(e) = check_url(attempt.url(), allow_private) {
                attempt.error(e.to_string())
            } else {
                attempt.follow()
            }
        });
        Ok(Self {
            client: client(config, guarded)?,
            exact: client(config, reqwest::redirect::Policy::none())?,
            allow_private,
            max_size: config.max_document_size.0,
        })
    }

    /// GETs a JSON document, following redirects (each hop guarded); returns it with the
    /// response's `Cache-Control: max-age`, if any.
    pub async fn get_json(
        &self,
        url: &str,
    ) -> Result<(serde_json::Value, Option<Duration>), FetchError> {
        self.fetch_json(&self.client, url).await
    }

    /// Like [`Self::get_json`], but a redirect is an error: for documents whose URL is their
    /// identity (a client ID metadata document must not come from elsewhere).
    pub async fn get_json_exact(
        &self,
        url: &str,
    ) -> Result<(serde_json::Value, Option<Duration>), FetchError> {
        self.fetch_json(&self.exact, url).await
    }

    async fn fetch_json(
        &self,
        client: &reqwest::Client,
        url: &str,
    ) -> Result<(serde_json::Value, Option<Duration>), FetchError> {
        let parsed = Url::parse(url).map_err(|_| FetchError::NotHttps(url.to_owned()))?;
        check_url(&parsed, self.allow_private)?;
        let transport = |e: reqwest::Error| FetchError::Transport {
            url: url.to_owned(),
            reason: describe(&e),
        };
        let res = client
            .get(parsed)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(transport)?;
        let status = res.status();
        if !status.is_success() {
            return Err(FetchError::Status {
                url: url.to_owned(),
                status: status.as_u16(),
            });
        }
        if res
            .content_length()
            .is_some_and(|n| n > self.max_size as u64)
        {
            return Err(FetchError::TooLarge {
                url: url.to_owned(),
                limit: self.max_size,
            });
        }
        let max_age = res
            .headers()
            .get(reqwest::header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .and_then(max_age);
        let mut body = Vec::new();
        let mut stream = res.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(transport)?;
            if body.len() + chunk.len() > self.max_size {
                return Err(FetchError::TooLarge {
                    url: url.to_owned(),
                    limit: self.max_size,
                });
            }
            body.extend_from_slice(&chunk);
        }
        let json = serde_json::from_slice(&body).map_err(|e| FetchError::Json {
            url: url.to_owned(),
            reason: e.to_string(),
        })?;
        Ok((json, max_age))
    }
}

/// A client for outbound fetches: https only, with the configured timeouts and CAs, the DNS
/// guard unless private addresses are allowed, and `redirects`.
fn client(
    config: &OutboundConfig,
    redirects: reqwest::redirect::Policy,
) -> Result<reqwest::Client, FetchError> {
    let mut builder = reqwest::Client::builder()
        .timeout(config.timeout.0)
        .connect_timeout(config.timeout.0)
        .user_agent(concat!("ezforge/", env!("CARGO_PKG_VERSION")))
        .https_only(true)
        .redirect(redirects);
    if !config.allow_private_addresses {
        // Through a proxy (HTTPS_PROXY…) the proxy would resolve the host, out of the
        // guard's sight: guarded fetches go direct.
        builder = builder.dns_resolver(Arc::new(GuardedResolver)).no_proxy();
    }
    for path in &config.ca_files {
        let ca_err = |reason: String| FetchError::CaFile {
            path: path.display().to_string(),
            reason,
        };
        let pem = std::fs::read(path).map_err(|e| ca_err(e.to_string()))?;
        for cert in
            reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| ca_err(e.to_string()))?
        {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder.build().map_err(|e| FetchError::Transport {
        url: "-".into(),
        reason: e.to_string(),
    })
}

/// The most useful part of a reqwest error chain, without internals.
pub fn describe(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(inner) = source {
        s = format!("{s}: {inner}");
        source = inner.source();
    }
    s
}

/// `max-age` (or `no-store`/`no-cache` as zero) from a Cache-Control header.
pub fn max_age(header: &str) -> Option<Duration> {
    let mut out = None;
    for part in header.split(',').map(str::trim) {
        let lower = part.to_ascii_lowercase();
        if lower == "no-store" || lower == "no-cache" {
            return Some(Duration::ZERO);
        }
        if let Some(v) = lower.strip_prefix("max-age=") {
            out = v.trim_matches('"').parse().ok().map(Duration::from_secs);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forbidden_ranges() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "64:ff9b::7f00:1",
            "::127.0.0.1",
            "::10.0.0.1",
            "2002:7f00:1::1",
            "2002:a9fe:a9fe::",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "fec0::1",
        ] {
            assert!(is_forbidden(ip.parse().expect("ip")), "{ip}");
        }
        for ip in [
            "93.184.216.34",
            "2606:2800:220:1:248:1893:25c8:1946",
            "1.1.1.1",
            "2002:5db8:d822::1",
        ] {
            assert!(!is_forbidden(ip.parse().expect("ip")), "{ip}");
        }
    }

    #[test]
    fn url_checks() {
        let u = |s: &str| Url::parse(s).expect("url");
        assert!(check_url(&u("http://example.com/x"), false).is_err());
        assert!(check_url(&u("https://127.0.0.1/x"), false).is_err());
        assert!(check_url(&u("https://[::ffff:127.0.0.1]/x"), false).is_err());
        assert!(check_url(&u("https://localhost/x"), false).is_err());
        assert!(check_url(&u("https://example.com/x"), false).is_ok());
        assert!(check_url(&u("https://127.0.0.1/x"), true).is_ok());
    }

    #[test]
    fn cache_control() {
        assert_eq!(
            max_age("public, max-age=600"),
            Some(Duration::from_secs(600))
        );
        assert_eq!(max_age("no-store"), Some(Duration::ZERO));
        assert_eq!(max_age("public"), None);
    }
}
