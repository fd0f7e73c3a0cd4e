//! Finding supervised processes that listen beyond loopback: reachable on their port without
//! going through the front door (Landlock limits the port a program may bind, not the
//! address).

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// A listening TCP socket of this machine's network namespace (ezforge's, which its
/// processes share).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listener {
    pub addr: SocketAddr,
    pub inode: u64,
}

/// Whose processes a server's are.
#[derive(Debug, Clone, Copy)]
pub enum Owner {
    /// A uid of the server's own: every process of it.
    Uid(u32),
    /// The process tree its supervised process leads: its descendants (which another
    /// server's program cannot join, as it could a process group).
    Group(u32),
}

/// Every listening TCP socket, from `/proc/net/tcp` and `/proc/net/tcp6`. Blocking.
pub fn listeners() -> Vec<Listener> {
    let mut out = Vec::new();
    for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
        if let Ok(text) = std::fs::read_to_string(file) {
            out.extend(parse_listeners(&text));
        }
    }
    out
}

/// Where a server listens that is not its own port on loopback: any listener of its processes
/// (found by their sockets), and anything beyond loopback on its port. Blocking: reads `/proc`.
pub fn exposed(all: &[Listener], owner: Owner, port: u16) -> Vec<SocketAddr> {
    let sockets = socket_inodes(&pids_of(owner));
    let mut found: Vec<SocketAddr> = all
        .iter()
        .filter(|l| {
            let ours = sockets.contains(&l.inode) || l.addr.port() == port;
            let fine = l.addr.port() == port && is_loopback(l.addr.ip());
            ours && !fine
        })
        .map(|l| l.addr)
        .collect();
    found.sort();
    found.dedup();
    found
}

/// Who holds a port, as far as `/proc` tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortHolder {
    /// Every listener there is one of the owner's sockets.
    Owner,
    /// A listener there is another program's.
    Other,
    /// Nothing listens there now.
    Nobody,
    /// The kernel's tables could not be read.
    Unknown,
}

/// Who listens on `port` where loopback reaches it (127.0.0.1, or every address): `owner`
/// or another program. Blocking: reads `/proc`.
pub fn port_holder(owner: Owner, port: u16) -> PortHolder {
    let mut tables = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .peekable();
    if tables.peek().is_none() {
        return PortHolder::Unknown;
    }
    let there: Vec<Listener> = tables
        .flat_map(|t| parse_listeners(&t).collect::<Vec<_>>())
        .filter(|l| l.addr.port() == port && reaches_127_0_0_1(l.addr.ip()))
        .collect();
    if there.is_empty() {
        return PortHolder::Nobody;
    }
    let ours = socket_inodes(&pids_of(owner));
    if there.iter().all(|l| ours.contains(&l.inode)) {
        PortHolder::Owner
    } else {
        PortHolder::Other
    }
}

/// A listener on this address gets connections to 127.0.0.1 (where requests are sent).
fn reaches_127_0_0_1(ip: IpAddr) -> bool {
    let local = Ipv4Addr::LOCALHOST;
    ip.is_unspecified() || ip == IpAddr::V4(local) || ip == IpAddr::V6(local.to_ipv6_mapped())
}

/// The processes of `owner`.
fn pids_of(owner: Owner) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let pids = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok());
    match owner {
        Owner::Uid(uid) => pids
            .filter(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/status"))
                    .ok()
                    .and_then(|s| {
                        s.lines()
                            .find_map(|l| l.strip_prefix("Uid:"))
                            .and_then(|l| l.split_whitespace().next()?.parse::<u32>().ok())
                    })
                    == Some(uid)
            })
            .collect(),
        Owner::Group(leader) => {
            let parents: Vec<(u32, u32)> = pids
                .filter_map(|pid| {
                    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
                    // pid (comm) state ppid …; comm may hold spaces and parentheses.
                    let rest = &stat[stat.rfind(')')? + 1..];
                    Some((pid, rest.split_whitespace().nth(1)?.parse().ok()?))
                })
                .collect();
            descendants(leader, &parents)
        }
    }
}

/// `leader` and every process below it, from (pid, parent) pairs.
fn descendants(leader: u32, parents: &[(u32, u32)]) -> Vec<u32> {
    let mut out = vec![leader];
    let mut i = 0;
    while let Some(&p) = out.get(i).filter(|_| out.len() <= parents.len() + 1) {
        out.extend(
            parents
                .iter()
                .filter(|(_, pp)| *pp == p)
                .map(|(pid, _)| *pid),
        );
        i += 1;
    }
    out
}

/// The inodes of the sockets these processes hold.
pub fn socket_inodes(pids: &[u32]) -> HashSet<u64> {
    let mut out = HashSet::new();
    for pid in pids {
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(target) = std::fs::read_link(fd.path())
                && let Some(inode) = target
                    .to_str()
                    .and_then(|t| t.strip_prefix("socket:[")?.strip_suffix(']'))
                    .and_then(|n| n.parse().ok())
            {
                out.insert(inode);
            }
        }
    }
    out
}

/// The listening sockets in a `/proc/net/tcp[6]` table.
fn parse_listeners(table: &str) -> impl Iterator<Item = Listener> + '_ {
    const LISTEN: &str = "0A";
    table.lines().skip(1).filter_map(|line| {
        // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.get(3) != Some(&LISTEN) {
            return None;
        }
        let (ip, port) = fields.get(1)?.split_once(':')?;
        let port = u16::from_str_radix(port, 16).ok()?;
        let inode = fields.get(9).and_then(|i| i.parse().ok()).unwrap_or(0);
        Some(Listener {
            addr: SocketAddr::new(parse_ip(ip)?, port),
            inode,
        })
    })
}

/// The kernel prints an address as 32-bit words in host order, each as hex.
fn parse_ip(hex: &str) -> Option<IpAddr> {
    let word = |s: &str| u32::from_str_radix(s, 16).ok().map(u32::to_ne_bytes);
    match hex.len() {
        8 => Some(IpAddr::V4(Ipv4Addr::from(word(hex)?))),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word(hex.get(i * 8..i * 8 + 8)?)?);
            }
            Some(IpAddr::V6(Ipv6Addr::from(bytes)))
        }
        _ => None,
    }
}

pub fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ports_holder_is_its_owner_another_program_or_nobody() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let me = Owner::Group(std::process::id());
        assert_eq!(port_holder(me, port), PortHolder::Owner);
        // A process tree this socket is not in (a child's: none of ours are below it).
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("sleep");
        assert_eq!(
            port_holder(Owner::Group(child.id()), port),
            PortHolder::Other
        );
        let _ = child.kill();
        let _ = child.wait();
        drop(listener);
        assert_eq!(port_holder(me, port), PortHolder::Nobody);
    }

    #[test]
    fn a_tree_is_its_leader_and_everything_below() {
        let parents = [
            (1, 0),
            (10, 1),
            (11, 10),
            (12, 11),
            (20, 1),
            (21, 20),
            (13, 10),
        ];
        let mut tree = descendants(10, &parents);
        tree.sort();
        assert_eq!(tree, [10, 11, 12, 13]);
        assert_eq!(descendants(99, &parents), [99]);
    }

    #[test]
    fn listeners_are_read_from_the_kernels_tables() {
        // 127.0.0.1:8080 and 0.0.0.0:9000 listening; one established connection.
        let v4 = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
           0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 11 1\n\
           1: 00000000:2328 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 22 1\n\
           2: 0100007F:1F90 0100007F:D2C4 01 00000000:00000000 00:00000000 00000000     0        0 33 1\n";
        let got: Vec<Listener> = parse_listeners(v4).collect();
        if cfg!(target_endian = "little") {
            assert_eq!(
                got.iter().map(|l| (l.addr, l.inode)).collect::<Vec<_>>(),
                [
                    ("127.0.0.1:8080".parse::<SocketAddr>().expect("addr"), 11),
                    ("0.0.0.0:9000".parse().expect("addr"), 22)
                ]
            );
        }
        let v6 = "  sl  local_address                         remote_address                        st tx rx tr tm retr uid timeout inode\n\
           0: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 0 0 0 0 0 0 0 44\n";
        let got: Vec<Listener> = parse_listeners(v6).collect();
        if cfg!(target_endian = "little") {
            assert_eq!(
                got[0].addr,
                "[::1]:8080".parse::<SocketAddr>().expect("addr")
            );
            assert!(is_loopback(got[0].addr.ip()));
        }
    }

    #[test]
    fn a_processs_listeners_beyond_its_own_port_on_loopback_are_found() {
        // This test process plays the server: its group, its port.
        let own = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = own.local_addr().expect("addr").port();
        let open = std::net::TcpListener::bind("0.0.0.0:0").expect("bind any");
        let other = std::net::TcpListener::bind("127.0.0.1:0").expect("bind another");
        let uid = std::fs::metadata("/proc/self").map(|m| {
            use std::os::unix::fs::MetadataExt;
            m.uid()
        });
        let found = exposed(&listeners(), Owner::Uid(uid.expect("uid")), port);
        for l in [&open, &other] {
            let addr = l.local_addr().expect("addr");
            assert!(
                found.iter().any(|f| f.port() == addr.port()),
                "{addr} not in {found:?}"
            );
        }
        assert!(
            !found.iter().any(|f| f.port() == port),
            "its own port: {found:?}"
        );
    }
}
