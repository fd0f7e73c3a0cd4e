//! Access-token signing keys: ES256 key pairs generated with rcgen, private halves sealed with
//! the master key in the store, public halves published as a JWKS. Rotation makes a new active
//! key; retired keys stay published until every token they signed has expired.

use std::sync::{Arc, RwLock};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{DecodingKey, EncodingKey};
use rusqlite::Connection;
use serde_json::json;

use crate::crypto::MasterKey;
use crate::store::StoreError;
use crate::store::signing_keys::{self, SigningKeyRow};

/// How often a running server looks for keys rotated by another process (`ezforge keys rotate`).
pub const RELOAD_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);

/// Extra time a retired key stays published beyond the access-token lifetime: clock leeway
/// plus the reload interval during which a running server may still sign with it.
const PUBLISH_MARGIN_SECS: i64 = 120;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "cannot decrypt signing key {kid}: the master key (data_dir/master.key or EZFORGE_MASTER_KEY) is not the one it was sealed with"
    )]
    Decrypt { kid: String },
    #[error("cannot generate a signing key: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("signing key {kid} is unusable: {reason}")]
    Unusable { kid: String, reason: String },
    #[error("there is no active signing key")]
    NoActiveKey,
}

/// The key that signs new tokens.
pub struct ActiveKey {
    pub kid: String,
    pub encoding: EncodingKey,
}

/// A published key, for verifying tokens in memory.
pub struct VerifyKey {
    pub kid: String,
    pub decoding: DecodingKey,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct KeySummary {
    pub kid: String,
    pub alg: String,
    pub status: &'static str,
    pub created_at: i64,
    pub publish_until: Option<i64>,
}

/// One consistent view of the keys: the signer, the verifiers and the JWKS document.
pub struct KeySet {
    pub active: ActiveKey,
    pub verify: Vec<VerifyKey>,
    /// The serialized JWKS, built once per key change.
    pub jwks: bytes::Bytes,
    pub summaries: Vec<KeySummary>,
}

impl KeySet {
    pub fn verifier(&self, kid: &str) -> Option<&DecodingKey> {
        self.verify
            .iter()
            .find(|k| k.kid == kid)
            .map(|k| &k.decoding)
    }
}

/// The keys in use, swapped atomically when they change.
pub struct Keyring {
    current: RwLock<Arc<KeySet>>,
}

impl Keyring {
    pub fn new(set: KeySet) -> Self {
        Self {
            current: RwLock::new(Arc::new(set)),
        }
    }

    pub fn current(&self) -> Arc<KeySet> {
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn replace(&self, set: KeySet) {
        match self.current.write() {
            Ok(mut g) => *g = Arc::new(set),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(set),
        }
    }

    /// Reloads from the store if the published keys changed (blocking).
    pub fn refresh(
        &self,
        conn: &Connection,
        master: &MasterKey,
        now: i64,
    ) -> Result<bool, KeyError> {
        let rows = signing_keys::published(conn, now)?;
        let current = self.current();
        let same = rows.len() == current.summaries.len()
            && rows
                .iter()
                .zip(&current.summaries)
                .all(|(r, s)| r.kid == s.kid && r.retired_at.is_none() == (s.status == "active"));
        if same {
            return Ok(false);
        }
        self.replace(build_set(rows, master)?);
        Ok(true)
    }
}

/// A new ES256 key pair as a store row (private key sealed).
pub fn generate(master: &MasterKey, now: i64) -> Result<SigningKeyRow, KeyError> {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let raw = pair.public_key_raw();
    if raw.len() != 65 || raw[0] != 4 {
        return Err(KeyError::Unusable {
            kid: "new".into(),
            reason: "unexpected P-256 public key encoding".into(),
        });
    }
    let x = URL_SAFE_NO_PAD.encode(&raw[1..33]);
    let y = URL_SAFE_NO_PAD.encode(&raw[33..65]);
    // RFC 7638 thumbprint: SHA-256 of the required members in lexicographic order.
    let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
    let kid = URL_SAFE_NO_PAD.encode(crate::crypto::sha256(canonical.as_bytes()));
    let jwk = json!({ "kty": "EC", "crv": "P-256", "x": x, "y": y, "kid": kid, "use": "sig", "alg": "ES256" });
    Ok(SigningKeyRow {
        private_key: master.seal(&pair.serialize_der(), &format!("signing_key:{kid}")),
        kid,
        alg: "ES256".into(),
        public_jwk: jwk.to_string(),
        created_at: now,
        retired_at: None,
        publish_until: None,
    })
}

/// Creates the first key if there is no active one (blocking).
pub fn ensure_active(
    conn: &mut Connection,
    master: &MasterKey,
    now: i64,
) -> Result<bool, KeyError> {
    let row = generate(master, now)?;
    Ok(signing_keys::insert_if_none_active(conn, &row)?)
}

/// Makes a new active key; the old one stays published for `access_token_ttl` plus a margin.
pub fn rotate(
    conn: &mut Connection,
    master: &MasterKey,
    now: i64,
    access_token_ttl_secs: i64,
) -> Result<String, KeyError> {
    let row = generate(master, now)?;
    signing_keys::rotate(
        conn,
        &row,
        now,
        now + access_token_ttl_secs + PUBLISH_MARGIN_SECS,
    )?;
    Ok(row.kid)
}

/// Rotates when the active key is older than `rotate_after_secs` (blocking).
pub fn rotate_if_due(
    conn: &mut Connection,
    master: &MasterKey,
    now: i64,
    rotate_after_secs: i64,
    access_token_ttl_secs: i64,
) -> Result<Option<String>, KeyError> {
    let rows = signing_keys::published(conn, now)?;
    let due = rows
        .iter()
        .find(|r| r.retired_at.is_none())
        .is_some_and(|active| now - active.created_at >= rotate_after_secs);
    if !due {
        return Ok(None);
    }
    rotate(conn, master, now, access_token_ttl_secs).map(Some)
}

/// Loads the published keys and decrypts the active one (blocking).
pub fn load(conn: &Connection, master: &MasterKey, now: i64) -> Result<KeySet, KeyError> {
    build_set(signing_keys::published(conn, now)?, master)
}

fn build_set(rows: Vec<SigningKeyRow>, master: &MasterKey) -> Result<KeySet, KeyError> {
    let mut active = None;
    let mut verify = Vec::with_capacity(rows.len());
    let mut jwks = Vec::with_capacity(rows.len());
    let mut summaries = Vec::with_capacity(rows.len());
    for row in rows {
        let unusable = |reason: String| KeyError::Unusable {
            kid: row.kid.clone(),
            reason,
        };
        let jwk: serde_json::Value =
            serde_json::from_str(&row.public_jwk).map_err(|e| unusable(e.to_string()))?;
        let (Some(x), Some(y)) = (jwk["x"].as_str(), jwk["y"].as_str()) else {
            return Err(unusable("public key lacks x or y".into()));
        };
        let decoding =
            DecodingKey::from_ec_components(x, y).map_err(|e| unusable(e.to_string()))?;
        if row.retired_at.is_none() && active.is_none() {
            let der = master
                .open(&row.private_key, &format!("signing_key:{}", row.kid))
                .map_err(|_| KeyError::Decrypt {
                    kid: row.kid.clone(),
                })?;
            active = Some(ActiveKey {
                kid: row.kid.clone(),
                encoding: EncodingKey::from_ec_der(&der),
            });
        }
        summaries.push(KeySummary {
            kid: row.kid.clone(),
            alg: row.alg.clone(),
            status: if row.retired_at.is_none() {
                "active"
            } else {
                "retired"
            },
            created_at: row.created_at,
            publish_until: row.publish_until,
        });
        verify.push(VerifyKey {
            kid: row.kid.clone(),
            decoding,
        });
        jwks.push(jwk);
    }
    let active = active.ok_or(KeyError::NoActiveKey)?;
    let jwks = bytes::Bytes::from(json!({ "keys": jwks }).to_string());
    Ok(KeySet {
        active,
        verify,
        jwks,
        summaries,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{Algorithm, Header, Validation};

    fn store() -> (tempfile::TempDir, crate::store::Store) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = crate::store::Store::open(&dir.path().join("t.db")).expect("open");
        (dir, store)
    }

    #[test]
    fn generated_key_signs_and_verifies() {
        let (_dir, store) = store();
        let master = MasterKey::from_bytes(&[1; 32]);
        let set = store
            .run_blocking(|c| {
                ensure_active(c, &master, 1000)?;
                load(c, &master, 1000)
            })
            .expect("keys");
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(set.active.kid.clone());
        let claims = json!({ "sub": "u", "exp": 4_000_000_000u64 });
        let token = jsonwebtoken::encode(&header, &claims, &set.active.encoding).expect("sign");
        let key = set.verifier(&set.active.kid).expect("verifier");
        let mut validation = Validation::new(Algorithm::ES256);
        validation.required_spec_claims.clear();
        let decoded =
            jsonwebtoken::decode::<serde_json::Value>(&token, key, &validation).expect("verify");
        assert_eq!(decoded.claims["sub"], "u");
        let jwks: serde_json::Value = serde_json::from_slice(&set.jwks).expect("json");
        assert_eq!(jwks["keys"][0]["kid"], set.active.kid.as_str());
        assert!(
            jwks["keys"][0].get("d").is_none(),
            "private part must not be published"
        );
    }

    #[test]
    fn rotation_keeps_old_key_published_until_tokens_expire() {
        let (_dir, store) = store();
        let master = MasterKey::from_bytes(&[2; 32]);
        let (first, second, later) = store
            .run_blocking(|c| {
                ensure_active(c, &master, 1000)?;
                let first = load(c, &master, 1000)?;
                rotate(c, &master, 2000, 900)?;
                let second = load(c, &master, 2000)?;
                let later = load(c, &master, 2000 + 900 + PUBLISH_MARGIN_SECS + 1)?;
                Ok::<_, KeyError>((first, second, later))
            })
            .expect("rotate");
        assert_ne!(first.active.kid, second.active.kid);
        assert_eq!(second.verify.len(), 2);
        assert!(second.verifier(&first.active.kid).is_some());
        assert_eq!(later.verify.len(), 1);
        assert!(later.verifier(&first.active.kid).is_none());
    }

    #[test]
    fn wrong_master_key_is_a_clear_error() {
        let (_dir, store) = store();
        let result = store.run_blocking(|c| {
            ensure_active(c, &MasterKey::from_bytes(&[3; 32]), 1)?;
            load(c, &MasterKey::from_bytes(&[4; 32]), 1)
        });
        let err = result.err().expect("must fail");
        assert!(err.to_string().contains("master key"), "{err}");
    }
}
