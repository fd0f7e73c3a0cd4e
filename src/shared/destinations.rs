//! Where requests for upstream MCP servers may go, applied: checked when an upstream URL is set
//! (create, update, deploy, rollback, the config file's `[[servers]]`) and again on every new
//! connection against the address the name actually resolved to (DNS rebinding), by the front
//! door and by health checks alike. The rules themselves (the operator's lists, the built-in
//! refusals) are `domain::destinations`; this adds what needs the system: name resolution,
//! and ezforge's own listeners and the ports of the processes it supervises for servers (one
//! project's URL must not reach another project's process), refused on any local address
//! whatever the operator's lists say.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use url::Url;

use crate::domain::destinations::canonical;
use crate::domain::destinations::{Refusal, Rules};

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
/// Is `ip` an address of this machine (where ezforge's listeners answer)?
fn is_local(ip: IpAddr) -> bool {
    let ip = canonical(ip);
    // Binding succeeds only for this machine's own addresses; a syscall, done only when the
    // port is one of ours.
    ip.is_loopback()
        || ip.is_unspecified()
        || std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}
/// The destination policy, built once at start.
pub struct Destinations {
    rules: Rules,
    /// ezforge's own listeners, as bound.
    own: Vec<SocketAddr>,
    /// The ports of the HTTP processes ezforge supervises now, each with its holders.
    /// Supervised processes' ports: how many targets hold each, and the server they are for.
    supervised: Mutex<HashMap<u16, (usize, String)>>,
    resolver: Arc<dyn Resolve>,
}

impl Destinations {
    /// `own`: the listeners of this ezforge (main and metrics).
    pub fn new(rules: Rules, own: Vec<SocketAddr>, resolver: Arc<dyn Resolve>) -> Self {
        Self {
            rules,
            own,
            supervised: Mutex::default(),
            resolver,
        }
    }

    pub fn resolver(&self) -> &dyn Resolve {
        self.resolver.as_ref()
    }

    fn ports(&self) -> std::sync::MutexGuard<'_, HashMap<u16, (usize, String)>> {
        self.supervised.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Marks `port` as a supervised process's of `server`, from before it starts until the
    /// guard is dropped with its deployment's target. `Err`: the server whose it already is
    /// (a stopped one keeps its port; another must not take it).
    pub fn reserve(self: &Arc<Self>, port: u16, server: &str) -> Result<PortGuard, String> {
        let mut ports = self.ports();
        let entry = ports.entry(port).or_insert_with(|| (0, server.to_owned()));
        if entry.1 != server {
            return Err(entry.1.clone());
        }
        entry.0 += 1;
        drop(ports);
        Ok(PortGuard {
            destinations: self.clone(),
            port,
        })
    }

    /// Reserves `port` for `server` unless it is already a supervised process's, its own
    /// included (a free port chosen for a new one: checked and taken under one lock).
    pub fn reserve_new(self: &Arc<Self>, port: u16, server: &str) -> Option<PortGuard> {
        let mut ports = self.ports();
        if ports.contains_key(&port) {
            return None;
        }
        ports.insert(port, (1, server.to_owned()));
        drop(ports);
        Some(PortGuard {
            destinations: self.clone(),
            port,
        })
    }

    /// Is `port` a supervised process's (reserved, even while it is stopped)?
    pub fn supervised_port(&self, port: u16) -> bool {
        self.ports().contains_key(&port)
    }

    /// Is `ip`:`port` (one spelling of an address) ezforge's own listener or a supervised
    /// process's port on this machine?
    fn ours(&self, ip: IpAddr, port: u16) -> Option<Refusal> {
        let own = self.own.iter().any(|o| o.port() == port);
        if !(own || self.supervised_port(port)) || !is_local(ip) {
            return None;
        }
        Some(if own {
            Refusal::OwnListener(SocketAddr::new(ip, port))
        } else {
            Refusal::Supervised(port)
        })
    }

    /// What can be said of a URL before connecting: its literal address, or its name.
    pub fn check_url(&self, url: &Url) -> Result<(), Refusal> {
        self.rules.check_url(url, &|ip, port| self.ours(ip, port))
    }

    /// A name before it is resolved (see [`Rules::check_name`]).
    pub fn check_name(&self, name: &str) -> Result<(), Refusal> {
        self.rules.check_name(name)
    }

    /// An address about to be connected to; `name`: the host name it was resolved from.
    pub fn check_addr(&self, name: Option<&str>, addr: SocketAddr) -> Result<(), Refusal> {
        self.rules
            .check_addr(name, addr, &|ip, port| self.ours(ip, port))
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
        if let Some((n, _)) = ports.get_mut(&self.port) {
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
    use crate::domain::destinations::parse_rules;
    use url::Url;

    fn policy(allow: &[&str], deny: &[&str]) -> Arc<Destinations> {
        let list = |l: &[&str]| l.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let rules = Rules::new(
            parse_rules(&list(allow)).expect("allow"),
            parse_rules(&list(deny)).expect("deny"),
        );
        let own = vec![
            "127.0.0.1:8080".parse().expect("addr"),
            "127.0.0.1:9090".parse().expect("addr"),
        ];
        Arc::new(Destinations::new(rules, own, Arc::new(SystemResolver)))
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
        let first = p.reserve(40001, "srv_a").expect("free");
        assert_eq!(p.reserve(40001, "srv_b").err().as_deref(), Some("srv_a"));
        let second = p.reserve(40001, "srv_a").expect("the same server's");
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
}
