//! One file per grant type (RFC 6749 §4, OAuth 2.1).

pub mod authorization_code;
pub mod client_credentials;
pub mod refresh_token;

use actix_web::{FromRequest, HttpRequest, web};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::config::Config;
use crate::crypto::{self, MasterKey};
use crate::domain;
use crate::services::gateway::Gateway;
use crate::services::keys::Keyring;
use crate::services::revocations::{ReuseCounters, RevokedGrants};
use crate::store::{self, Store, StoreError, grants::GrantRow, grants::RefreshRow};

use super::OAuthError;
use super::tokens;

/// What every successful grant answers.
pub struct Issued {
    pub access_token: String,
    pub expires_in: i64,
    pub scope: String,
    pub refresh_token: Option<String>,
    /// OpenID Connect, when `openid` was granted.
    pub id_token: Option<String>,
}

/// What the grant types use to exchange a grant for tokens (an extractor for the token
/// endpoint): the config (lifetimes), the store, the signing keys, the master key (refresh
/// token successors), the revoked set and the refresh replay counters, and the gateway (the
/// servers a `resource` may name).
pub struct GrantExchange {
    pub(super) config: web::Data<Config>,
    pub(super) store: web::Data<Store>,
    pub(super) keys: web::Data<Keyring>,
    pub(super) master_key: web::Data<MasterKey>,
    pub(super) revoked: web::Data<RevokedGrants>,
    pub(super) reuse: web::Data<ReuseCounters>,
    pub(super) gateway: web::Data<Gateway>,
}

impl FromRequest for GrantExchange {
    type Error = OAuthError;
    type Future = std::future::Ready<Result<Self, OAuthError>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        use super::service;
        std::future::ready((|| {
            Ok(GrantExchange {
                config: service(req)?,
                store: service(req)?,
                keys: service(req)?,
                master_key: service(req)?,
                revoked: service(req)?,
                reuse: service(req)?,
                gateway: service(req)?,
            })
        })())
    }
}

/// Revokes a grant in the store and, at once, at the front door.
pub fn revoke_now(
    revoked: &RevokedGrants,
    conn: &rusqlite::Connection,
    grant_id: &str,
) -> Result<(), StoreError> {
    store::grants::revoke_grant(conn, grant_id, domain::now())?;
    revoked.revoke(grant_id);
    Ok(())
}

/// A new refresh token row for `grant_id` (the caller inserts it in its transaction).
pub fn new_refresh(
    config: &Config,
    grant_id: &str,
    client_id: &str,
    scopes: &str,
) -> (String, RefreshRow) {
    let (token, _) = tokens::refresh_token();
    let row = refresh_row(config, token.expose(), grant_id, client_id, scopes);
    (token.expose().to_owned(), row)
}

/// The stored row (its hash) of refresh token `token`.
pub fn refresh_row(
    config: &Config,
    token: &str,
    grant_id: &str,
    client_id: &str,
    scopes: &str,
) -> RefreshRow {
    let now = domain::now();
    RefreshRow {
        token_hash: crypto::token_hash(token),
        grant_id: grant_id.to_owned(),
        client_id: client_id.to_owned(),
        scopes: scopes.to_owned(),
        created_at: now,
        expires_at: now + config.auth.refresh_token_ttl.as_secs(),
        rotated_at: None,
    }
}

/// The token that replaces refresh token `token` when it is used: derived from it with a key
/// only this server holds (an HMAC under the master key), so that a replay of a just-rotated
/// token can be answered with the same successor without any token being stored but hashed.
pub fn successor(master_key: &MasterKey, token: &str) -> String {
    let key = master_key.mac_key("refresh token successors");
    let tag = aws_lc_rs::hmac::sign(&key, token.as_bytes());
    format!("ezf_rt_{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
}

pub fn has_offline_access(scopes: &str) -> bool {
    scopes
        .split_whitespace()
        .any(|s| s == crate::domain::scopes::OFFLINE_ACCESS)
}

/// An access token of `grant`, for its user (else its client), with `scope`.
pub fn grant_access_token(
    grants: &GrantExchange,
    issuer: &super::issuer::Issuer,
    grant: &GrantRow,
    scope: &str,
) -> Result<(String, i64), OAuthError> {
    tokens::access_token(
        &grants.config,
        &grants.keys,
        &tokens::AccessToken {
            iss: &issuer.url,
            sub: grant.user_id.as_deref().unwrap_or(&grant.client_id),
            client_id: &grant.client_id,
            resource: &grant.resource,
            scope,
            grant_id: Some(&grant.id),
        },
    )
    .map_err(sign_error)
}

pub fn sign_error(e: jsonwebtoken::errors::Error) -> OAuthError {
    OAuthError::server_error(e)
}
