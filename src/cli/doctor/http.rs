//! The HTTP client of `doctor URL`: timeouts, no redirects followed (clients mostly do not
//! follow them for metadata either, and a check must see what is served where), a size cap,
//! certificates verified unless `--insecure`, and no requests to link-local addresses (cloud
//! metadata services), whatever a remote document names.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::StreamExt;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::HeaderMap;

use super::discovery::Doc;

/// Per request, connection included.
pub const TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest body read; metadata documents are a few KiB.
const MAX_BODY: usize = 512 * 1024;

/// How `doctor URL` connects.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Accept any certificate.
    pub insecure: bool,
    /// PEM files of extra trusted certificates.
    pub cacerts: Vec<PathBuf>,
    /// `NAME=IP[:PORT]`: requests for NAME go there (as curl's `--resolve`).
    pub resolve: Vec<String>,
}

/// One answer, read completely (up to the cap).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn header_values(&self, name: &str) -> Vec<String> {
        self.headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_owned)
            .collect()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// As a metadata document: a JSON object on 200, missing on 404/410, else what went wrong.
    pub fn doc(&self) -> Doc {
        match self.status {
            200 => match serde_json::from_slice::<serde_json::Value>(&self.body) {
                Ok(v) if v.is_object() => Doc::Found(v),
                Ok(_) => Doc::Bad("HTTP 200 but not a JSON object".into()),
                Err(e) => Doc::Bad(format!("HTTP 200 but not JSON ({e})")),
            },
            404 | 410 => Doc::Missing(self.status),
            s @ 300..=399 => Doc::Bad(format!(
                "HTTP {s}, a redirect to {} (not followed)",
                self.header("location").unwrap_or("nowhere")
            )),
            s => Doc::Bad(format!("HTTP {s}")),
        }
    }
}

pub struct Http {
    client: reqwest::Client,
}

impl Http {
    pub fn new(opts: &Options) -> anyhow::Result<Http> {
        let mut b = reqwest::Client::builder()
            .user_agent(concat!("ezforge-doctor/", env!("CARGO_PKG_VERSION")))
            .timeout(TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(NoLinkLocal))
            .danger_accept_invalid_certs(opts.insecure);
        for path in &opts.cacerts {
            let pem =
                std::fs::read(path).with_context(|| format!("--cacert {}", path.display()))?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem)
                .with_context(|| format!("--cacert {}: not PEM certificates", path.display()))?
            {
                b = b.add_root_certificate(cert);
            }
        }
        for entry in &opts.resolve {
            let (name, addr) = parse_resolve(entry)?;
            b = b.resolve(&name, addr);
        }
        Ok(Http {
            client: b.build().context("cannot build the HTTP client")?,
        })
    }

    pub async fn get(&self, url: &str) -> Result<Answer, String> {
        self.send(
            self.client
                .get(url)
                .header(reqwest::header::ACCEPT, "application/json"),
        )
        .await
    }

    /// POSTs an MCP JSON-RPC message as a Streamable HTTP client does.
    pub async fn post_mcp(&self, url: &str, message: &serde_json::Value) -> Result<Answer, String> {
        self.send(
            self.client
                .post(url)
                .header(
                    reqwest::header::ACCEPT,
                    "application/json, text/event-stream",
                )
                .json(message),
        )
        .await
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<Answer, String> {
        let res = req.send().await.map_err(|e| cause(&e))?;
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let mut body = Vec::new();
        // An SSE answer (a server that answered 200) may never end: its head is enough.
        let streaming = headers
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("text/event-stream"));
        if !streaming {
            let mut stream = res.bytes_stream();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| cause(&e))?;
                if body.len() + chunk.len() > MAX_BODY {
                    return Err(format!("the answer is larger than {} KiB", MAX_BODY / 1024));
                }
                body.extend_from_slice(&chunk);
            }
        }
        Ok(Answer {
            status,
            headers,
            body,
        })
    }
}

/// `NAME=IP[:PORT]` (an IPv6 address in brackets when a port follows).
pub fn parse_resolve(entry: &str) -> anyhow::Result<(String, SocketAddr)> {
    let Some((name, addr)) = entry.split_once('=') else {
        bail!("--resolve {entry:?}: expected NAME=IP[:PORT], e.g. mcp.example.com=127.0.0.1:8443");
    };
    let name = name.trim();
    if name.is_empty() || name.contains(['/', ':']) {
        bail!("--resolve {entry:?}: {name:?} is not a host name");
    }
    let addr = addr.trim();
    let addr = addr
        .parse::<SocketAddr>()
        .or_else(|_| addr.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 0)))
        .or_else(|_| {
            addr.trim_matches(['[', ']'])
                .parse::<IpAddr>()
                .map(|ip| SocketAddr::new(ip, 0))
        })
        .map_err(|_| anyhow::anyhow!("--resolve {entry:?}: {addr:?} is not IP[:PORT]"))?;
    Ok((name.to_owned(), addr))
}

/// The error and its causes, as one line, without the wrapping that says nothing
/// ("tcp connect error: Connection refused (os error 111)").
pub fn cause(e: &reqwest::Error) -> String {
    brief(&crate::outbound::describe(e))
}

fn brief(chain: &str) -> String {
    let parts: Vec<&str> = chain
        .split(": ")
        .filter(|p| {
            !p.starts_with("error sending request for url") && !p.starts_with("client error (")
        })
        .collect();
    if parts.is_empty() {
        chain.to_owned()
    } else {
        parts.join(": ")
    }
}

/// Whether an error is about the server's certificate.
pub fn is_certificate_error(cause: &str) -> bool {
    let c = cause.to_ascii_lowercase();
    c.contains("certificate") || c.contains("unknownissuer") || c.contains("invalid peer")
}

/// Link-local addresses (169.254.0.0/16, fe80::/10, and IPv4-mapped ones): where cloud
/// metadata services answer. A remote document must not lead doctor there.
fn is_link_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => {
            v6.to_ipv4_mapped().is_some_and(|v4| v4.is_link_local())
                || (v6.segments()[0] & 0xFFC0) == 0xFE80
        }
    }
}

/// The system's resolver, without link-local answers.
struct NoLinkLocal;

impl Resolve for NoLinkLocal {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| !is_link_local(a.ip()))
                .collect();
            if addrs.is_empty() {
                return Err(format!("{host} resolves only to link-local addresses").into());
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// Whether a URL's host is a link-local address literal (names are filtered when resolved).
pub fn is_link_local_literal(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => is_link_local(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => is_link_local(IpAddr::V6(ip)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_entries_name_a_host_and_an_address() {
        assert_eq!(
            parse_resolve("mcp.example.com=127.0.0.1:8443").expect("ok"),
            (
                "mcp.example.com".into(),
                "127.0.0.1:8443".parse().expect("addr")
            )
        );
        assert_eq!(
            parse_resolve("a.example=::1").expect("ok").1,
            "[::1]:0".parse::<SocketAddr>().expect("addr")
        );
        assert_eq!(
            parse_resolve("a.example=[::1]:9").expect("ok").1,
            "[::1]:9".parse::<SocketAddr>().expect("addr")
        );
        for bad in [
            "a.example",
            "=1.2.3.4",
            "a.example=nowhere",
            "https://a=1.2.3.4",
        ] {
            assert!(parse_resolve(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn error_chains_keep_their_cause_only() {
        assert_eq!(
            brief(
                "error sending request for url (http://127.0.0.1:9/mcp): client error (Connect): tcp connect error: Connection refused (os error 111)"
            ),
            "tcp connect error: Connection refused (os error 111)"
        );
        assert_eq!(brief("operation timed out"), "operation timed out");
    }

    #[test]
    fn link_local_addresses_are_recognised_in_every_spelling() {
        for ip in ["169.254.169.254", "fe80::1", "::ffff:169.254.169.254"] {
            assert!(is_link_local(ip.parse().expect("ip")), "{ip}");
        }
        for ip in ["127.0.0.1", "10.0.0.1", "::1", "2001:db8::1"] {
            assert!(!is_link_local(ip.parse().expect("ip")), "{ip}");
        }
        let url = url::Url::parse("http://169.254.169.254/latest").expect("url");
        assert!(is_link_local_literal(&url));
    }
}
