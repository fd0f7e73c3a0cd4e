//! Minting access tokens (RFC 9068 JWTs) and opaque refresh tokens.

use jsonwebtoken::{Algorithm, Header};
use serde::Serialize;

use crate::app::AppState;
use crate::crypto;
use crate::domain::{self, Secret};

#[derive(Serialize)]
struct AccessClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    client_id: &'a str,
    scope: &'a str,
    exp: i64,
    iat: i64,
    jti: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    gid: Option<&'a str>,
}

/// An ES256 access token for `resource`, valid `access_token_ttl`.
pub fn access_token(
    state: &AppState,
    sub: &str,
    client_id: &str,
    resource: &str,
    scope: &str,
    grant_id: Option<&str>,
) -> Result<(String, i64), jsonwebtoken::errors::Error> {
    let now = domain::now();
    let ttl = state.config.auth.access_token_ttl.as_secs();
    let keys = state.keys.current();
    let mut header = Header::new(Algorithm::ES256);
    header.typ = Some("at+jwt".into());
    header.kid = Some(keys.active.kid.clone());
    let claims = AccessClaims {
        iss: &state.public_url,
        sub,
        aud: resource,
        client_id,
        scope,
        exp: now + ttl,
        iat: now,
        jti: domain::base32(&crypto::random_bytes::<12>()),
        gid: grant_id,
    };
    Ok((
        jsonwebtoken::encode(&header, &claims, &keys.active.encoding)?,
        ttl,
    ))
}

/// A new refresh token and its stored hash.
pub fn refresh_token() -> (Secret, String) {
    let token = crypto::new_token("ezf_rt_");
    let hash = crypto::token_hash(token.expose());
    (token, hash)
}
