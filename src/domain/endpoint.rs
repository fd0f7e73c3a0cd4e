//! An upstream MCP server's URL, taken apart once (when the routing table is built): the pool
//! key, the `Host` header, the address to connect to and the TLS name. A pure value; the
//! upstream client (`shared::upstream`) connects to it.

use std::net::SocketAddr;

use rustls_pki_types::ServerName;
use url::Url;

/// An upstream MCP server's URL, taken apart once.
pub struct Endpoint {
    url: Url,
    /// `scheme://host:port`: the pool's key.
    pub(crate) key: String,
    pub(crate) host_header: http::HeaderValue,
    pub(crate) base_path: String,
    pub(crate) addr: Addr,
    pub(crate) tls: Option<ServerName<'static>>,
    /// Subject to the destination policy: every endpoint but a supervised process's own.
    pub(crate) guarded: bool,
}

pub(crate) enum Addr {
    Ip(SocketAddr),
    Name(String, u16),
}

impl Endpoint {
    /// `None` unless `url` is `http` or `https` with a host.
    pub fn new(url: Url) -> Option<Self> {
        let https = match url.scheme() {
            "http" => false,
            "https" => true,
            _ => return None,
        };
        let port = url.port_or_known_default()?;
        let host_str = url.host_str()?.to_owned();
        let addr = match url.host()? {
            url::Host::Ipv4(ip) => Addr::Ip(SocketAddr::new(ip.into(), port)),
            url::Host::Ipv6(ip) => Addr::Ip(SocketAddr::new(ip.into(), port)),
            url::Host::Domain(d) => Addr::Name(d.to_owned(), port),
        };
        let tls = if https {
            let name = match &addr {
                Addr::Ip(a) => ServerName::IpAddress(a.ip().into()),
                Addr::Name(d, _) => ServerName::try_from(d.clone()).ok()?,
            };
            Some(name)
        } else {
            None
        };
        let host_header = match url.port() {
            Some(p) => format!("{host_str}:{p}"),
            None => host_str.clone(),
        };
        Some(Self {
            key: format!("{}://{host_str}:{port}", url.scheme()),
            host_header: http::HeaderValue::from_str(&host_header).ok()?,
            base_path: url.path().trim_end_matches('/').to_owned(),
            addr,
            tls,
            url,
            guarded: true,
        })
    }

    /// The endpoint of a process ezforge supervises (`127.0.0.1` and the port it gave it):
    /// exempt from the destination policy, whose lists are about where URLs may point.
    pub fn supervised(url: Url) -> Option<Self> {
        Self::new(url).map(|ep| Self {
            guarded: false,
            ..ep
        })
    }

    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The URL's path without a trailing slash.
    pub fn base_path(&self) -> &str {
        &self.base_path
    }

    pub fn host_header(&self) -> &http::HeaderValue {
        &self.host_header
    }
}
