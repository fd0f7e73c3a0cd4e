//! Per-caller rate limits (token buckets keyed by credential or address) and the failed-login
//! throttle: shared by the control API, the authorization server and the front door.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use dashmap::DashSet;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use crate::config::RateLimit;

type Keyed =
    RateLimiter<String, DefaultKeyedStateStore<String>, DefaultClock, StateInformationMiddleware>;

/// A per-caller limit: `per_minute` sustained, `burst` at once.
pub struct Limiter {
    inner: Keyed,
    clock: DefaultClock,
    per_minute: u32,
    burst: u32,
    /// Credentials (hash prefixes) known to have verified: only these get a bucket of their
    /// own. Anything else counts against its address, so that made-up tokens cannot each open
    /// a fresh bucket.
    verified: DashSet<String>,
}

/// Verified credentials remembered at most (the set starts over beyond).
const VERIFIED_MAX: usize = 100_000;

pub enum Decision {
    Allowed { remaining: u32, reset_in: Duration },
    Limited { retry_after: Duration },
}

impl Limiter {
    pub fn new(limit: RateLimit) -> Self {
        let per_minute = NonZeroU32::new(limit.per_minute).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(limit.burst).unwrap_or(NonZeroU32::MIN);
        let clock = DefaultClock::default();
        let inner = RateLimiter::dashmap_with_clock(
            Quota::per_minute(per_minute).allow_burst(burst),
            clock.clone(),
        )
        .with_middleware::<StateInformationMiddleware>();
        Self {
            inner,
            clock,
            per_minute: per_minute.get(),
            burst: burst.get(),
            verified: DashSet::new(),
        }
    }

    /// Notes that the credential whose hash is `token_hash` verified: from now on it is limited
    /// on its own bucket rather than its caller's address.
    pub fn verified(&self, token_hash: &str) {
        let key = bucket_of(token_hash);
        if self.verified.contains(key) {
            return;
        }
        if self.verified.len() >= VERIFIED_MAX {
            self.verified.clear();
        }
        self.verified.insert(key.to_owned());
    }

    pub fn check(&self, key: String) -> Decision {
        match self.inner.check_key(&key) {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                let per_cell = 60.0 / f64::from(self.per_minute);
                let reset_in = Duration::from_secs_f64(
                    per_cell * f64::from(self.burst.saturating_sub(remaining)),
                );
                Decision::Allowed {
                    remaining,
                    reset_in,
                }
            }
            Err(not_until) => Decision::Limited {
                retry_after: not_until.wait_time_from(self.clock.now()),
            },
        }
    }

    pub fn per_minute(&self) -> u32 {
        self.per_minute
    }

    /// Forgets callers whose buckets are full again, so the map does not grow forever.
    pub fn prune(&self) {
        self.inner.retain_recent();
        self.inner.shrink_to_fit();
    }
}

fn bucket_of(token_hash: &str) -> &str {
    token_hash.get(..32).unwrap_or(token_hash)
}

/// The bucket of a credential that has verified before.
pub fn credential_bucket(limiter: &Limiter, token: &str) -> Option<String> {
    let hash = crate::crypto::token_hash(token);
    let bucket = bucket_of(&hash);
    limiter
        .verified
        .contains(bucket)
        .then(|| format!("t:{bucket}"))
}

/// A remote address's bucket: IPv4 by address, IPv6 by its /64 (one host commonly holds a
/// whole /64, so per-address buckets there would be endless).
pub fn address_bucket(peer: Option<SocketAddr>) -> String {
    match peer.map(|a| a.ip()) {
        Some(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => format!("a:{v4}"),
            None => {
                let s = v6.segments();
                format!("a:{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
        Some(IpAddr::V4(v4)) => format!("a:{v4}"),
        None => "a:".to_owned(),
    }
}

/// Seconds to wait before trying again, rounded up (at least 1).
pub fn retry_secs(wait: Duration) -> u64 {
    u64::try_from(wait.as_millis().div_ceil(1000))
        .unwrap_or(u64::MAX)
        .max(1)
}

/// Failed-login counting per account and per address: past `max` failures in `window`, further
/// attempts are refused until the window ends, whether or not the password is right.
pub struct LoginThrottle {
    max: u32,
    window: Duration,
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

impl LoginThrottle {
    pub fn new(max: u32, window: Duration) -> Self {
        Self {
            max: max.max(1),
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(seconds)` when any of `keys` is locked out.
    pub fn check(&self, keys: &[&str]) -> Result<(), u64> {
        let Ok(map) = self.failures.lock() else {
            return Ok(());
        };
        let now = Instant::now();
        let mut wait = 0u64;
        for key in keys {
            if let Some((count, since)) = map.get(*key)
                && *count >= self.max
                && now.duration_since(*since) < self.window
            {
                wait = wait.max((self.window - now.duration_since(*since)).as_secs().max(1));
            }
        }
        if wait > 0 { Err(wait) } else { Ok(()) }
    }

    pub fn failed(&self, keys: &[&str]) {
        let Ok(mut map) = self.failures.lock() else {
            return;
        };
        let now = Instant::now();
        if map.len() > 100_000 {
            let window = self.window;
            map.retain(|_, (_, since)| now.duration_since(*since) < window);
        }
        for key in keys {
            let entry = map.entry((*key).to_owned()).or_insert((0, now));
            if now.duration_since(entry.1) >= self.window {
                *entry = (0, now);
            }
            entry.0 += 1;
        }
    }

    pub fn succeeded(&self, account_key: &str) {
        if let Ok(mut map) = self.failures.lock() {
            map.remove(account_key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_extreme_limits_the_config_allows_work_without_overflow() {
        let max = RateLimit::MAX;
        for (per_minute, burst) in [(max, max), (1, max), (max, 1), (1, 1)] {
            let l = Limiter::new(RateLimit { per_minute, burst });
            assert!(
                matches!(l.check("k".into()), Decision::Allowed { .. }),
                "{per_minute}/{burst}"
            );
        }
    }

    #[test]
    fn throttle_locks_after_max_failures_per_key() {
        let t = LoginThrottle::new(3, Duration::from_secs(900));
        for _ in 0..3 {
            assert!(t.check(&["acct:a", "addr:1"]).is_ok());
            t.failed(&["acct:a", "addr:1"]);
        }
        assert!(t.check(&["acct:a"]).is_err());
        assert!(t.check(&["addr:1"]).is_err());
        assert!(t.check(&["acct:b", "addr:2"]).is_ok());
        t.succeeded("acct:a");
        assert!(t.check(&["acct:a"]).is_ok());
    }

    #[test]
    fn addresses_share_buckets_by_ipv4_address_or_ipv6_slash_64() {
        let at = |s: &str| Some(SocketAddr::new(s.parse().expect("ip"), 443));
        assert_eq!(address_bucket(at("192.0.2.7")), "a:192.0.2.7");
        assert_eq!(address_bucket(at("::ffff:192.0.2.7")), "a:192.0.2.7");
        assert_eq!(
            address_bucket(at("2001:db8:1:2:aaaa::1")),
            address_bucket(at("2001:db8:1:2:bbbb::2"))
        );
        assert_ne!(
            address_bucket(at("2001:db8:1:2::1")),
            address_bucket(at("2001:db8:1:3::1"))
        );
        assert_eq!(address_bucket(None), "a:");
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_secs(Duration::from_millis(9_700)), 10);
        assert_eq!(retry_secs(Duration::from_secs(9)), 9);
        assert_eq!(retry_secs(Duration::ZERO), 1);
    }

    #[test]
    fn limiter_reports_remaining_and_limits() {
        let l = Limiter::new(RateLimit {
            per_minute: 60,
            burst: 2,
        });
        assert!(matches!(
            l.check("k".into()),
            Decision::Allowed { remaining: 1, .. }
        ));
        assert!(matches!(
            l.check("k".into()),
            Decision::Allowed { remaining: 0, .. }
        ));
        assert!(matches!(l.check("k".into()), Decision::Limited { .. }));
        assert!(matches!(l.check("other".into()), Decision::Allowed { .. }));
    }
}
