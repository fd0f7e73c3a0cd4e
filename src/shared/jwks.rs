//! JWKS fetched over https — external issuers' for BYOA servers, clients' `jwks_uri` for
//! `private_key_jwt` — cached per Cache-Control (clamped to a floor and a ceiling), refetched
//! once on an unknown `kid` (at most every `REFETCH_MIN`), and served stale while the issuer is
//! unreachable: indefinitely for BYOA issuers, for at most `CLIENT_MAX_STALE` past their
//! freshness for clients (a client whose keys cannot be read for that long is refused: keys
//! it withdrew must stop working).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_lc_rs::signature;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, KeyOperations, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey};

use crate::outbound::Outbound;

const FLOOR: Duration = Duration::from_secs(60);
const CEILING: Duration = Duration::from_secs(24 * 3600);
const DEFAULT_TTL: Duration = Duration::from_secs(3600);
const REFETCH_MIN: Duration = Duration::from_secs(30);
/// How long past their freshness a client's keys are still used while its `jwks_uri` fails.
pub const CLIENT_MAX_STALE: Duration = Duration::from_secs(24 * 3600);

struct Key {
    decoding: DecodingKey,
    /// The `alg` the JWK pins, if any.
    alg: Option<Algorithm>,
    family: Family,
}

/// What a key can verify: RSA (RS*, PS*), ECDSA on one curve (ES256 on P-256, ES384 on P-384),
/// or Ed25519 (EdDSA).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Family {
    Rsa,
    P256,
    P384,
    Ed25519,
}

fn family_of(alg: Algorithm) -> Option<Family> {
    use Algorithm::*;
    match alg {
        RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => Some(Family::Rsa),
        ES256 => Some(Family::P256),
        ES384 => Some(Family::P384),
        EdDSA => Some(Family::Ed25519),
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

/// The verification keys of a JWKS document, by `kid` and without one. A key that cannot verify
/// a signature we accept is skipped (RFC 7517 §5: keys that are not understood are ignored):
/// an encryption key, one whose `alg` or `key_ops` rules out verifying, a symmetric key, a
/// curve other than P-256, P-384 or Ed25519 (X25519 is for key agreement), a point not on its
/// curve, an RSA modulus outside 2048–8192 bits (what the verifier takes) or a bad exponent.
#[allow(clippy::type_complexity)]
fn parse_set(
    json: serde_json::Value,
) -> Result<(HashMap<String, Arc<Key>>, Vec<Arc<Key>>), String> {
    let entries = match json {
        serde_json::Value::Object(mut o) => match o.remove("keys") {
            Some(serde_json::Value::Array(keys)) => keys,
            _ => return Err("not a JWKS: it has no \"keys\" array".into()),
        },
        _ => return Err("not a JWKS: not a JSON object".into()),
    };
    let mut keys = HashMap::new();
    let mut anonymous = Vec::new();
    for entry in entries {
        let Ok(jwk) = serde_json::from_value::<Jwk>(entry) else {
            continue;
        };
        let Some(key) = usable(&jwk) else {
            continue;
        };
        match &jwk.common.key_id {
            Some(kid) => {
                keys.insert(kid.clone(), Arc::new(key));
            }
            None => anonymous.push(Arc::new(key)),
        }
    }
    Ok((keys, anonymous))
}

/// How many keys of a JWKS can verify a signature made with one of `algs`, as verification
/// reads the set (`parse_set`).
pub fn usable_keys(set: &serde_json::Value, algs: &[Algorithm]) -> Result<usize, String> {
    let (keys, anonymous) = parse_set(set.clone())?;
    Ok(keys
        .values()
        .chain(anonymous.iter())
        .filter(|k| algs.iter().any(|a| check(k, *a).is_ok()))
        .count())
}

/// `jwk` as a verification key, if it can be one.
fn usable(jwk: &Jwk) -> Option<Key> {
    let common = &jwk.common;
    if matches!(common.public_key_use, Some(PublicKeyUse::Encryption))
        || common
            .key_operations
            .as_ref()
            .is_some_and(|ops| !ops.contains(&KeyOperations::Verify))
    {
        return None;
    }
    // An `alg` pins the key to one algorithm: one we verify, or the key is not for us.
    let alg = match common.key_algorithm {
        Some(a) => Some(key_algorithm(a)?),
        None => None,
    };
    let b64 = |s: &str| URL_SAFE_NO_PAD.decode(s).ok();
    let family = match &jwk.algorithm {
        AlgorithmParameters::RSA(p) => {
            let n = b64(&p.n)?;
            let e = b64(&p.e)?;
            let n = &n[n.iter().position(|b| *b != 0)?..];
            let bits = n.len() * 8 - n[0].leading_zeros() as usize;
            let e = &e[e.iter().position(|b| *b != 0)?..];
            let odd = e.last().is_some_and(|b| b & 1 == 1);
            if !(2048..=8192).contains(&bits) || e.len() > 4 || !odd || e == [1] {
                return None;
            }
            Family::Rsa
        }
        AlgorithmParameters::EllipticCurve(p) => {
            let (family, verifier, len) = match p.curve {
                EllipticCurve::P256 => (Family::P256, &signature::ECDSA_P256_SHA256_FIXED, 32),
                EllipticCurve::P384 => (Family::P384, &signature::ECDSA_P384_SHA384_FIXED, 48),
                _ => return None,
            };
            let (x, y) = (b64(&p.x)?, b64(&p.y)?);
            if x.len() != len || y.len() != len {
                return None;
            }
            let point = [&[4u8][..], &x, &y].concat();
            signature::ParsedPublicKey::new(verifier, point).ok()?;
            family
        }
        AlgorithmParameters::OctetKeyPair(p) => {
            if p.curve != EllipticCurve::Ed25519 {
                return None;
            }
            signature::ParsedPublicKey::new(&signature::ED25519, b64(&p.x)?).ok()?;
            Family::Ed25519
        }
        AlgorithmParameters::OctetKey(_) => return None,
    };
    if alg.is_some_and(|a| family_of(a) != Some(family)) {
        return None;
    }
    let decoding = DecodingKey::from_jwk(jwk).ok()?;
    Some(Key {
        decoding,
        alg,
        family,
    })
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
    use serde_json::{Value, json};

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn ec_jwk(alg: &'static rcgen::SignatureAlgorithm, crv: &str) -> Value {
        let pair = rcgen::KeyPair::generate_for(alg).expect("key");
        let raw = pair.public_key_raw();
        let half = (raw.len() - 1) / 2;
        json!({"kty": "EC", "crv": crv, "x": b64(&raw[1..=half]), "y": b64(&raw[half + 1..]), "kid": crv})
    }

    fn ed_jwk() -> Value {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("key");
        json!({"kty": "OKP", "crv": "Ed25519", "x": b64(pair.public_key_raw()), "kid": "ed"})
    }

    fn rsa_jwk() -> Value {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).expect("key");
        let encoding =
            jsonwebtoken::EncodingKey::from_rsa_pem(pair.serialize_pem().as_bytes()).expect("pem");
        let jwk =
            jsonwebtoken::jwk::Jwk::from_encoding_key(&encoding, Algorithm::RS256).expect("jwk");
        let mut v = serde_json::to_value(jwk).expect("json");
        v["kid"] = json!("rsa");
        v
    }

    const CLIENT_ALGS: [Algorithm; 4] = [
        Algorithm::RS256,
        Algorithm::PS256,
        Algorithm::ES256,
        Algorithm::EdDSA,
    ];

    fn count(keys: Vec<Value>, algs: &[Algorithm]) -> usize {
        usable_keys(&json!({ "keys": keys }), algs).expect("a set")
    }

    #[test]
    fn keys_that_can_never_verify_are_skipped() {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let ec = ec_jwk(&rcgen::PKCS_ECDSA_P256_SHA256, "P-256");
        let p384 = ec_jwk(&rcgen::PKCS_ECDSA_P384_SHA384, "P-384");
        for good in [ec.clone(), ed_jwk(), rsa_jwk()] {
            assert_eq!(count(vec![good.clone()], &CLIENT_ALGS), 1, "{good}");
        }
        // Junk beside a good key is ignored, not fatal (RFC 7517 §5).
        assert_eq!(
            count(vec![json!(1), json!("x"), ec.clone()], &CLIENT_ALGS),
            1
        );
        // A P-384 key verifies ES384 (a BYOA issuer's), never a client's ES256 assertion.
        assert_eq!(count(vec![p384.clone()], &[Algorithm::ES384]), 1);
        assert_eq!(count(vec![p384], &CLIENT_ALGS), 0);
        let with = |base: &Value, k: &str, v: Value| {
            let mut j = base.clone();
            j[k] = v;
            j
        };
        let mut off_curve = ec.clone();
        off_curve["y"] = json!(b64(&[7u8; 32]));
        let short_rsa = json!({"kty": "RSA", "n": b64(&[0xff; 128]), "e": "AQAB", "kid": "r"});
        for junk in [
            json!(1),
            json!("x"),
            json!({"kty": "EC", "crv": "P-384", "x": "AAAA", "y": "AAAA", "kid": "k"}),
            json!({"kty": "EC", "crv": "P-256", "x": "", "y": "", "kid": "k"}),
            json!({"kty": "EC", "crv": "P-521", "x": "AAAA", "y": "AAAA", "kid": "k"}),
            off_curve,
            json!({"kty": "RSA", "n": "", "e": "", "kid": "r"}),
            json!({"kty": "RSA", "n": "AQAB", "e": "AQAB", "kid": "r"}),
            short_rsa,
            with(&rsa_jwk(), "e", json!("AQ")),
            with(&rsa_jwk(), "e", json!("AAI")),
            json!({"kty": "OKP", "crv": "X25519", "x": b64(&[9u8; 32]), "kid": "o"}),
            json!({"kty": "OKP", "crv": "Ed25519", "x": "", "kid": "o"}),
            json!({"kty": "oct", "k": "c2VjcmV0", "kid": "s"}),
            with(&ec, "use", json!("enc")),
            with(&ec, "alg", json!("RS256")),
            with(&ec, "alg", json!("ECDH-ES")),
            with(&ec, "key_ops", json!(["encrypt"])),
        ] {
            assert_eq!(count(vec![junk.clone()], &CLIENT_ALGS), 0, "{junk}");
        }
        assert_eq!(
            count(vec![with(&ec, "key_ops", json!(["verify"]))], &CLIENT_ALGS),
            1
        );
        assert!(usable_keys(&json!([ec]), &CLIENT_ALGS).is_err());
        assert!(usable_keys(&json!({"keys": 1}), &CLIENT_ALGS).is_err());
    }

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
