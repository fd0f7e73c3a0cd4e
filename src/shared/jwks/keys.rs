//! A JWKS document read as verification keys: which of its keys can verify which of the
//! signature algorithms we accept (RSA, ECDSA on P-256 and P-384, Ed25519), and which cannot
//! and are skipped.

use std::collections::HashMap;
use std::sync::Arc;

use aws_lc_rs::signature;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, KeyOperations, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey};

use super::JwksError;

pub(super) struct Key {
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

/// The verification keys of a JWKS document, by `kid` and without one. A key that cannot verify
/// a signature we accept is skipped (RFC 7517 §5: keys that are not understood are ignored):
/// an encryption key, one whose `alg` or `key_ops` rules out verifying, a symmetric key, a
/// curve other than P-256, P-384 or Ed25519 (X25519 is for key agreement), a point not on its
/// curve, an RSA modulus outside 2048–8192 bits (what the verifier takes) or a bad exponent.
#[allow(clippy::type_complexity)]
pub(super) fn parse_set(
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

pub(super) fn check(key: &Key, alg: Algorithm) -> Result<DecodingKey, JwksError> {
    if key.alg.is_some_and(|a| a != alg) || family_of(alg) != Some(key.family) {
        return Err(JwksError::AlgorithmMismatch(alg));
    }
    Ok(key.decoding.clone())
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
pub(super) mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    pub(crate) fn ec_jwk(alg: &'static rcgen::SignatureAlgorithm, crv: &str) -> Value {
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
}
