//! JWKS fetched over https — external issuers' for BYOA servers, clients' `jwks_uri` for
//! `private_key_jwt` — cached per Cache-Control (clamped to a floor and a ceiling), refetched
//! once on an unknown `kid` (at most every `REFETCH_MIN`), and served stale while the issuer is
//! unreachable: indefinitely for BYOA issuers, for at most `CLIENT_MAX_STALE` past their
//! freshness for clients (a client whose keys cannot be read for that long is refused: keys
//! it withdrew must stop working).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, DecodingKey};

use crate::outbound::Outbound;

mod keys;

use self::keys::{Key, check, parse_set};
pub use self::keys::{is_allowed, usable_keys};

const FLOOR: Duration = Duration::from_secs(60);
const CEILING: Duration = Duration::from_secs(24 * 3600);
const DEFAULT_TTL: Duration = Duration::from_secs(3600);
const REFETCH_MIN: Duration = Duration::from_secs(30);
/// How long past their freshness a client's keys are still used while its `jwks_uri` fails.
pub const CLIENT_MAX_STALE: Duration = Duration::from_secs(24 * 3600);

#[derive(Default)]
struct Cached {
    keys: HashMap<String, Arc<Key>>,
    /// Keys without a `kid`, for tokens without one.
    anonymous: Vec<Arc<Key>>,
    fresh_until: Option<Instant>,
    last_attempt: Option<Instant>,
    last_kid_refetch: Option<Instant>,
}

struct Entry {
    cached: Mutex<Cached>,
    /// One fetch at a time per URI.
    fetching: tokio::sync::Mutex<()>,
}

pub struct JwksCache {
    outbound: Outbound,
    entries: Mutex<HashMap<String, Arc<Entry>>>,
    /// Most URIs kept at once: anyone may register a client naming any `jwks_uri`.
    capacity: usize,
    /// How long past their freshness keys are served while a refetch fails (`None`: as long as
    /// it fails).
    max_stale: Option<Duration>,
}

/// URIs a cache keeps by default (BYOA issuers are few; clients' `jwks_uri`s are not).
const CAPACITY: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("no key {0:?} in the issuer's JWKS")]
    UnknownKey(String),
    #[error("the key does not allow algorithm {0:?}")]
    AlgorithmMismatch(Algorithm),
    #[error("the issuer's JWKS is unavailable: {0}")]
    Unavailable(String),
}

impl JwksCache {
    /// For BYOA issuers: their last keys are served for as long as they are unreachable (an
    /// outage of the identity provider must not sign everyone out).
    pub fn new(outbound: Outbound) -> Self {
        Self {
            outbound,
            entries: Mutex::new(HashMap::new()),
            capacity: CAPACITY,
            max_stale: None,
        }
    }

    /// For clients' `jwks_uri`: stale keys for at most [`CLIENT_MAX_STALE`].
    pub fn for_clients(outbound: Outbound) -> Self {
        Self {
            max_stale: Some(CLIENT_MAX_STALE),
            ..Self::new(outbound)
        }
    }

    /// Are the cached keys past what may be served (they could not be refreshed for too long)?
    fn too_stale(&self, c: &Cached, now: Instant) -> bool {
        match (self.max_stale, c.fresh_until) {
            (Some(max), Some(fresh_until)) => fresh_until
                .checked_add(max)
                .is_some_and(|limit| now >= limit),
            _ => false,
        }
    }

    /// The cached key for `kid` and `alg`, unless the keys are too stale to serve.
    fn serve(
        &self,
        c: &Cached,
        kid: Option<&str>,
        alg: Algorithm,
        now: Instant,
    ) -> Result<DecodingKey, JwksError> {
        if self.too_stale(c, now) {
            return Err(JwksError::Unavailable(
                "its JWKS could not be fetched for too long".into(),
            ));
        }
        lookup(c, kid)
            .ok_or_else(|| unknown(kid))
            .and_then(|k| check(&k, alg))
    }

    fn entry(&self, uri: &str) -> Arc<Entry> {
        let mut map = match self.entries.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        if map.len() >= self.capacity && !map.contains_key(uri) {
            // Full: drop half (any half; a dropped issuer's keys are fetched again when used,
            // and a fetch under way finishes on its own entry).
            let mut keep = false;
            map.retain(|_, _| {
                keep = !keep;
                keep
            });
        }
        map.entry(uri.to_owned())
            .or_insert_with(|| {
                Arc::new(Entry {
                    cached: Mutex::new(Cached::default()),
                    fetching: tokio::sync::Mutex::new(()),
                })
            })
            .clone()
    }

    /// The key for `kid` that may verify `alg`. Fetches when the cache is empty or stale (a
    /// failing issuer is retried at most every `REFETCH_MIN`, its old keys served meanwhile),
    /// and refetches once for an unknown `kid` (again at most every `REFETCH_MIN`).
    pub async fn key(
        &self,
        uri: &str,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<DecodingKey, JwksError> {
        let entry = self.entry(uri);
        let now = Instant::now();
        let (unknown_kid, stale_key) = {
            let c = lock(&entry.cached);
            let fresh = c.fresh_until.is_some_and(|t| now < t);
            let recently =
                |t: Option<Instant>| t.is_some_and(|t| now.duration_since(t) < REFETCH_MIN);
            match lookup(&c, kid) {
                Some(k) if fresh => return check(&k, alg),
                // Failing lately: what is cached, while it may still be served.
                Some(_) if recently(c.last_attempt) => return self.serve(&c, kid, alg, now),
                Some(k) => (false, (!self.too_stale(&c, now)).then_some(k)),
                // No keys were ever fetched: the issuer is unreachable, not the key unknown.
                None if recently(c.last_kid_refetch) && c.fresh_until.is_none() => {
                    return Err(JwksError::Unavailable(
                        "its JWKS could not be fetched".into(),
                    ));
                }
                None if recently(c.last_kid_refetch) => return Err(unknown(kid)),
                // A refetch for an unknown kid, unless this is the very first fetch.
                None => (c.last_attempt.is_some(), None),
            }
        };
        let _single_flight = match (entry.fetching.try_lock(), stale_key) {
            (Ok(g), _) => g,
            // Another request is refreshing: answer from the stale key rather than wait.
            (Err(_), Some(k)) => return check(&k, alg),
            (Err(_), None) => entry.fetching.lock().await,
        };
        {
            // Someone else fetched while we waited: use their result.
            let c = lock(&entry.cached);
            if c.last_attempt.is_some_and(|t| t >= now) {
                return self.serve(&c, kid, alg, Instant::now());
            }
        }
        let result = self.fetch(uri).await;
        let mut c = lock(&entry.cached);
        let done = Instant::now();
        c.last_attempt = Some(done);
        if unknown_kid {
            c.last_kid_refetch = Some(done);
        }
        match result {
            Ok((keys, anonymous, ttl)) => {
                c.keys = keys;
                c.anonymous = anonymous;
                c.fresh_until = Some(done + ttl);
            }
            Err(e) => {
                if (c.keys.is_empty() && c.anonymous.is_empty()) || self.too_stale(&c, done) {
                    tracing::warn!(jwks_uri = uri, error = %e, "JWKS fetch failed");
                    return Err(JwksError::Unavailable(e));
                }
                tracing::warn!(jwks_uri = uri, error = %e, "JWKS fetch failed; serving cached keys");
            }
        }
        self.serve(&c, kid, alg, done)
    }

    async fn fetch(
        &self,
        uri: &str,
    ) -> Result<(HashMap<String, Arc<Key>>, Vec<Arc<Key>>, Duration), String> {
        let (json, max_age) = self
            .outbound
            .get_json(uri)
            .await
            .map_err(|e| e.to_string())?;
        let (keys, anonymous) = parse_set(json)?;
        let ttl = max_age.unwrap_or(DEFAULT_TTL).clamp(FLOOR, CEILING);
        Ok((keys, anonymous, ttl))
    }
}

/// The key for `kid` that may verify `alg` in a JWKS given inline (a client's `jwks`).
pub fn key_in_set(
    set: &serde_json::Value,
    kid: Option<&str>,
    alg: Algorithm,
) -> Result<DecodingKey, JwksError> {
    let (keys, anonymous) = parse_set(set.clone()).map_err(JwksError::Unavailable)?;
    let cached = Cached {
        keys,
        anonymous,
        ..Cached::default()
    };
    lookup(&cached, kid)
        .ok_or_else(|| unknown(kid))
        .and_then(|k| check(&k, alg))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

fn unknown(kid: Option<&str>) -> JwksError {
    JwksError::UnknownKey(kid.unwrap_or("").chars().take(64).collect())
}

fn lookup(c: &Cached, kid: Option<&str>) -> Option<Arc<Key>> {
    match kid {
        Some(k) => c.keys.get(k).cloned(),
        None if c.anonymous.len() + c.keys.len() == 1 => c
            .anonymous
            .first()
            .or_else(|| c.keys.values().next())
            .cloned(),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::keys::tests::ec_jwk;
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn a_clients_keys_are_not_served_long_past_their_freshness() {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let outbound =
            Outbound::new(&crate::config::OutboundConfig::default()).expect("outbound client");
        // The SSRF guard refuses loopback: every fetch of this URI fails.
        let uri = "https://127.0.0.1:1/jwks.json";
        let jwk = ec_jwk(&rcgen::PKCS_ECDSA_P256_SHA256, "P-256");
        let set = json!({ "keys": [jwk] });
        let now = Instant::now();
        let (Some(lately), Some(long_ago)) = (
            now.checked_sub(Duration::from_secs(30)),
            now.checked_sub(Duration::from_secs(120)),
        ) else {
            eprintln!("cannot run: the monotonic clock started less than two minutes ago");
            return;
        };
        let clients = JwksCache {
            max_stale: Some(Duration::from_secs(60)),
            ..JwksCache::for_clients(outbound.clone())
        };
        let byoa = JwksCache::new(outbound);
        let prime = |cache: &JwksCache, fresh_until: Instant| {
            let (keys, anonymous) = parse_set(set.clone()).expect("set");
            let entry = cache.entry(uri);
            let mut c = lock(&entry.cached);
            *c = Cached {
                keys,
                anonymous,
                fresh_until: Some(fresh_until),
                ..Cached::default()
            };
        };
        async fn key(cache: &JwksCache) -> Result<DecodingKey, JwksError> {
            let uri = "https://127.0.0.1:1/jwks.json";
            cache.key(uri, Some("P-256"), Algorithm::ES256).await
        }
        // Stale within the limit: the refetch fails, the old keys serve, then (failing lately)
        // serve without a fetch.
        prime(&clients, lately);
        assert!(key(&clients).await.is_ok());
        assert!(key(&clients).await.is_ok());
        // Past it: refused, whether a refetch is due or was just tried.
        prime(&clients, long_ago);
        assert!(matches!(
            key(&clients).await,
            Err(JwksError::Unavailable(_))
        ));
        assert!(matches!(
            key(&clients).await,
            Err(JwksError::Unavailable(_))
        ));
        // A BYOA issuer's keys serve for as long as it is unreachable.
        prime(&byoa, long_ago);
        assert!(key(&byoa).await.is_ok());
        assert!(key(&byoa).await.is_ok());
    }

    #[test]
    fn the_cache_keeps_a_bounded_number_of_uris() {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let outbound =
            Outbound::new(&crate::config::OutboundConfig::default()).expect("outbound client");
        let cache = JwksCache {
            capacity: 8,
            ..JwksCache::new(outbound)
        };
        let len = |c: &JwksCache| lock(&c.entries).len();
        for i in 0..1000 {
            cache.entry(&format!("https://c{i}.example/jwks.json"));
            assert!(len(&cache) <= 8, "{}", len(&cache));
        }
        // A URI already held is not a new one.
        let held = lock(&cache.entries).keys().next().cloned().expect("one");
        let before = len(&cache);
        cache.entry(&held);
        assert_eq!(len(&cache), before);
    }
}
