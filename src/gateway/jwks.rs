//! External issuers' JWKS for BYOA servers: fetched over https, cached per Cache-Control
//! (clamped to a floor and a ceiling), refetched once on an unknown `kid` (at most every
//! `REFETCH_MIN`), and served stale while the issuer is unreachable.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

use crate::outbound::Outbound;

const FLOOR: Duration = Duration::from_secs(60);
const CEILING: Duration = Duration::from_secs(24 * 3600);
const DEFAULT_TTL: Duration = Duration::from_secs(3600);
const REFETCH_MIN: Duration = Duration::from_secs(30);

struct Key {
    decoding: DecodingKey,
    /// The `alg` the JWK pins, if any.
    alg: Option<Algorithm>,
    family: Family,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Family {
    Rsa,
    Ec,
    Okp,
}

fn family_of(alg: Algorithm) -> Option<Family> {
    use Algorithm::*;
    match alg {
        RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => Some(Family::Rsa),
        ES256 | ES384 => Some(Family::Ec),
        EdDSA => Some(Family::Okp),
        // Symmetric algorithms are never accepted from an external issuer.
        HS256 | HS384 | HS512 => None,
    }
}

/// Is `alg` an asymmetric algorithm we accept?
pub fn is_allowed(alg: Algorithm) -> bool {
    family_of(alg).is_some()
}

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
    pub fn new(outbound: Outbound) -> Self {
        Self {
            outbound,
            entries: Mutex::new(HashMap::new()),
            capacity: CAPACITY,
        }
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
                Some(k) if fresh || recently(c.last_attempt) => return check(&k, alg),
                Some(k) => (false, Some(k)),
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
                return lookup(&c, kid)
                    .ok_or_else(|| unknown(kid))
                    .and_then(|k| check(&k, alg));
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
                tracing::warn!(jwks_uri = uri, error = %e, "JWKS fetch failed; serving cached keys");
                if c.keys.is_empty() && c.anonymous.is_empty() {
                    return Err(JwksError::Unavailable(e));
                }
            }
        }
        lookup(&c, kid)
            .ok_or_else(|| unknown(kid))
            .and_then(|k| check(&k, alg))
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

/// The verification keys of a JWKS document, by `kid` and without one.
#[allow(clippy::type_complexity)]
fn parse_set(
    json: serde_json::Value,
) -> Result<(HashMap<String, Arc<Key>>, Vec<Arc<Key>>), String> {
    let set: JwkSet = serde_json::from_value(json).map_err(|e| format!("not a JWKS: {e}"))?;
    let mut keys = HashMap::new();
    let mut anonymous = Vec::new();
    for jwk in &set.keys {
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            continue;
        }
        let family = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => Family::Rsa,
            AlgorithmParameters::EllipticCurve(_) => Family::Ec,
            AlgorithmParameters::OctetKeyPair(_) => Family::Okp,
            AlgorithmParameters::OctetKey(_) => continue,
        };
        let Ok(decoding) = DecodingKey::from_jwk(jwk) else {
            continue;
        };
        let alg = jwk.common.key_algorithm.and_then(key_algorithm);
        let key = Arc::new(Key {
            decoding,
            alg,
            family,
        });
        match &jwk.common.key_id {
            Some(kid) => {
                keys.insert(kid.clone(), key);
            }
            None => anonymous.push(key),
        }
    }
    Ok((keys, anonymous))
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

fn check(key: &Key, alg: Algorithm) -> Result<DecodingKey, JwksError> {
    if key.alg.is_some_and(|a| a != alg) || family_of(alg) != Some(key.family) {
        return Err(JwksError::AlgorithmMismatch(alg));
    }
    Ok(key.decoding.clone())
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

fn key_algorithm(a: KeyAlgorithm) -> Option<Algorithm> {
    use KeyAlgorithm as K;
    Some(match a {
        K::RS256 => Algorithm::RS256,
        K::RS384 => Algorithm::RS384,
        K::RS512 => Algorithm::RS512,
        K::PS256 => Algorithm::PS256,
        K::PS384 => Algorithm::PS384,
        K::PS512 => Algorithm::PS512,
        K::ES256 => Algorithm::ES256,
        K::ES384 => Algorithm::ES384,
        K::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
