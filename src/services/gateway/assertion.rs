//! `X-Ezforge-Assertion`: the signed identity every proxied request carries, so that an
//! upstream can check who the front door let through, for which server (`aud`), instead of
//! trusting plain headers that anything on its network could send. The pattern of Pomerium's
//! `X-Pomerium-Jwt-Assertion` and Cloudflare Access' `Cf-Access-Jwt-Assertion`.
//!
//! - A JWT, ES256, header `typ: ezforge-assertion+jwt`; claims `iss` (the public URL), `aud`
//!   (the server's resource URI), `sub`, `client_id`, `scope`, `server_id`, `project_id`,
//!   `iat`, `exp` (`iat` + 60 s).
//! - Its keys are not the access-token keys (an assertion must never pass for an access token,
//!   nor the reverse, at any verifier): one P-256 key is derived from the master key for each
//!   published access-token key, so they rotate together (`auth.signing.rotate_after`, `ezforge
//!   keys rotate`) and a retired one stays published as long. Nothing is stored.
//! - Published at [`JWKS_PATH`] in both auth modes.
//! - Signing costs the front door nothing per request: one assertion is reused per (server,
//!   subject, client, scope) for its first [`REUSE_SECS`], so an upstream always gets one with
//!   at least 45 s left. The cache is bounded (entries; and an identity too long to keep is
//!   signed each time) and swept.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use dashmap::DashMap;
use serde::Serialize;
use serde_json::json;

use super::registry::ServerEntry;
use super::verify::Verified;
use crate::crypto::MasterKey;
use crate::services::keys::{KeySet, Keyring};

pub static HEADER: http::HeaderName = http::HeaderName::from_static("x-ezforge-assertion");
/// Where the assertion keys are published, under the public URL.
pub const JWKS_PATH: &str = "/.well-known/ezforge-assertion-jwks.json";
/// The JWT header's `typ`: no other token of ours has it.
pub const TYP: &str = "ezforge-assertion+jwt";
pub const LIFETIME_SECS: i64 = 60;
/// An assertion is handed out again for this long after it was signed.
pub const REUSE_SECS: i64 = 15;
const CACHE_CAPACITY: usize = 16_384;
/// Assertions whose subject, client and scope together are longer are signed each time, never
/// kept: with BYOA the token's issuer chooses them (up to the token's size), and the cache is
/// bounded by entries. Each entry then holds at most a few KiB (the claims, and the token that
/// carries them), 16,384 of them some tens of MiB.
const MAX_CACHED_IDENTITY: usize = 1024;
const SWEEP_EVERY_SECS: i64 = 30;

#[derive(Debug, thiserror::Error)]
pub enum AssertionError {
    #[error("cannot derive an assertion key: {0}")]
    Key(String),
    #[error("cannot sign an assertion: {0}")]
    Sign(String),
}

/// The assertion keys derived from one set of access-token keys.
struct Derived {
    source: Arc<KeySet>,
    /// The active one, parsed once (a JWT library would parse it again for every signature).
    pair: EcdsaKeyPair,
    /// The JWT header naming it, encoded once.
    header: String,
    jwks: Bytes,
}

struct Entry {
    server_id: Box<str>,
    subject: Box<str>,
    client_id: Option<Box<str>>,
    scope: Box<str>,
    value: http::HeaderValue,
    reuse_until: i64,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_id: Option<&'a str>,
    scope: &'a str,
    server_id: &'a str,
    project_id: &'a str,
    iat: i64,
    exp: i64,
}

pub struct Assertions {
    seed: aws_lc_rs::hmac::Key,
    issuer: String,
    keys: RwLock<Arc<Derived>>,
    cache: DashMap<u64, Entry>,
    hasher: std::hash::RandomState,
    next_sweep: AtomicI64,
}

impl Assertions {
    pub fn new(
        master: &MasterKey,
        issuer: &str,
        keys: Arc<KeySet>,
    ) -> Result<Self, AssertionError> {
        let seed = master.mac_key("upstream assertion signing keys");
        let derived = derive(&seed, keys)?;
        Ok(Self {
            seed,
            issuer: issuer.to_owned(),
            keys: RwLock::new(Arc::new(derived)),
            cache: DashMap::new(),
            hasher: std::hash::RandomState::new(),
            next_sweep: AtomicI64::new(0),
        })
    }

    /// The keys for the access-token keys in force, derived again when those changed.
    fn current(&self, keyring: &Keyring) -> Result<Arc<Derived>, AssertionError> {
        let set = keyring.current();
        let held = match self.keys.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        };
        if Arc::ptr_eq(&held.source, &set) {
            return Ok(held);
        }
        let fresh = Arc::new(derive(&self.seed, set)?);
        match self.keys.write() {
            Ok(mut g) => *g = fresh.clone(),
            Err(p) => *p.into_inner() = fresh.clone(),
        }
        Ok(fresh)
    }

    /// The published assertion keys (a JWKS document).
    pub fn jwks(&self, keyring: &Keyring) -> Result<Bytes, AssertionError> {
        Ok(self.current(keyring)?.jwks.clone())
    }

    /// The assertion for a request `who` makes at `server`: a recent one when there is one.
    pub fn header(
        &self,
        keyring: &Keyring,
        server: &ServerEntry,
        who: &Verified,
    ) -> Result<http::HeaderValue, AssertionError> {
        let now = crate::domain::now();
        let client = who.client_id.as_deref();
        let scope = who.scope_header.as_str();
        let identity = who.subject.len() + client.map_or(0, str::len) + scope.len();
        let cacheable = identity <= MAX_CACHED_IDENTITY;
        let key = self
            .hasher
            .hash_one((server.id.as_str(), who.subject.as_str(), client, scope));
        if cacheable
            && let Some(e) = self.cache.get(&key)
            && e.reuse_until > now
            && *e.server_id == *server.id
            && *e.subject == *who.subject
            && e.client_id.as_deref() == client
            && *e.scope == *scope
        {
            return Ok(e.value.clone());
        }
        let keys = self.current(keyring)?;
        let claims = serde_json::to_vec(&Claims {
            iss: &self.issuer,
            aud: &server.resource,
            sub: &who.subject,
            client_id: client,
            scope,
            server_id: &server.id,
            project_id: &server.project_id,
            iat: now,
            exp: now + LIFETIME_SECS,
        })
        .map_err(|e| AssertionError::Sign(e.to_string()))?;
        let mut token = String::with_capacity(keys.header.len() + claims.len() * 4 / 3 + 96);
        token.push_str(&keys.header);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&claims, &mut token);
        // ES256 in JOSE's form: r || s, 64 bytes.
        let signature = keys
            .pair
            .sign(&SystemRandom::new(), token.as_bytes())
            .map_err(|_| AssertionError::Sign("the signature failed".into()))?;
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(signature.as_ref(), &mut token);
        let value = http::HeaderValue::from_str(&token)
            .map_err(|e| AssertionError::Key(format!("not a header value: {e}")))?;
        if !cacheable {
            return Ok(value);
        }
        self.remember(
            key,
            Entry {
                server_id: server.id.as_str().into(),
                subject: who.subject.as_str().into(),
                client_id: client.map(Into::into),
                scope: scope.into(),
                value: value.clone(),
                reuse_until: now + REUSE_SECS,
            },
            now,
        );
        Ok(value)
    }

    fn remember(&self, key: u64, entry: Entry, now: i64) {
        let due = self.next_sweep.load(Ordering::Relaxed) <= now;
        if due || self.cache.len() >= CACHE_CAPACITY {
            self.next_sweep
                .store(now + SWEEP_EVERY_SECS, Ordering::Relaxed);
            self.cache.retain(|_, e| e.reuse_until > now);
            if self.cache.len() >= CACHE_CAPACITY {
                self.cache.clear();
            }
        }
        self.cache.insert(key, entry);
    }

    /// How many assertions are kept for reuse.
    pub fn cached(&self) -> usize {
        self.cache.len()
    }
}

/// One assertion key per published access-token key; the active one's signs.
fn derive(seed: &aws_lc_rs::hmac::Key, source: Arc<KeySet>) -> Result<Derived, AssertionError> {
    let mut jwks = Vec::with_capacity(source.summaries.len());
    let mut active = None;
    for summary in &source.summaries {
        let (pair, jwk, kid) = derive_one(seed, &summary.kid)?;
        if summary.kid == source.active.kid {
            active = Some((kid, pair));
        }
        jwks.push(jwk);
    }
    let (kid, pair) = match active {
        Some(a) => a,
        None => {
            let (pair, jwk, kid) = derive_one(seed, &source.active.kid)?;
            jwks.insert(0, jwk);
            (kid, pair)
        }
    };
    let header = json!({ "alg": "ES256", "typ": TYP, "kid": kid });
    Ok(Derived {
        source,
        pair,
        header: URL_SAFE_NO_PAD.encode(header.to_string()),
        jwks: Bytes::from(json!({ "keys": jwks }).to_string()),
    })
}

/// The P-256 key derived for access-token key `kid`: the pair, its public JWK and key id.
fn derive_one(
    seed: &aws_lc_rs::hmac::Key,
    kid: &str,
) -> Result<(EcdsaKeyPair, serde_json::Value, String), AssertionError> {
    // A scalar outside [1, n-1] (odds about 2^-32) is refused by the library: try the next.
    for counter in 0u8..8 {
        let tag = aws_lc_rs::hmac::sign(seed, format!("{kid}\0{counter}").as_bytes());
        // RFC 5915 ECPrivateKey { version 1, privateKey, parameters prime256v1 }.
        let mut der = Vec::with_capacity(51);
        der.extend_from_slice(&[0x30, 0x31, 0x02, 0x01, 0x01, 0x04, 0x20]);
        der.extend_from_slice(tag.as_ref());
        der.extend_from_slice(&[
            0xa0, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07,
        ]);
        let Ok(pair) = EcdsaKeyPair::from_private_key_der(&ECDSA_P256_SHA256_FIXED_SIGNING, &der)
        else {
            continue;
        };
        let public = pair.public_key().as_ref();
        if public.len() != 65 || public[0] != 4 {
            return Err(AssertionError::Key("unexpected public key encoding".into()));
        }
        let x = URL_SAFE_NO_PAD.encode(&public[1..33]);
        let y = URL_SAFE_NO_PAD.encode(&public[33..65]);
        // RFC 7638 thumbprint, like the access-token keys' ids.
        let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        let id = URL_SAFE_NO_PAD.encode(crate::crypto::sha256(canonical.as_bytes()));
        let jwk = json!({ "kty": "EC", "crv": "P-256", "x": x, "y": y, "kid": id, "use": "sig", "alg": "ES256" });
        return Ok((pair, jwk, id));
    }
    Err(AssertionError::Key(format!("no usable key for {kid}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{Algorithm, DecodingKey, Validation};

    fn keyset(master: &MasterKey, now: i64) -> (tempfile::TempDir, crate::store::Store, KeySet) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = crate::store::Store::open(&dir.path().join("t.db")).expect("open");
        let set = store
            .run_blocking(|c| {
                crate::services::keys::ensure_active(c, master, now)?;
                crate::services::keys::load(c, master, now)
            })
            .expect("keys");
        (dir, store, set)
    }

    fn verify(jwks: &[u8], token: &str) -> serde_json::Value {
        let header = jsonwebtoken::decode_header(token).expect("header");
        assert_eq!(header.typ.as_deref(), Some(TYP));
        let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_slice(jwks).expect("jwks");
        let jwk = jwks
            .find(header.kid.as_deref().expect("kid"))
            .expect("published");
        let key = DecodingKey::from_jwk(jwk).expect("key");
        let mut v = Validation::new(Algorithm::ES256);
        v.set_audience(&["https://ez.example/mcp/weather"]);
        v.set_issuer(&["https://ez.example"]);
        jsonwebtoken::decode::<serde_json::Value>(token, &key, &v)
            .expect("verifies")
            .claims
    }

    fn entry() -> ServerEntry {
        ServerEntry::for_test("https://ez.example", "weather", &[])
    }

    fn who(subject: &str, scope: &str) -> Verified {
        Verified {
            subject: subject.into(),
            client_id: Some("client_a".into()),
            scopes: scope.split(' ').map(str::to_owned).collect(),
            audiences: vec![],
            issuer: "https://ez.example".into(),
            jwks_uri: None,
            expires_at: 0,
            not_before: None,
            grant_id: None,
            scope_header: scope.into(),
            owner: format!("{subject}|client_a"),
        }
    }

    #[test]
    fn assertions_are_signed_reused_and_keyed_apart_from_access_tokens() {
        let master = MasterKey::from_bytes(&[7; 32]);
        let now = crate::domain::now();
        let (_dir, store, set) = keyset(&master, now);
        let access_jwks = set.jwks.clone();
        let keyring = Keyring::new(set);
        let a = Assertions::new(&master, "https://ez.example", keyring.current()).expect("new");
        let server = entry();
        let alice = who("usr_alice", "mcp:read mcp:execute");
        let token = a.header(&keyring, &server, &alice).expect("sign");
        let token = token.to_str().expect("ascii").to_owned();
        let jwks = a.jwks(&keyring).expect("jwks");
        let claims = verify(&jwks, &token);
        assert_eq!(claims["sub"], "usr_alice");
        assert_eq!(claims["client_id"], "client_a");
        assert_eq!(claims["scope"], "mcp:read mcp:execute");
        assert_eq!(claims["server_id"], "srv_1");
        assert_eq!(claims["project_id"], "proj_1");
        let (iat, exp) = (
            claims["iat"].as_i64().unwrap_or(0),
            claims["exp"].as_i64().unwrap_or(0),
        );
        assert_eq!(exp - iat, LIFETIME_SECS);
        assert!((iat - now).abs() <= 2);

        // Not verifiable with the access-token keys, nor its key among them.
        let access: jsonwebtoken::jwk::JwkSet = serde_json::from_slice(&access_jwks).expect("jwks");
        let kid = jsonwebtoken::decode_header(&token)
            .expect("h")
            .kid
            .expect("kid");
        assert!(access.find(&kid).is_none());

        // Reused while fresh; another subject or scope gets its own.
        let again = a.header(&keyring, &server, &alice).expect("sign");
        assert_eq!(again.to_str().ok(), Some(token.as_str()));
        let bob = a
            .header(&keyring, &server, &who("usr_bob", "mcp:read mcp:execute"))
            .expect("sign");
        assert_ne!(bob.to_str().ok(), Some(token.as_str()));
        let narrower = a
            .header(&keyring, &server, &who("usr_alice", "mcp:read"))
            .expect("sign");
        assert_eq!(
            verify(&jwks, narrower.to_str().expect("ascii"))["scope"],
            "mcp:read"
        );
        assert_eq!(a.cached(), 3);

        // The same master key derives the same keys (another process, a restart).
        let b = Assertions::new(&master, "https://ez.example", keyring.current()).expect("new");
        assert_eq!(b.jwks(&keyring).expect("jwks"), jwks);

        // Rotation: a new assertion key signs; the old one stays published with its access key.
        store
            .run_blocking(|c| crate::services::keys::rotate(c, &master, now, 900))
            .expect("rotate");
        keyring.replace(
            store
                .run_blocking(|c| crate::services::keys::load(c, &master, now))
                .expect("load"),
        );
        let rotated_jwks = a.jwks(&keyring).expect("jwks");
        let parsed: jsonwebtoken::jwk::JwkSet =
            serde_json::from_slice(&rotated_jwks).expect("jwks");
        assert_eq!(parsed.keys.len(), 2);
        assert!(
            parsed.find(&kid).is_some(),
            "the old assertion key stays published"
        );
        verify(&rotated_jwks, &token);
        let carol = a
            .header(&keyring, &server, &who("usr_carol", "mcp:read"))
            .expect("sign");
        let carol_kid = jsonwebtoken::decode_header(carol.to_str().expect("ascii"))
            .expect("h")
            .kid
            .expect("kid");
        assert_ne!(carol_kid, kid);
    }

    #[test]
    fn the_cache_is_bounded() {
        let master = MasterKey::from_bytes(&[8; 32]);
        let (_dir, _store, set) = keyset(&master, crate::domain::now());
        let keyring = Keyring::new(set);
        let a = Assertions::new(&master, "https://ez.example", keyring.current()).expect("new");
        let server = entry();
        for i in 0..(CACHE_CAPACITY + 10) {
            a.header(&keyring, &server, &who(&format!("usr_{i}"), "mcp:read"))
                .expect("sign");
        }
        assert!(a.cached() <= CACHE_CAPACITY, "{}", a.cached());
    }

    #[test]
    fn a_long_identity_is_signed_each_time_and_never_kept() {
        let master = MasterKey::from_bytes(&[9; 32]);
        let (_dir, _store, set) = keyset(&master, crate::domain::now());
        let keyring = Keyring::new(set);
        let a = Assertions::new(&master, "https://ez.example", keyring.current()).expect("new");
        let server = entry();
        let jwks = a.jwks(&keyring).expect("jwks");
        // A BYOA issuer's subject or scope may be as long as its token.
        for who in [
            who(&"s".repeat(16 * 1024), "mcp:read"),
            who("usr_alice", &"x".repeat(MAX_CACHED_IDENTITY)),
        ] {
            let first = a.header(&keyring, &server, &who).expect("sign");
            let second = a.header(&keyring, &server, &who).expect("sign");
            // ECDSA signatures differ each time: these were signed twice.
            assert_ne!(first, second);
            let claims = verify(&jwks, second.to_str().expect("ascii"));
            assert_eq!(claims["sub"], who.subject.as_str());
            assert_eq!(claims["scope"], who.scope_header.as_str());
        }
        assert_eq!(a.cached(), 0);
        // Just under the bound: kept.
        let who = who("usr_alice", &"x".repeat(MAX_CACHED_IDENTITY - 30));
        let first = a.header(&keyring, &server, &who).expect("sign");
        assert_eq!(a.header(&keyring, &server, &who).expect("sign"), first);
        assert_eq!(a.cached(), 1);
    }
}
