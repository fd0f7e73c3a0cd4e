//! One file per grant type (RFC 6749 §4, OAuth 2.1).

pub mod authorization_code;
pub mod client_credentials;
pub mod refresh_token;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::app::AppState;
use crate::crypto;
use crate::domain;
use crate::store::{self, StoreError, grants::RefreshRow};

use super::OAuthError;
use super::tokens;

/// Revokes a grant in the store and, at once, at the front door.
pub fn revoke_now(
    state: &AppState,
    conn: &rusqlite::Connection,
    grant_id: &str,
) -> Result<(), StoreError> {
    store::grants::revoke_grant(conn, grant_id, domain::now())?;
    state.revoked_grants.revoke(grant_id);
    Ok(())
}

/// A new refresh token row for `grant_id` (the caller inserts it in its transaction).
pub fn new_refresh(
    state: &AppState,
    grant_id: &str,
    client_id: &str,
    scopes: &str,
) -> (String, RefreshRow) {
    let (token, _) = tokens::refresh_token();
    let row = refresh_row(state, token.expose(), grant_id, client_id, scopes);
    (token.expose().to_owned(), row)
}

/// The stored row (its hash) of refresh token `token`.
pub fn refresh_row(
    state: &AppState,
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
        expires_at: now + state.config.auth.refresh_token_ttl.as_secs(),
        rotated_at: None,
    }
}

/// The token that replaces refresh token `token` when it is used: derived from it with a key
/// only this server holds (an HMAC under the master key), so that a replay of a just-rotated
/// token can be answered with the same successor without any token being stored but hashed.
pub fn successor(state: &AppState, token: &str) -> String {
    let key = state.master_key.mac_key("refresh token successors");
    let tag = aws_lc_rs::hmac::sign(&key, token.as_bytes());
    format!("ezf_rt_{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
}

pub fn has_offline_access(scopes: &str) -> bool {
    scopes
        .split_whitespace()
        .any(|s| s == crate::domain::scopes::OFFLINE_ACCESS)
}

pub fn sign_error(e: jsonwebtoken::errors::Error) -> OAuthError {
    OAuthError::server_error(e)
}
