//! Where requests for upstream MCP servers may go. Checked when an upstream URL is set (create,
//! update, deploy, rollback, the config file's `[[servers]]`) and again on every new connection
//! against the address the name actually resolved to (DNS rebinding), by the front door and by
//! health checks alike. Private and loopback addresses stay allowed: on-prem MCP servers live
//! there. Refused, whatever the operator's lists say:
//!
//! - ezforge's own listeners (its main port and the metrics port, on any local address) and
//!   the ports of the processes it supervises for servers (one project's URL must not reach
//!   another project's process).
//!
//! Refused unless `gateway.upstream_allow` lists them (a CIDR lying wholly within what is
//! refused for that reason, for an address; a host pattern, for a name):
//!
//! - link-local addresses (`169.254.0.0/16`, `fe80::/10`), where cloud metadata services
//!   answer, other metadata addresses and names, the unspecified address, multicast and
//!   broadcast; also each of these embedded in an IPv6 address (IPv4-mapped, -compatible,
//!   NAT64, 6to4, Teredo, ISATAP).
//!
//! `gateway.upstream_deny` refuses more (an address also by the IPv4 address it embeds); a
//! non-empty `gateway.upstream_allow` refuses all it does not list (an address as it is: never
//! by an IPv4 address it seems to embed).

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use url::{Host, Url};

/// A name resolution in progress.
pub type Lookup = Pin<Box<dyn Future<Output = std::io::Result<Vec<SocketAddr>>> + Send>>;

/// Name resolution, as a seam: the system's resolver in production; tests give one that
/// answers as they script it (a name that rebinds between lookups).
pub trait Resolve: Send + Sync {
    fn lookup(&self, host: &str, port: u16) -> Lookup;
}

/// The system's resolver (`getaddrinfo` on a blocking thread).
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn lookup(&self, host: &str, port: u16) -> Lookup {
        let host = host.to_owned();
        Box::pin(async move {
            Ok(tokio::net::lookup_host((host.as_str(), port))
                .await?
                .collect())
        })
    }
}

/// Why a destination is refused; the message names the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{0} is link-local (169.254.0.0/16, fe80::/10), where cloud metadata services answer")]
    LinkLocal(IpAddr),
    #[error("{0} is a cloud metadata service")]
    Metadata(String),
    #[error("{0} is the unspecified address, which reaches this machine")]
    Unspecified(IpAddr),
    #[error("{0} is a multicast, broadcast or reserved address")]
    Multicast(IpAddr),
    #[error("{outer} embeds the IPv4 address {inner}, and {why}")]
    Embedded {
        outer: Ipv6Addr,
        inner: Ipv4Addr,
        why: Box<Refusal>,
    },
    #[error("{0} is ezforge's own listener")]
    OwnListener(SocketAddr),
    #[error("port {0} on this machine is a process ezforge runs for a server")]
    Supervised(u16),
    #[error("{what} is denied by gateway.upstream_deny ({rule})")]
    Denied { what: String, rule: String },
    #[error("{0} is not in gateway.upstream_allow")]
    NotAllowed(String),
}

/// An entry of `gateway.upstream_allow` or `gateway.upstream_deny`: a CIDR (a bare address is
/// one address) or a host pattern (`mcp.example.com`, or `*.example.com` for any name below it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    Cidr { net: IpAddr, bits: u8, text: String },
    Host { pattern: String, wildcard: bool },
}

impl Rule {
    pub fn parse(s: &str) -> Result<Rule, String> {
        let t = s.trim();
        let (addr, bits) = match t.split_once('/') {
            Some((a, b)) => (a, Some(b)),
            None => (t, None),
        };
        if let Ok(ip) = addr.parse::<IpAddr>() {
            let max = if ip.is_ipv4() { 32 } else { 128 };
            let bits = match bits {
                None => max,
                Some(b) => b
                    .parse::<u8>()
                    .ok()
                    .filter(|b| *b <= max)
                    .ok_or_else(|| format!("{t:?}: the prefix length must be 0 to {max}"))?,
            };
            return Ok(Rule::Cidr {
                net: mask(canonical(ip), bits),
                bits,
                text: t.to_owned(),
            });
        }
        if bits.is_some() {
            return Err(format!(
                "{t:?} is not a CIDR such as 10.0.0.0/8 or fd00::/8"
            ));
        }
        let lower = t.to_ascii_lowercase();
        let (wildcard, rest) = match lower.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, lower.as_str()),
        };
        let rest = rest.trim_end_matches('.');
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if rest.is_empty() || rest.len() > 253 || !rest.split('.').all(label_ok) {
            return Err(format!(
                "{t:?} is neither a CIDR (10.0.0.0/8, fd00::/8, 192.0.2.7) nor a host pattern (mcp.example.com, *.example.com)"
            ));
        }
        Ok(Rule::Host {
            pattern: rest.to_owned(),
            wildcard,
        })
    }

    fn matches_ip(&self, ip: IpAddr) -> bool {
        match self {
            Rule::Cidr { net, bits, .. } => {
                let ip = canonical(ip);
                ip.is_ipv4() == net.is_ipv4() && mask(ip, *bits) == *net
            }
            Rule::Host { .. } => false,
        }
    }

    /// Whether this allow rule may lift `why`, the built-in refusal of an address it matches:
    /// only a CIDR that lies wholly within what is refused for that same reason, so that
    /// `169.254.10.0/24` lifts link-local for its range while `0.0.0.0/0`, `::/0` or
    /// `fd00::/8` (an operator's "my ULA network", which holds AWS's `fd00:ec2::/32`) lift
    /// nothing built in. What each reason refuses is one range or single addresses, mapped
    /// in order into each IPv6 form that embeds it, so a CIDR's two ends decide.
    fn lifts(&self, why: &Refusal) -> bool {
        let Rule::Cidr { net, bits, .. } = self else {
            return false;
        };
        [*net, last_of(*net, *bits)]
            .into_iter()
            .all(|end| builtin(end).is_some_and(|r| same_reason(&r, why)))
    }

    fn matches_name(&self, name: &str) -> bool {
        match self {
            Rule::Host { pattern, wildcard } => {
                if *wildcard {
                    name.strip_suffix(pattern.as_str())
                        .is_some_and(|head| head.ends_with('.') && head.len() > 1)
                } else {
                    name == pattern
                }
            }
            Rule::Cidr { .. } => false,
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rule::Cidr { text, .. } => f.write_str(text),
            Rule::Host {
                pattern,
                wildcard: true,
            } => write!(f, "*.{pattern}"),
            Rule::Host { pattern, .. } => f.write_str(pattern),
        }
    }
}

/// Parses a config list, naming the entry that is wrong.
pub fn parse_rules(entries: &[String]) -> Result<Vec<Rule>, String> {
    entries.iter().map(|e| Rule::parse(e)).collect()
}

fn mask(ip: IpAddr, bits: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let m = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(v4) & m))
        }
        IpAddr::V6(v6) => {
            let m = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & m))
        }
    }
}

/// The last address of the CIDR `net`/`bits`.
fn last_of(net: IpAddr, bits: u8) -> IpAddr {
    match net {
        IpAddr::V4(v4) => {
            let host = u32::MAX.checked_shr(u32::from(bits)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(v4) | host))
        }
        IpAddr::V6(v6) => {
            let host = u128::MAX.checked_shr(u32::from(bits)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) | host))
        }
    }
}

/// Are two built-in refusals for the same reason (embedded: the same reason inside)?
fn same_reason(a: &Refusal, b: &Refusal) -> bool {
    match (a, b) {
        (Refusal::Embedded { why: x, .. }, Refusal::Embedded { why: y, .. }) => same_reason(x, y),
        _ => std::mem::discriminant(a) == std::mem::discriminant(b),
    }
}

/// An IPv4-mapped IPv6 address is that IPv4 address: the kernel connects to it as such.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// The IPv4 address an IPv6 address carries, in the forms that deliver to it: IPv4-compatible
/// (`::a.b.c.d`), NAT64 (`64:ff9b::/96`, `64:ff9b:1::/48`), 6to4 (`2002::/16`), Teredo
/// (`2001::/32`, the client's address, inverted) and ISATAP (`…:0:5efe:a.b.c.d`).
fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    let v4 = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    match s {
        [0, 0, 0, 0, 0, 0, hi, lo] if (hi, lo) != (0, 0) && (hi, lo) != (0, 1) => Some(v4(hi, lo)),
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] | [0x64, 0xff9b, 1, _, _, _, hi, lo] => Some(v4(hi, lo)),
        [0x2002, hi, lo, ..] => Some(v4(hi, lo)),
        [0x2001, 0, _, _, _, _, hi, lo] => Some(v4(!hi, !lo)),
        [_, _, _, _, x, 0x5efe, hi, lo] if x & 0xfcff == 0 => Some(v4(hi, lo)),
        _ => None,
    }
}

/// Cloud metadata services by name (their addresses are refused too, whatever name reaches them).
const METADATA_NAMES: &[&str] = &[
    "metadata.google.internal",
    "metadata.goog",
    "metadata",
    "instance-data",
    "instance-data.ec2.internal",
    "metadata.tencentyun.com",
];

/// Cloud metadata services by address, beyond the link-local range.
fn is_metadata(ip: IpAddr) -> bool {
    match ip {
        // Alibaba Cloud; Azure's WireServer; Oracle Cloud Classic.
        IpAddr::V4(v4) => [
            Ipv4Addr::new(100, 100, 100, 200),
            Ipv4Addr::new(168, 63, 129, 16),
            Ipv4Addr::new(192, 0, 0, 192),
        ]
        .contains(&v4),
        IpAddr::V6(v6) => {
            // AWS keeps its instance services in fd00:ec2::/32 (IMDS at ::254, the EKS Pod
            // Identity agent at ::23): all of it.
            let s = v6.segments();
            (s[0], s[1]) == (0xfd00, 0x0ec2)
                // GCP's metadata server; Scaleway's.
                || v6 == Ipv6Addr::new(0xfd20, 0xce, 0, 0, 0, 0, 0, 0x254)
                || v6 == Ipv6Addr::new(0xfd00, 0x42, 0, 0, 0, 0, 0, 0x42)
        }
    }
}

/// The built-in refusals of an address (before the operator's allow list can lift them).
fn builtin(ip: IpAddr) -> Option<Refusal> {
    match canonical(ip) {
        IpAddr::V4(v4) => {
            if v4.is_link_local() {
                Some(Refusal::LinkLocal(ip))
            } else if is_metadata(IpAddr::V4(v4)) {
                Some(Refusal::Metadata(ip.to_string()))
            } else if v4.octets()[0] == 0 {
                Some(Refusal::Unspecified(ip))
            } else if v4.octets()[0] >= 224 {
                Some(Refusal::Multicast(ip))
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            if (v6.segments()[0] & 0xffc0) == 0xfe80 {
                Some(Refusal::LinkLocal(ip))
            } else if is_metadata(ip) {
                Some(Refusal::Metadata(ip.to_string()))
            } else if v6.is_unspecified() {
                Some(Refusal::Unspecified(ip))
            } else if v6.is_multicast() {
                Some(Refusal::Multicast(ip))
            } else {
                let inner = embedded_v4(v6)?;
                let why = builtin(IpAddr::V4(inner))?;
                Some(Refusal::Embedded {
                    outer: v6,
                    inner,
                    why: Box::new(why),
                })
            }
        }
    }
}

/// Is `ip` an address of this machine (where ezforge's listeners answer)?
fn is_local(ip: IpAddr) -> bool {
    let ip = canonical(ip);
    // Binding succeeds only for this machine's own addresses; a syscall, done only when the
    // port is one of ours.
    ip.is_loopback()
        || ip.is_unspecified()
        || std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

fn lower_name(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// The destination policy, built once at start.
pub struct Destinations {
    allow: Vec<Rule>,
    deny: Vec<Rule>,
    /// ezforge's own listeners: (address it is bound to, what it is).
    own: Vec<SocketAddr>,
    /// The ports of the HTTP processes ezforge supervises now, each with its holders.
    supervised: Mutex<HashMap<u16, usize>>,
    resolver: Arc<dyn Resolve>,
}

impl Destinations {
    /// `own`: the listeners of this ezforge (main and metrics).
    pub fn new(
        config: &crate::config::GatewayConfig,
        own: Vec<SocketAddr>,
        resolver: Arc<dyn Resolve>,
    ) -> Result<Self, String> {
        Ok(Self {
            allow: parse_rules(&config.upstream_allow)?,
            deny: parse_rules(&config.upstream_deny)?,
            own,
            supervised: Mutex::default(),
            resolver,
        })
    }

    /// The policy a config implies before anything is bound (for `ezforge config check`).
    pub fn from_config(config: &crate::config::Config) -> Result<Self, String> {
        let mut own = vec![config.server.listen];
        if config.metrics.enabled
            && let Some(m) = config.metrics.listen
        {
            own.push(m);
        }
        Self::new(&config.gateway, own, Arc::new(SystemResolver))
    }

    pub fn resolver(&self) -> &dyn Resolve {
        self.resolver.as_ref()
    }

    fn ports(&self) -> std::sync::MutexGuard<'_, HashMap<u16, usize>> {
        self.supervised.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Marks `port` as a supervised process's, from before it starts until the guard is
    /// dropped with its deployment's target.
    pub fn reserve(self: &Arc<Self>, port: u16) -> PortGuard {
        *self.ports().entry(port).or_default() += 1;
        PortGuard {
            destinations: self.clone(),
            port,
        }
    }

    fn supervised_port(&self, port: u16) -> bool {
        self.ports().contains_key(&port)
    }

    /// What can be said of a URL before connecting: its literal address, or its name.
    pub fn check_url(&self, url: &Url) -> Result<(), Refusal> {
        let port = url.port_or_known_default().unwrap_or(0);
        match url.host() {
            Some(Host::Ipv4(ip)) => self.check_addr(None, SocketAddr::new(ip.into(), port)),
            Some(Host::Ipv6(ip)) => self.check_addr(None, SocketAddr::new(ip.into(), port)),
            Some(Host::Domain(d)) => {
                self.check_name(d)?;
                // `localhost` names are loopback by definition (RFC 6761): what is said of
                // loopback addresses (ezforge's own ports) can be said now.
                let name = lower_name(d);
                if name == "localhost" || name.ends_with(".localhost") {
                    for ip in [
                        IpAddr::V4(Ipv4Addr::LOCALHOST),
                        IpAddr::V6(Ipv6Addr::LOCALHOST),
                    ] {
                        self.check_addr(Some(d), SocketAddr::new(ip, port))?;
                    }
                }
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// A name before it is resolved: the deny list's patterns, metadata names, and (when the
    /// allow list has no addresses that could still admit it) the allow list's patterns.
    pub fn check_name(&self, name: &str) -> Result<(), Refusal> {
        let name = lower_name(name);
        if let Some(rule) = self.deny.iter().find(|r| r.matches_name(&name)) {
            return Err(Refusal::Denied {
                what: name,
                rule: rule.to_string(),
            });
        }
        let allowed = self.allow.iter().any(|r| r.matches_name(&name));
        if !allowed && METADATA_NAMES.contains(&name.as_str()) {
            return Err(Refusal::Metadata(name));
        }
        let may_pass_by_address = self.allow.iter().any(|r| matches!(r, Rule::Cidr { .. }));
        if !self.allow.is_empty() && !allowed && !may_pass_by_address {
            return Err(Refusal::NotAllowed(name));
        }
        Ok(())
    }

    /// An address about to be connected to; `name`: the host name it was resolved from.
    pub fn check_addr(&self, name: Option<&str>, addr: SocketAddr) -> Result<(), Refusal> {
        let ip = canonical(addr.ip());
        let inner = match ip {
            IpAddr::V6(v6) => embedded_v4(v6).map(IpAddr::V4),
            IpAddr::V4(_) => None,
        };
        // Ours, in any spelling: never.
        for candidate in std::iter::once(ip).chain(inner) {
            let port = addr.port();
            let ours = self.own.iter().any(|o| o.port() == port);
            if (ours || self.supervised_port(port)) && is_local(candidate) {
                let refusal = if ours {
                    Refusal::OwnListener(SocketAddr::new(candidate, port))
                } else {
                    Refusal::Supervised(port)
                };
                return Err(refusal);
            }
        }
        let shown = || match name {
            Some(n) => format!("{n} ({ip})"),
            None => ip.to_string(),
        };
        // Refusals look inside: the IPv4 address an IPv6 one embeds is denied like itself.
        let denied = |r: &Rule| r.matches_ip(ip) || inner.is_some_and(|i| r.matches_ip(i));
        if let Some(rule) = self.deny.iter().find(|r| denied(r)) {
            return Err(Refusal::Denied {
                what: shown(),
                rule: rule.to_string(),
            });
        }
        // The allow list admits the address itself, never by an IPv4 address it looks like it
        // carries: any global IPv6 address can be spelt like ISATAP, and a 6to4 or Teredo one
        // is delivered to its IPv6 network, not to the IPv4 address in it.
        let refused = builtin(ip);
        let allowed = |r: &Rule| r.matches_ip(ip) && refused.as_ref().is_none_or(|w| r.lifts(w));
        if self.allow.iter().any(allowed) {
            return Ok(());
        }
        if let Some(refusal) = refused {
            return Err(refusal);
        }
        let by_name = name.is_some_and(|n| {
            let n = lower_name(n);
            self.allow.iter().any(|r| r.matches_name(&n))
        });
        if !self.allow.is_empty() && !by_name {
            return Err(Refusal::NotAllowed(shown()));
        }
        Ok(())
    }
}

/// A supervised process's port, refused as a destination while this lives.
pub struct PortGuard {
    destinations: Arc<Destinations>,
    port: u16,
}

impl Drop for PortGuard {
    fn drop(&mut self) {
        let mut ports = self.destinations.ports();
        if let Some(n) = ports.get_mut(&self.port) {
            *n -= 1;
            if *n == 0 {
                ports.remove(&self.port);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::GatewayConfig;

    fn policy(allow: &[&str], deny: &[&str]) -> Arc<Destinations> {
        let config = GatewayConfig {
            upstream_allow: allow.iter().map(|s| (*s).to_owned()).collect(),
            upstream_deny: deny.iter().map(|s| (*s).to_owned()).collect(),
            ..GatewayConfig::default()
        };
        let own = vec![
            "127.0.0.1:8080".parse().expect("addr"),
            "127.0.0.1:9090".parse().expect("addr"),
        ];
        Arc::new(Destinations::new(&config, own, Arc::new(SystemResolver)).expect("policy"))
    }

    fn url(p: &Arc<Destinations>, s: &str) -> Result<(), Refusal> {
        p.check_url(&Url::parse(s).expect("url"))
    }

    #[test]
    fn every_refused_form() {
        let p = policy(&[], &[]);
        for (u, rule) in [
            ("http://169.254.169.254/latest", "link-local"),
            ("http://169.254.0.1:8000/mcp", "link-local"),
            // Spellings the URL parser turns into 169.254.169.254.
            ("http://2852039166/", "link-local"),
            ("http://0xa9fea9fe/", "link-local"),
            ("http://0251.0376.0251.0376/", "link-local"),
            ("http://169.254.43518/", "link-local"),
            ("http://0xa9.0xfe.0xa9.0xfe/", "link-local"),
            ("http://169.254.169.254./", "link-local"),
            ("http://[fe80::1]/", "link-local"),
            ("http://[febf::1]/", "link-local"),
            ("http://[fd00:ec2::254]/", "metadata"),
            ("http://[fd00:ec2::23]/v1/credentials", "metadata"),
            ("http://[fd00:ec2:ffff::1]/", "metadata"),
            ("http://[fd20:ce::254]/computeMetadata/v1/", "metadata"),
            ("http://[fd00:42::42]/conf", "metadata"),
            ("http://100.100.100.200/", "metadata"),
            ("http://168.63.129.16/", "metadata"),
            ("http://192.0.0.192/opc/v1/", "metadata"),
            ("http://[::ffff:192.0.0.192]/", "metadata"),
            ("http://[64:ff9b::c000:c0]/", "embeds"),
            (
                "http://metadata.google.internal/computeMetadata/v1/",
                "metadata",
            ),
            ("http://METADATA.GOOGLE.INTERNAL./", "metadata"),
            ("http://metadata%2egoogle%2einternal/", "metadata"),
            ("http://metadata/", "metadata"),
            ("http://instance-data/", "metadata"),
            ("http://[::ffff:169.254.169.254]/", "link-local"),
            ("http://[::ffff:a9fe:a9fe]/", "link-local"),
            ("http://[::169.254.169.254]/", "embeds"),
            ("http://[64:ff9b::a9fe:a9fe]/", "embeds"),
            ("http://[64:ff9b:1::a9fe:a9fe]/", "embeds"),
            ("http://[2002:a9fe:a9fe::1]/", "embeds"),
            ("http://[2001:0:4136:e378:8000:63bf:5601:5601]/", "embeds"),
            ("http://[2001:db8::5efe:a9fe:a9fe]/", "embeds"),
            ("http://[64:ff9b::6464:64c8]/", "embeds"),
            ("http://0.0.0.0:3000/", "unspecified"),
            ("http://0/", "unspecified"),
            ("http://[::]:3000/", "unspecified"),
            ("http://224.0.0.1/", "multicast"),
            ("http://255.255.255.255/", "multicast"),
            ("http://[ff02::1]/", "multicast"),
            // ezforge's own listeners, in every local spelling.
            ("http://127.0.0.1:8080/mcp", "own listener"),
            ("http://127.0.0.2:8080/mcp", "own listener"),
            ("http://[::1]:8080/mcp", "own listener"),
            ("http://[::ffff:127.0.0.1]:8080/", "own listener"),
            ("http://2130706433:8080/", "own listener"),
            ("http://0x7f.1:9090/metrics", "own listener"),
            ("http://[::127.0.0.1]:9090/metrics", "own listener"),
            ("http://localhost:8080/mcp", "own listener"),
            ("http://LOCALHOST.:9090/", "own listener"),
            ("http://api.localhost:8080/", "own listener"),
        ] {
            let err = url(&p, u).expect_err(u).to_string();
            assert!(err.contains(rule), "{u}: {err}");
        }
    }

    #[test]
    fn private_loopback_and_public_upstreams_stay_allowed() {
        let p = policy(&[], &[]);
        for u in [
            "http://127.0.0.1:3001/mcp",
            "http://localhost:3001/mcp",
            "http://[::1]:3001/mcp",
            "http://10.1.2.3/mcp",
            "http://192.168.1.10:8000/mcp",
            "http://172.16.0.5/mcp",
            "http://100.64.0.1/mcp",
            "http://[fd12:3456::1]/mcp",
            "https://mcp.example.com/mcp",
            "https://93.184.216.34/mcp",
            "http://[2002:5db8:d822::1]/mcp",
            "http://[64:ff9b::5db8:d822]/mcp",
            "http://metadata.example.com/mcp",
        ] {
            assert_eq!(url(&p, u), Ok(()), "{u}");
        }
    }

    #[test]
    fn resolved_addresses_are_checked_with_their_name() {
        let p = policy(&[], &[]);
        let a = |s: &str| s.parse::<SocketAddr>().expect("addr");
        assert!(matches!(
            p.check_addr(Some("rebind.example"), a("169.254.169.254:80")),
            Err(Refusal::LinkLocal(_))
        ));
        assert!(matches!(
            p.check_addr(Some("me.example"), a("127.0.0.1:8080")),
            Err(Refusal::OwnListener(_))
        ));
        assert_eq!(p.check_addr(Some("ok.example"), a("10.0.0.1:443")), Ok(()));
    }

    #[test]
    fn supervised_ports_are_refused_on_local_addresses_only() {
        let p = policy(&[], &[]);
        assert_eq!(url(&p, "http://127.0.0.1:40001/mcp"), Ok(()));
        let first = p.reserve(40001);
        let second = p.reserve(40001);
        let err = url(&p, "http://127.0.0.1:40001/mcp").expect_err("supervised");
        assert_eq!(err, Refusal::Supervised(40001));
        assert!(url(&p, "http://[::ffff:7f00:1]:40001/mcp").is_err());
        assert_eq!(url(&p, "http://10.9.9.9:40001/mcp"), Ok(()));
        drop(first);
        assert!(url(&p, "http://127.0.0.1:40001/mcp").is_err(), "still held");
        drop(second);
        assert_eq!(url(&p, "http://127.0.0.1:40001/mcp"), Ok(()));
    }

    #[test]
    fn the_operator_allows_and_denies() {
        let p = policy(
            &["169.254.10.0/24", "*.corp.example"],
            &["10.0.0.0/8", "*.internal", "bad.example"],
        );
        // The allow list lifts the built-in refusal for exactly its range.
        assert_eq!(url(&p, "http://169.254.10.7/mcp"), Ok(()));
        assert!(url(&p, "http://169.254.169.254/").is_err());
        // A non-empty allow list refuses what it does not list.
        assert!(matches!(
            url(&p, "http://192.168.1.1/"),
            Err(Refusal::NotAllowed(_))
        ));
        assert_eq!(url(&p, "https://mcp.corp.example/mcp"), Ok(()));
        assert!(
            matches!(url(&p, "https://corp.example/mcp"), Ok(())),
            "decided at connect time"
        );
        let a = |s: &str| s.parse::<SocketAddr>().expect("addr");
        assert!(
            p.check_addr(Some("corp.example"), a("192.168.1.1:443"))
                .is_err()
        );
        assert_eq!(
            p.check_addr(Some("x.corp.example"), a("192.168.1.1:443")),
            Ok(())
        );
        // A host pattern does not lift an address's built-in refusal.
        assert!(
            p.check_addr(Some("x.corp.example"), a("169.254.169.254:80"))
                .is_err()
        );
        // Deny wins, by address (also embedded) and by name.
        let denied = url(&p, "http://10.1.2.3/").expect_err("denied").to_string();
        assert!(
            denied.contains("gateway.upstream_deny (10.0.0.0/8)"),
            "{denied}"
        );
        assert!(url(&p, "http://[::ffff:10.1.2.3]/").is_err());
        assert!(url(&p, "http://[64:ff9b::a01:203]/").is_err());
        assert!(url(&p, "http://a.b.internal/").is_err());
        assert!(url(&p, "http://BAD.example./").is_err());
        // Ours stay refused whatever the lists say.
        let p = policy(&["127.0.0.0/8"], &[]);
        assert!(matches!(
            url(&p, "http://127.0.0.1:8080/"),
            Err(Refusal::OwnListener(_))
        ));
        // Allow by name only: decided on the name.
        let p = policy(&["mcp.example.com"], &[]);
        assert!(matches!(
            url(&p, "http://other.example.com/"),
            Err(Refusal::NotAllowed(_))
        ));
        assert_eq!(url(&p, "http://MCP.example.com./mcp"), Ok(()));
    }

    #[test]
    fn the_allow_list_admits_addresses_as_they_are() {
        let a = |s: &str| s.parse::<SocketAddr>().expect("addr");
        let p = policy(&["10.0.0.0/8"], &[]);
        assert_eq!(url(&p, "http://10.0.0.1/mcp"), Ok(()));
        assert_eq!(url(&p, "http://[::ffff:10.0.0.1]/mcp"), Ok(()), "mapped");
        // Global IPv6 addresses that look like they carry 10.0.0.1: not listed.
        for u in [
            "http://[2600:1f18:abcd:1:0:5efe:a00:1]/mcp",
            "http://[2002:a00:1::1]/mcp",
            "http://[2001:0:1:2:3:4:f5ff:fffe]/mcp",
            "http://[64:ff9b::a00:1]/mcp",
        ] {
            assert!(matches!(url(&p, u), Err(Refusal::NotAllowed(_))), "{u}");
            let addr = a(&format!("{}:80", &u[7..=u.find(']').expect("]")]));
            assert!(
                matches!(
                    p.check_addr(Some("x.example"), addr),
                    Err(Refusal::NotAllowed(_))
                ),
                "{addr}"
            );
        }
        // The deny list still looks inside.
        let p = policy(&[], &["10.0.0.0/8"]);
        for u in [
            "http://[2600:1f18:abcd:1:0:5efe:a00:1]/mcp",
            "http://[2002:a00:1::1]/mcp",
        ] {
            assert!(matches!(url(&p, u), Err(Refusal::Denied { .. })), "{u}");
        }
    }

    #[test]
    fn only_a_range_wholly_refused_lifts_a_refusal() {
        // Broad ranges admit what they list, never a built-in refusal inside them.
        let p = policy(&["0.0.0.0/0", "::/0"], &[]);
        assert_eq!(url(&p, "http://93.184.216.34/"), Ok(()));
        for u in [
            "http://169.254.169.254/",
            "http://100.100.100.200/",
            "http://[fd00:ec2::254]/",
            "http://[::ffff:169.254.169.254]/",
            "http://[2002:a9fe:a9fe::1]/",
            "http://0.0.0.0/",
            "http://224.0.0.1/",
        ] {
            assert!(url(&p, u).is_err(), "{u}");
        }
        let p = policy(&["fd00::/8", "169.254.0.0/15", "100.100.100.200/31"], &[]);
        assert_eq!(url(&p, "http://[fd12::1]/mcp"), Ok(()));
        for u in [
            "http://[fd00:ec2::254]/",
            "http://[fd00:42::42]/",
            "http://169.254.169.254/",
            "http://100.100.100.200/",
        ] {
            assert!(url(&p, u).is_err(), "{u}");
        }
        // Ranges within the refused ones lift exactly them.
        let p = policy(
            &[
                "169.254.0.0/16",
                "fd00:ec2::/32",
                "100.100.100.200",
                "2002:a9fe:a00::/40",
            ],
            &[],
        );
        for u in [
            "http://169.254.169.254/",
            "http://[fd00:ec2::254]/",
            "http://100.100.100.200/",
            "http://[2002:a9fe:a07::1]/",
        ] {
            assert_eq!(url(&p, u), Ok(()), "{u}");
        }
        assert!(url(&p, "http://[fd00:42::42]/").is_err());
    }

    #[test]
    fn rules_parse_or_say_why() {
        assert!(Rule::parse("10.0.0.0/8").is_ok());
        assert!(Rule::parse("fd00::/8").is_ok());
        assert!(Rule::parse("192.0.2.7").is_ok());
        assert!(Rule::parse("*.example.com").is_ok());
        assert!(Rule::parse("mcp.example.com").is_ok());
        for bad in [
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/x",
            "*",
            "*.",
            "a b",
            "ex ample.com",
            "",
            "http://x/",
        ] {
            assert!(Rule::parse(bad).is_err(), "{bad}");
        }
        // Host bits are masked off.
        let r = Rule::parse("10.1.2.3/8").expect("cidr");
        assert!(r.matches_ip("10.200.0.1".parse().expect("ip")));
        assert!(!r.matches_ip("11.0.0.1".parse().expect("ip")));
        let all = Rule::parse("0.0.0.0/0").expect("cidr");
        assert!(all.matches_ip("8.8.8.8".parse().expect("ip")));
        assert!(!all.matches_ip("::2".parse().expect("ip")));
    }
}
