//! Bearer token validation for the front door. Managed tokens: ES256 with our published keys,
//! `typ at+jwt`, our root issuer or the server's own. BYOA tokens: the external issuer's JWKS, asymmetric algorithms only.
//! Both: `aud` must contain the server's URI, `exp`/`nbf` with 60 s leeway. A verified token is
//! cached (keyed by its SHA-256) until it expires, so each signature is checked once; a cached
//! token counts only at servers that trust the keys that verified it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use dashmap::DashMap;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::registry::{ServerAuth, ServerEntry};
use crate::services::keys::Keyring;
use crate::services::revocations::RevokedGrants;
use crate::shared::jwks::{self, JwksCache};
use crate::shared::logs::LogHub;

pub const LEEWAY_SECS: i64 = 60;
const CACHE_CAPACITY: usize = 100_000;
/// The verified-token cache's size bound, in (estimated) bytes, whatever the tokens hold.
const CACHE_BYTES: usize = 256 * 1024 * 1024;
/// Tokens with more scopes or audiences than this are refused: no real token has them, and
/// each is kept in memory while the token is cached.
const MAX_SCOPES: usize = 256;
const MAX_AUDIENCES: usize = 32;
/// Tokens longer than this are refused without parsing.
const MAX_TOKEN_LEN: usize = 16 * 1024;

/// What a valid token says.
#[derive(Debug)]
pub struct Verified {
    pub subject: String,
    pub client_id: Option<String>,
    pub scopes: Vec<String>,
    pub audiences: Vec<String>,
    pub issuer: String,
    /// The JWKS whose key verified the token; `None`: our own keyring (managed).
    pub jwks_uri: Option<String>,
    pub expires_at: i64,
    pub not_before: Option<i64>,
    pub grant_id: Option<String>,
    /// Worked out once per token rather than per request: the scopes as one header value,
    /// and `subject|client_id`, whose sessions and rate-limit buckets these are.
    pub scope_header: String,
    pub owner: String,
}

impl Verified {
    pub fn has_scope(&self, s: &str) -> bool {
        self.scopes.iter().any(|x| x == s)
    }

    /// Whether `server` trusts what verified this token: the same keys and the same issuer. Any
    /// project may name any issuer for its BYOA servers, so the issuer alone proves nothing.
    fn trusted_by(&self, public_url: &str, server: &ServerEntry) -> bool {
        match &server.auth {
            ServerAuth::Managed => {
                self.jwks_uri.is_none()
                    && (self.issuer == public_url
                        || server.issuer.as_deref() == Some(self.issuer.as_str()))
            }
            ServerAuth::Byoa(cfg) => {
                self.jwks_uri.as_deref() == Some(cfg.jwks_uri.as_str()) && self.issuer == cfg.issuer
            }
            ServerAuth::Unconfigured => false,
        }
    }

    /// Roughly what it takes in memory.
    fn size(&self) -> usize {
        let strings = |v: &[String]| v.iter().map(|s| s.len() + 32).sum::<usize>();
        256 + self.subject.len()
            + self.client_id.as_ref().map_or(0, String::len)
            + strings(&self.scopes)
            + strings(&self.audiences)
            + self.issuer.len()
            + self.jwks_uri.as_ref().map_or(0, String::len)
            + self.grant_id.as_ref().map_or(0, String::len)
            + self.scope_header.len()
            + self.owner.len()
    }
}

/// Longest `subject|client_id` kept as it is in rate-limit keys and session bindings.
const OWNER_MAX: usize = 128;

/// `subject|client_id`, or its digest when long: it keys rate-limit buckets and session
/// bindings, which must not grow with whatever a token's issuer puts in it.
fn owner_of(subject: &str, client_id: Option<&str>) -> String {
    let owner = format!("{subject}|{}", client_id.unwrap_or(""));
    if owner.len() <= OWNER_MAX {
        owner
    } else {
        format!("h:{}", crate::crypto::token_hash(&owner))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("the token is malformed")]
    Malformed,
    #[error("the token's algorithm is not accepted")]
    Algorithm,
    #[error("the token's type must be at+jwt")]
    Type,
    #[error("the token was signed by an unknown key")]
    UnknownKey,
    #[error("the token's signature is invalid")]
    Signature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token was issued by another issuer")]
    Issuer,
    #[error("the token is not meant for this server")]
    Audience,
    #[error("the token's grant has been revoked")]
    Revoked,
    #[error("the server's issuer is unavailable")]
    IssuerUnavailable,
    #[error("the server has no issuer configured")]
    Unconfigured,
}

impl VerifyError {
    /// A short reason for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::Algorithm => "algorithm",
            Self::Type => "type",
            Self::UnknownKey => "unknown_key",
            Self::Signature => "signature",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::Issuer => "issuer",
            Self::Audience => "audience",
            Self::Revoked => "revoked",
            Self::IssuerUnavailable => "issuer_unavailable",
            Self::Unconfigured => "unconfigured",
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

#[derive(Deserialize)]
struct Claims {
    iss: String,
    sub: Option<String>,
    aud: Option<OneOrMany>,
    exp: i64,
    nbf: Option<i64>,
    scope: Option<String>,
    scp: Option<OneOrMany>,
    client_id: Option<String>,
    azp: Option<String>,
    gid: Option<String>,
}

pub struct Verifier {
    cache: DashMap<[u8; 32], Arc<Verified>>,
    /// The cache's estimated size ([`Verified::size`] summed).
    bytes: AtomicUsize,
    jwks: JwksCache,
    /// Our keys (managed tokens).
    keys: Arc<Keyring>,
    /// Grants and clients whose tokens are refused at once.
    revoked: Arc<RevokedGrants>,
    /// The servers' logs, where unavailable issuers are reported.
    hub: LogHub,
    /// The root issuer.
    public_url: String,
    /// When each server's log last said its issuer's keys were unavailable (at most once a
    /// minute each).
    reported: DashMap<String, i64>,
}

impl Verifier {
    pub fn new(
        jwks: JwksCache,
        keys: Arc<Keyring>,
        revoked: Arc<RevokedGrants>,
        hub: LogHub,
        public_url: &str,
    ) -> Self {
        Self {
            cache: DashMap::new(),
            bytes: AtomicUsize::new(0),
            jwks,
            keys,
            revoked,
            hub,
            public_url: public_url.to_owned(),
            reported: DashMap::new(),
        }
    }

    /// Says in the server's log why its issuer's keys cannot be had (the operator reads
    /// `ezforge logs`, not ezforge's stderr), at most once a minute per server.
    fn report_unavailable(&self, server: &ServerEntry, jwks_uri: &str, why: &str) {
        let now = crate::domain::now();
        let mut last = self.reported.entry(server.id.clone()).or_insert(0);
        if now - *last < 60 {
            return;
        }
        *last = now;
        drop(last);
        self.hub.write(
            &server.id,
            "error",
            "auth",
            format!(
                "tokens cannot be checked: the issuer's keys ({jwks_uri}) cannot be fetched: {why}"
            ),
        );
    }

    fn remember(&self, key: [u8; 32], v: Arc<Verified>, now: i64) {
        let size = v.size();
        if self.cache.len() >= CACHE_CAPACITY
            || self.bytes.load(Ordering::Relaxed) + size > CACHE_BYTES
        {
            self.cache
                .retain(|_, v| v.expires_at.saturating_add(LEEWAY_SECS) > now);
            if self.cache.len() >= CACHE_CAPACITY {
                self.cache.clear();
            }
            let mut total: usize = self.cache.iter().map(|e| e.value().size()).sum();
            if total + size > CACHE_BYTES {
                self.cache.clear();
                total = 0;
            }
            self.bytes.store(total, Ordering::Relaxed);
        }
        if let Some(old) = self.cache.insert(key, v) {
            self.bytes.fetch_sub(old.size(), Ordering::Relaxed);
        }
        self.bytes.fetch_add(size, Ordering::Relaxed);
    }

    fn forget(&self, key: &[u8; 32]) {
        if let Some((_, old)) = self.cache.remove(key) {
            self.bytes.fetch_sub(old.size(), Ordering::Relaxed);
        }
    }

    /// Validates `token` for `server`.
    pub async fn verify(
        &self,
        server: &ServerEntry,
        token: &str,
    ) -> Result<Arc<Verified>, VerifyError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(VerifyError::Malformed);
        }
        let now = crate::domain::now();
        let key = crate::crypto::sha256(token.as_bytes());
        let cached = self.cache.get(&key).map(|e| e.value().clone());
        let verified = match cached {
            Some(v) if v.trusted_by(&self.public_url, server) => v,
            _ => {
                let v = Arc::new(self.verify_signature(server, token).await?);
                self.remember(key, v.clone(), now);
                v
            }
        };
        // Checks that can change after caching: time, audience, revocation.
        if verified.expires_at.saturating_add(LEEWAY_SECS) <= now {
            self.forget(&key);
            return Err(VerifyError::Expired);
        }
        if verified
            .not_before
            .is_some_and(|nbf| nbf.saturating_sub(LEEWAY_SECS) > now)
        {
            return Err(VerifyError::NotYetValid);
        }
        if !verified.audiences.iter().any(|a| a == &server.resource) {
            return Err(VerifyError::Audience);
        }
        let revoked = match (&verified.grant_id, &verified.client_id) {
            (Some(gid), _) => self.revoked.is_revoked(gid),
            // A client_credentials token: revoked with its client.
            (None, Some(client)) => self.revoked.is_client_revoked(client),
            (None, None) => false,
        };
        if revoked {
            return Err(VerifyError::Revoked);
        }
        Ok(verified)
    }

    async fn verify_signature(
        &self,
        server: &ServerEntry,
        token: &str,
    ) -> Result<Verified, VerifyError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| VerifyError::Malformed)?;
        let kid = header.kid.as_deref();
        if kid.is_some_and(|k| k.len() > 256) {
            return Err(VerifyError::UnknownKey);
        }
        // `jku`, `x5u` and `jwk` headers are never followed: keys come only from our keyring or
        // the server's configured JWKS.
        let (decoding, issuers, jwks_uri) = self.signing_key(server, token, &header).await?;
        let claims = decode(token, &decoding, header.alg, &issuers)?;
        verified(claims, jwks_uri)
    }

    /// The key a token for `server` must be signed with, the issuers it may name, and the JWKS
    /// the key came from (`None`: our keyring).
    async fn signing_key(
        &self,
        server: &ServerEntry,
        token: &str,
        header: &jsonwebtoken::Header,
    ) -> Result<(DecodingKey, Vec<String>, Option<String>), VerifyError> {
        let kid = header.kid.as_deref();
        Ok(match &server.auth {
            ServerAuth::Managed => {
                if header.alg != Algorithm::ES256 {
                    return Err(VerifyError::Algorithm);
                }
                let typ = header.typ.as_deref().unwrap_or("").to_ascii_lowercase();
                if typ != "at+jwt" && typ != "application/at+jwt" {
                    return Err(VerifyError::Type);
                }
                let keys = self.keys.current();
                let key = kid
                    .and_then(|k| keys.verifier(k))
                    .ok_or(VerifyError::UnknownKey)?;
                // The root issuer's tokens, or the server's own issuer's.
                let own = server.issuer.clone().unwrap_or_default();
                (key.clone(), vec![self.public_url.clone(), own], None)
            }
            ServerAuth::Byoa(cfg) => {
                if !jwks::is_allowed(header.alg) {
                    return Err(VerifyError::Algorithm);
                }
                // A token that does not even claim the issuer (one of ours, after a switch to
                // BYOA) is refused as such: fetching the issuer's keys for it would only turn
                // "sign in again" into "try again later" while the issuer is down. Read, not
                // trusted: the signature is still checked for any token that does claim it.
                if unverified_issuer(token).is_none_or(|iss| iss != cfg.issuer) {
                    return Err(VerifyError::Issuer);
                }
                let key = self
                    .jwks
                    .key(&cfg.jwks_uri, kid, header.alg)
                    .await
                    .map_err(|e| match e {
                        jwks::JwksError::UnknownKey(_) => VerifyError::UnknownKey,
                        jwks::JwksError::AlgorithmMismatch(_) => VerifyError::Algorithm,
                        jwks::JwksError::Unavailable(why) => {
                            self.report_unavailable(server, &cfg.jwks_uri, &why);
                            VerifyError::IssuerUnavailable
                        }
                    })?;
                (key, vec![cfg.issuer.clone()], Some(cfg.jwks_uri.clone()))
            }
            ServerAuth::Unconfigured => return Err(VerifyError::Unconfigured),
        })
    }
}

/// The `iss` a JWT claims, unverified: only ever used to refuse early.
fn unverified_issuer(token: &str) -> Option<String> {
    use base64::Engine;
    let payload = token.split('.').nth(1)?;
    if payload.len() > 16 * 1024 {
        return None;
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    #[derive(serde::Deserialize)]
    struct Iss {
        iss: Option<String>,
    }
    serde_json::from_slice::<Iss>(&bytes).ok()?.iss
}

/// Checks the signature, the issuer and the times, and reads the claims.
fn decode(
    token: &str,
    key: &DecodingKey,
    alg: Algorithm,
    issuers: &[String],
) -> Result<Claims, VerifyError> {
    let mut validation = Validation::new(alg);
    validation.leeway = LEEWAY_SECS as u64;
    validation.validate_aud = false;
    validation.validate_nbf = true;
    validation.set_required_spec_claims(&["exp", "iss"]);
    validation.set_issuer(issuers);
    let data = jsonwebtoken::decode::<Claims>(token, key, &validation).map_err(|e| {
        use jsonwebtoken::errors::ErrorKind as K;
        match e.kind() {
            K::ExpiredSignature => VerifyError::Expired,
            K::ImmatureSignature => VerifyError::NotYetValid,
            K::InvalidIssuer => VerifyError::Issuer,
            K::InvalidSignature => VerifyError::Signature,
            K::InvalidAlgorithm | K::InvalidAlgorithmName => VerifyError::Algorithm,
            _ => VerifyError::Malformed,
        }
    })?;
    Ok(data.claims)
}

/// What a token's claims say, bounded.
fn verified(c: Claims, jwks_uri: Option<String>) -> Result<Verified, VerifyError> {
    let scopes = match (c.scope, c.scp) {
        (Some(s), _) => s.split_whitespace().map(str::to_owned).collect(),
        (None, Some(scp)) => scp
            .into_vec()
            .into_iter()
            .flat_map(|s| s.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
            .collect(),
        (None, None) => Vec::new(),
    };
    let audiences = c.aud.map(OneOrMany::into_vec).unwrap_or_default();
    if scopes.len() > MAX_SCOPES || audiences.len() > MAX_AUDIENCES {
        return Err(VerifyError::Malformed);
    }
    let subject = c.sub.unwrap_or_default();
    let client_id = c.client_id.or(c.azp);
    Ok(Verified {
        owner: owner_of(&subject, client_id.as_deref()),
        scope_header: scopes.join(" "),
        subject,
        client_id,
        scopes,
        audiences,
        issuer: c.iss,
        jwks_uri,
        expires_at: c.exp,
        not_before: c.nbf,
        grant_id: c.gid,
    })
}

#[cfg(test)]
mod tests {
    use super::{OWNER_MAX, owner_of, unverified_issuer};

    #[test]
    fn the_claimed_issuer_is_read_without_trusting_it() {
        // {"alg":"none"} . {"iss":"https://idp.example","sub":"x"} . (no signature)
        let token = "eyJhbGciOiJub25lIn0.eyJpc3MiOiJodHRwczovL2lkcC5leGFtcGxlIiwic3ViIjoieCJ9.";
        assert_eq!(
            unverified_issuer(token).as_deref(),
            Some("https://idp.example")
        );
        assert_eq!(unverified_issuer("a.%%%.c"), None);
        assert_eq!(unverified_issuer("abc"), None);
        // {"sub":"x"}: no issuer at all.
        assert_eq!(unverified_issuer("e30.eyJzdWIiOiJ4In0.sig"), None);
    }

    #[test]
    fn long_owners_are_kept_as_a_digest() {
        assert_eq!(owner_of("usr_1", Some("cl_1")), "usr_1|cl_1");
        assert_eq!(owner_of("usr_1", None), "usr_1|");
        let long = "s".repeat(16 * 1024);
        let owner = owner_of(&long, Some("c"));
        assert!(owner.len() <= OWNER_MAX && owner.starts_with("h:"));
        assert_ne!(owner, owner_of(&long, Some("d")), "the client still counts");
    }
}
