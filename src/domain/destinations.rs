//! The rules of where requests for upstream MCP servers may go, without the network: parsing
//! the operator's allow and deny lists, classifying an address, checking a URL's host, a name
//! or an address against them. The policy that applies them at connect time (name resolution,
//! ezforge's own listeners and supervised ports) is `shared::destinations`.
//!
//! Private and loopback addresses stay allowed: on-prem MCP servers live there. Refused,
//! whatever the operator's lists say:
//!
//! - ezforge's own listeners (its main port and the metrics port, on any local address) and
//!   the ports of the processes it supervises for servers (one project's URL must not reach
//!   another project's process): the caller says which those are ([`Ours`]).
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

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use url::{Host, Url};

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
pub fn canonical(ip: IpAddr) -> IpAddr {
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

fn lower_name(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// Asked of each address (in each of its spellings) with its port before the rules: is it
/// ezforge's own listener or a port it supervises? Answering needs the system, so the caller does.
pub type Ours<'a> = &'a dyn Fn(IpAddr, u16) -> Option<Refusal>;

/// The operator's allow and deny lists (`gateway.upstream_allow`, `gateway.upstream_deny`),
/// applied with the built-in refusals.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules {
    allow: Vec<Rule>,
    deny: Vec<Rule>,
}

impl Rules {
    pub fn new(allow: Vec<Rule>, deny: Vec<Rule>) -> Self {
        Self { allow, deny }
    }

    /// What can be said of a URL before connecting: its literal address, or its name.
    pub fn check_url(&self, url: &Url, ours: Ours<'_>) -> Result<(), Refusal> {
        let port = url.port_or_known_default().unwrap_or(0);
        match url.host() {
            Some(Host::Ipv4(ip)) => self.check_addr(None, SocketAddr::new(ip.into(), port), ours),
            Some(Host::Ipv6(ip)) => self.check_addr(None, SocketAddr::new(ip.into(), port), ours),
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
                        self.check_addr(Some(d), SocketAddr::new(ip, port), ours)?;
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
    pub fn check_addr(
        &self,
        name: Option<&str>,
        addr: SocketAddr,
        ours: Ours<'_>,
    ) -> Result<(), Refusal> {
        let ip = canonical(addr.ip());
        let inner = match ip {
            IpAddr::V6(v6) => embedded_v4(v6).map(IpAddr::V4),
            IpAddr::V4(_) => None,
        };
        // Ours, in any spelling: never.
        for candidate in std::iter::once(ip).chain(inner) {
            if let Some(refusal) = ours(candidate, addr.port()) {
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

#[cfg(test)]
mod tests {
    use super::*;

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
