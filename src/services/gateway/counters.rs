//! Per-server counters the front door keeps in memory: a few relaxed atomic adds per request.
//! Prometheus reads them; every few seconds their growth is added to the monthly usage table.
//!
//! A 401 or 403 is a *challenge*, not an error: the OAuth flow starts with one (no token yet),
//! and step-up with another (more scope). Errors are 5xx answers and the other 4xx ones.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Upper bounds (seconds) of the request-duration histogram.
pub const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Default)]
pub struct ServerCounters {
    /// By status class: 1xx..5xx at index 0..4.
    pub by_class: [AtomicU64; 5],
    /// Challenges: 401 at index 0, 403 at index 1 (also counted in class 4xx).
    pub challenges: [AtomicU64; 2],
    /// 4xx answers other than challenges.
    pub client_errors: AtomicU64,
    /// Cumulative counts per bucket are computed at render; these are per bucket, plus +Inf.
    pub buckets: [AtomicU64; BUCKETS.len() + 1],
    pub latency_micros: AtomicU64,
    /// Request and response bytes through the front door.
    pub bytes: AtomicU64,
    pub auth_failures: Mutex<HashMap<&'static str, u64>>,
    /// What the usage table already holds of `requests()` and `bytes`.
    flushed_requests: AtomicU64,
    flushed_bytes: AtomicU64,
}

impl ServerCounters {
    pub fn record(
        &self,
        status: u16,
        latency: std::time::Duration,
        auth_failure: Option<&'static str>,
    ) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.by_class[class].fetch_add(1, Relaxed);
        let tally = match status {
            401 => Some(&self.challenges[0]),
            403 => Some(&self.challenges[1]),
            400..=499 => Some(&self.client_errors),
            _ => None,
        };
        if let Some(t) = tally {
            t.fetch_add(1, Relaxed);
        }
        let secs = latency.as_secs_f64();
        let bucket = BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BUCKETS.len());
        self.buckets[bucket].fetch_add(1, Relaxed);
        self.latency_micros
            .fetch_add(latency.as_micros() as u64, Relaxed);
        if let Some(reason) = auth_failure
            && let Ok(mut m) = self.auth_failures.lock()
        {
            *m.entry(reason).or_default() += 1;
        }
    }

    pub fn add_bytes(&self, n: usize) {
        self.bytes.fetch_add(n as u64, Relaxed);
    }

    pub fn requests(&self) -> u64 {
        self.by_class.iter().map(|c| c.load(Relaxed)).sum()
    }

    /// Requests and bytes since the last call (for the usage table).
    pub fn take_delta(&self) -> (u64, u64) {
        let requests = self.requests();
        let bytes = self.bytes.load(Relaxed);
        let r = requests - self.flushed_requests.swap(requests, Relaxed);
        let b = bytes - self.flushed_bytes.swap(bytes, Relaxed);
        (r, b)
    }

    /// Puts back a delta that could not be written.
    pub fn restore_delta(&self, requests: u64, bytes: u64) {
        self.flushed_requests.fetch_sub(requests, Relaxed);
        self.flushed_bytes.fetch_sub(bytes, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn challenges_are_counted_apart_from_errors() {
        let c = ServerCounters::default();
        for status in [200, 202, 401, 401, 403, 400, 404, 429, 500, 502] {
            c.record(status, Duration::from_millis(1), None);
        }
        assert_eq!(c.requests(), 10);
        assert_eq!(c.by_class[3].load(Relaxed), 6, "class 4xx keeps every 4xx");
        assert_eq!(c.challenges[0].load(Relaxed), 2);
        assert_eq!(c.challenges[1].load(Relaxed), 1);
        assert_eq!(c.client_errors.load(Relaxed), 3);
        assert_eq!(c.by_class[4].load(Relaxed), 2);
    }
}
