//! Minting access tokens (RFC 9068 JWTs) and opaque refresh tokens.

use jsonwebtoken::{Algorithm, Header};
use serde::Serialize;

use crate::config::Config;
use crate::crypto;
use crate::domain::{self, Secret};
use crate::services::gateway::urls::ServerUrls;
use crate::services::keys::Keyring;

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

/// What an access token says: issued by `iss` to `client_id`, for `sub` at `resource`.
pub struct AccessToken<'a> {
    pub iss: &'a str,
    pub sub: &'a str,
    pub client_id: &'a str,
    pub resource: &'a str,
    pub scope: &'a str,
    /// The grant it comes from (none for `client_credentials`).
    pub grant_id: Option<&'a str>,
}

/// An ES256 access token, valid `access_token_ttl`, signed with the active key.
pub fn access_token(
    config: &Config,
    keyring: &Keyring,
    t: &AccessToken<'_>,
) -> Result<(String, i64), jsonwebtoken::errors::Error> {
    let now = domain::now();
    let ttl = config.auth.access_token_ttl.as_secs();
    let keys = keyring.current();
    let mut header = Header::new(Algorithm::ES256);
    header.typ = Some("at+jwt".into());
    header.kid = Some(keys.active.kid.clone());
    let claims = AccessClaims {
        iss: t.iss,
        sub: t.sub,
        aud: t.resource,
        client_id: t.client_id,
        scope: t.scope,
        exp: now + ttl,
        iat: now,
        jti: domain::base32(&domain::random_bytes::<12>()),
        gid: t.grant_id,
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

/// The claims of a JWT signed with one of our published keys (ES256) by one of our issuers;
/// `check_exp`: refused once expired (with the usual leeway).
pub fn verify_ours(
    keyring: &Keyring,
    urls: &ServerUrls,
    token: &str,
    check_exp: bool,
) -> Option<serde_json::Value> {
    let header = jsonwebtoken::decode_header(token).ok()?;
    let keys = keyring.current();
    let key = keys.verifier(header.kid.as_deref()?)?;
    let mut v = jsonwebtoken::Validation::new(Algorithm::ES256);
    v.validate_aud = false;
    v.validate_exp = check_exp;
    v.leeway = crate::services::gateway::verify::LEEWAY_SECS as u64;
    v.set_required_spec_claims(&["iss"]);
    let claims = jsonwebtoken::decode::<serde_json::Value>(token, key, &v)
        .ok()?
        .claims;
    claims
        .get("iss")
        .and_then(|i| i.as_str())
        .is_some_and(|iss| urls.is_our_issuer(iss))
        .then_some(claims)
}
