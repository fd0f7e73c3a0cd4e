//! The loopback ports of supervised HTTP processes.

use std::time::Duration;

/// Polls until something accepts TCP connections on 127.0.0.1:`port`.
pub(super) async fn wait_for_port(port: u16, timeout: Duration) -> Result<(), String> {
    let poll = async {
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    };
    tokio::time::timeout(timeout, poll).await.map_err(|_| {
        format!(
            "did not accept connections on port {port} within {}",
            humantime::format_duration(timeout)
        )
    })
}

/// A free loopback port for a process that names none, not `taken`: below the kernel's
/// ephemeral range, where no socket lands unasked (an outgoing connection's local port, a
/// `listen` without `bind`). Another program cannot come by it then without binding it, which
/// the sandbox allows a program only for its own port. Blocking (a few binds).
pub fn free_port(taken: impl Fn(u16) -> bool) -> std::io::Result<u16> {
    let (first, last) = quiet_range(
        &std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap_or_default(),
    );
    let span = u32::from(last - first) + 1;
    let start = u32::from_ne_bytes(crate::domain::random_bytes::<4>()) % span;
    for i in 0..span.min(4096) {
        let port = first + ((start + i) % span) as u16;
        if !taken(port) && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Err(std::io::Error::other(format!(
        "no free loopback port between {first} and {last}"
    )))
}

/// The ports below the ephemeral range (`ip_local_port_range`, 32768–60999 by default) and
/// above the privileged ones: up to 16,384 of them. Above the range when it starts too low.
fn quiet_range(ephemeral: &str) -> (u16, u16) {
    let mut bounds = ephemeral
        .split_whitespace()
        .filter_map(|n| n.parse::<u16>().ok());
    let (lo, hi) = match (bounds.next(), bounds.next()) {
        (Some(lo), Some(hi)) if lo <= hi => (lo, hi),
        _ => (32768, 60999),
    };
    if lo >= 1024 + 1024 {
        (lo.saturating_sub(16384).max(1024), lo - 1)
    } else if hi <= 65535 - 1024 {
        (hi + 1, 65535)
    } else {
        // The whole range is ephemeral: nothing quieter to choose from.
        (lo.max(1024), hi)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_chosen_outside_the_ephemeral_range() {
        assert_eq!(quiet_range("32768\t60999\n"), (16384, 32767));
        assert_eq!(quiet_range("10000 65000"), (1024, 9999));
        assert_eq!(quiet_range("1024 40000"), (40001, 65535));
        assert_eq!(quiet_range(""), (16384, 32767));
        assert_eq!(quiet_range("1024 65535"), (1024, 65535));
    }

    #[test]
    fn a_free_port_is_not_a_taken_one() {
        let (first, last) = quiet_range(
            &std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap_or_default(),
        );
        let port = free_port(|p| p % 2 == 0).expect("port");
        assert!((first..=last).contains(&port), "{port}");
        assert_eq!(port % 2, 1);
    }
}
