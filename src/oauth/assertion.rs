//! `private_key_jwt` (RFC 7523 §2.2, OpenID Connect Core §9): a client authenticates with a JWT
//! it signed with a key from its `jwks` or `jwks_uri`. `iss` = `sub` = the client_id, `aud`
//! this authorization server, a short `exp`, and a `jti` that is used once: recorded in the
//! store until the assertion expires, so that neither a replay nor a restart reopens it.
//! Asymmetric algorithms only (RS256, PS256, ES256, EdDSA): `none` and HS256 are refused
//! before any key is looked at.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Validation;
use serde::Deserialize;

use super::OAuthError;
use super::OAuthState;
use super::clients::{ALGORITHMS, Client};
use crate::crypto;
use crate::shared::jwks::{self, JwksError};
use crate::store::{self, Store};

/// Longest assertion read at all.
const MAX_LEN: usize = 16 * 1024;
/// The latest `exp` accepted, from now: an assertion is made for one request.
const MAX_LIFETIME_SECS: i64 = 600;
const LEEWAY_SECS: i64 = 30;

#[derive(Deserialize)]
struct Peek {
    iss: Option<String>,
    sub: Option<String>,
}

#[derive(Deserialize)]
struct Claims {
    exp: i64,
    iat: Option<i64>,
    jti: Option<String>,
}

fn refused(why: impl std::fmt::Display) -> OAuthError {
    OAuthError::invalid_client(format!("the client assertion is refused: {why}"))
}

/// The client an assertion claims to be (`iss`, which must equal `sub`), before any check: it
/// says whose keys to verify it with.
pub fn claimed_client(assertion: &str) -> Result<String, OAuthError> {
    if assertion.len() > MAX_LEN {
        return Err(refused("it is too long"));
    }
    let payload = assertion
        .split('.')
        .nth(1)
        .and_then(|p| URL_SAFE_NO_PAD.decode(p).ok())
        .and_then(|b| serde_json::from_slice::<Peek>(&b).ok())
        .ok_or_else(|| refused("it is not a JWT"))?;
    match (payload.iss, payload.sub) {
        (Some(iss), Some(sub)) if iss == sub && !iss.is_empty() => Ok(iss),
        _ => Err(refused("iss and sub must both be the client_id")),
    }
}

/// Verifies `assertion` for `client`: signature, claims, and that its `jti` was never used
/// (recorded in `store`). A client's keys at a `jwks_uri` come through `oauth`'s cache.
pub async fn verify(
    store: &Store,
    oauth: &OAuthState,
    client: &Client,
    assertion: &str,
    audiences: &[String],
) -> Result<(), OAuthError> {
    let header =
        jsonwebtoken::decode_header(assertion).map_err(|_| refused("its header is malformed"))?;
    if !ALGORITHMS.contains(&header.alg) {
        return Err(refused(format!(
            "alg {:?} is not accepted (RS256, PS256, ES256, EdDSA)",
            header.alg
        )));
    }
    let kid = header.kid.as_deref().filter(|k| k.len() <= 256);
    let key = match (&client.jwks, &client.jwks_uri) {
        (Some(set), _) => jwks::key_in_set(set, kid, header.alg),
        (None, Some(uri)) => oauth.client_jwks.key(uri, kid, header.alg).await,
        (None, None) => return Err(refused("the client has no keys")),
    }
    .map_err(|e| match e {
        JwksError::Unavailable(why) => refused(format!("the client's keys cannot be read: {why}")),
        other => refused(other),
    })?;
    let mut v = Validation::new(header.alg);
    v.leeway = LEEWAY_SECS as u64;
    v.validate_nbf = true;
    v.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
    v.set_issuer(&[client.client_id.as_str()]);
    v.sub = Some(client.client_id.clone());
    v.set_audience(audiences);
    let claims = jsonwebtoken::decode::<Claims>(assertion, &key, &v)
        .map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            refused(match e.kind() {
                K::InvalidSignature => "its signature does not verify with the client's keys",
                K::ExpiredSignature => "it has expired",
                K::ImmatureSignature => "it is not valid yet",
                K::InvalidAudience => "its aud is not this authorization server",
                K::InvalidIssuer | K::InvalidSubject => "iss and sub must both be the client_id",
                K::MissingRequiredClaim(_) => "it lacks exp, iss, sub or aud",
                _ => "it is malformed",
            })
        })?
        .claims;
    let now = crate::domain::now();
    if claims.exp > now + MAX_LIFETIME_SECS + LEEWAY_SECS {
        return Err(refused(format!(
            "its exp is more than {MAX_LIFETIME_SECS} s away"
        )));
    }
    if claims.iat.is_some_and(|iat| iat > now + LEEWAY_SECS) {
        return Err(refused("it was issued in the future"));
    }
    let jti = claims
        .jti
        .filter(|j| !j.is_empty() && j.len() <= 256)
        .ok_or_else(|| refused("it needs a jti (at most 256 characters)"))?;
    let jti_hash = crypto::token_hash(&format!("{}\n{jti}", client.client_id));
    let until = claims.exp + LEEWAY_SECS;
    let fresh = store
        .write(move |tx| store::grants::use_assertion(tx, &jti_hash, until, now))
        .await?;
    if !fresh {
        return Err(refused("its jti was already used"));
    }
    Ok(())
}
