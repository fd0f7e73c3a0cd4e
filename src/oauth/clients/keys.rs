//! `private_key_jwt` (RFC 7523) clients' keys: the algorithms an assertion may be signed with,
//! and which key sets a client may register or publish.

use std::sync::Arc;

use jsonwebtoken::Algorithm;

use crate::domain::validate;
use crate::shared::jwks;

pub const PRIVATE_KEY_JWT: &str = "private_key_jwt";

/// The algorithms an assertion may be signed with (as [`ASSERTION_ALGORITHMS`] names them).
pub const ALGORITHMS: [Algorithm; 4] = [
    Algorithm::RS256,
    Algorithm::PS256,
    Algorithm::ES256,
    Algorithm::EdDSA,
];

/// Algorithms a client assertion may be signed with, as the metadata lists them.
pub const ASSERTION_ALGORITHMS: [&str; 4] = ["RS256", "PS256", "ES256", "EdDSA"];

/// A `private_key_jwt` client's keys: exactly one of `jwks` (public keys only) and `jwks_uri`
/// (https; fetched through the SSRF guard when used).
#[allow(clippy::type_complexity)]
pub fn client_keys(
    jwks: Option<serde_json::Value>,
    jwks_uri: Option<String>,
) -> Result<(Option<Arc<serde_json::Value>>, Option<String>), String> {
    match (jwks, jwks_uri) {
        (Some(_), Some(_)) => Err("give jwks or jwks_uri, not both".into()),
        (None, None) => Err("private_key_jwt needs jwks or jwks_uri".into()),
        (None, Some(uri)) => {
            validate::https_url(&uri).map_err(|e| format!("jwks_uri {e}"))?;
            Ok((None, Some(uri)))
        }
        (Some(set), None) => {
            let keys = set
                .get("keys")
                .and_then(|k| k.as_array())
                .filter(|k| !k.is_empty() && k.len() <= 20)
                .ok_or("jwks must be a JWK Set with 1 to 20 keys")?;
            // Public keys only: a private or symmetric key has no place in a public document.
            if keys.iter().any(|k| {
                k.get("d").is_some()
                    || k.get("k").is_some()
                    || k.get("kty").and_then(|t| t.as_str()) == Some("oct")
            }) {
                return Err("jwks must hold public keys only".into());
            }
            // Read as verification reads it: a set none of whose keys can ever verify an
            // assertion is refused now rather than at every token request.
            let usable = jwks::usable_keys(&set, &ALGORITHMS)?;
            if usable == 0 {
                return Err("jwks holds no key that can verify a client assertion (RSA of 2048 to 8192 bits for RS256 or PS256, EC P-256 for ES256, OKP Ed25519 for EdDSA)".into());
            }
            Ok((Some(Arc::new(set)), None))
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_metadata_lists_the_algorithms_verified() {
        let names: Vec<String> = super::ALGORITHMS.iter().map(|a| format!("{a:?}")).collect();
        assert_eq!(names, super::ASSERTION_ALGORITHMS);
    }
}
