//! Finding supervised processes that listen beyond loopback: reachable on their port without
//! going through the front door (Landlock limits the port a program may bind, not the
//! address).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Listening TCP sockets not on a loopback address, by port: from `/proc/net/tcp` and
/// `/proc/net/tcp6` (ezforge's network namespace, which its processes share). Blocking.
pub fn exposed_listeners() -> HashMap<u16, Vec<SocketAddr>> {
    let mut out: HashMap<u16, Vec<SocketAddr>> = HashMap::new();
    for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
        if let Ok(text) = std::fs::read_to_string(file) {
            for addr in listeners(&text) {
                if !is_loopback(addr.ip()) {
                    out.entry(addr.port()).or_default().push(addr);
                }
            }
        }
    }
    out
}

/// The local addresses of the listening sockets in a `/proc/net/tcp[6]` table.
fn listeners(table: &str) -> impl Iterator<Item = SocketAddr> + '_ {
    const LISTEN: &str = "0A";
    table.lines().skip(1).filter_map(|line| {
        let mut fields = line.split_whitespace();
        let local = fields.nth(1)?;
        let state = fields.nth(1)?;
        if state != LISTEN {
            return None;
        }
        let (ip, port) = local.split_once(':')?;
        let port = u16::from_str_radix(port, 16).ok()?;
        Some(SocketAddr::new(parse_ip(ip)?, port))
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

fn is_loopback(ip: IpAddr) -> bool {
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
    fn listeners_are_read_from_the_kernels_tables() {
        // 127.0.0.1:8080 and 0.0.0.0:9000 listening; one established connection.
        let v4 = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
           0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1\n\
           1: 00000000:2328 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1\n\
           2: 0100007F:1F90 0100007F:D2C4 01 00000000:00000000 00:00000000 00000000     0        0 3 1\n";
        let got: Vec<SocketAddr> = listeners(v4).collect();
        if cfg!(target_endian = "little") {
            assert_eq!(
                got,
                [
                    "127.0.0.1:8080".parse::<SocketAddr>().expect("addr"),
                    "0.0.0.0:9000".parse().expect("addr")
                ]
            );
        }
        // ::1 and :: listening.
        let v6 = "  sl  local_address                         remote_address                        st\n\
           0: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A\n\
           1: 00000000000000000000000000000000:2328 00000000000000000000000000000000:0000 0A\n";
        let got: Vec<SocketAddr> = listeners(v6).collect();
        if cfg!(target_endian = "little") {
            assert_eq!(
                got,
                [
                    "[::1]:8080".parse::<SocketAddr>().expect("addr"),
                    "[::]:9000".parse().expect("addr")
                ]
            );
            assert!(is_loopback(got[0].ip()) && !is_loopback(got[1].ip()));
        }
    }

    #[test]
    fn a_real_listener_beyond_loopback_is_found_and_a_loopback_one_is_not() {
        let open = std::net::TcpListener::bind("0.0.0.0:0").expect("bind any");
        let lo = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let found = exposed_listeners();
        let port = open.local_addr().expect("addr").port();
        assert!(found.contains_key(&port), "{port} not in {found:?}");
        assert!(!found.contains_key(&lo.local_addr().expect("addr").port()));
    }
}
