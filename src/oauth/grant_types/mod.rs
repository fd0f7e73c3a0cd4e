//! One file per grant type (RFC 6749 §4, OAuth 2.1).

pub mod authorization_code;
pub mod client_credentials;
pub mod refresh_token;

use crate::app::AppState;
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

/// Revokes grants and clients whose rows are about to be deleted (with their user, server or
/// client): at the front door at once, and on record until their tokens have expired, so that
/// a restart does not forget them.
pub fn revoke_deleted(
    state: &AppState,
    conn: &rusqlite::Connection,
    grants: Vec<String>,
    clients: &[String],
) -> Result<(), StoreError> {
    let now = domain::now();
    store::grants::record_revocations(conn, "grant", &grants, now)?;
    store::grants::record_revocations(conn, "client", clients, now)?;
    state.revoked_grants.extend(grants);
    for c in clients {
        state.revoked_grants.revoke_client(c);
    }
    Ok(())
}

/// A new refresh token row for `grant_id` (the caller inserts it in its transaction).
pub fn new_refresh(
    state: &AppState,
    grant_id: &str,
    client_id: &str,
    scopes: &str,
) -> (String, RefreshRow) {
    let (token, hash) = tokens::refresh_token();
    let now = domain::now();
    (
        token.expose().to_owned(),
        RefreshRow {
            token_hash: hash,
            grant_id: grant_id.to_owned(),
            client_id: client_id.to_owned(),
            scopes: scopes.to_owned(),
            created_at: now,
            expires_at: now + state.config.auth.refresh_token_ttl.as_secs(),
            rotated_at: None,
        },
    )
}

pub fn has_offline_access(scopes: &str) -> bool {
    scopes
        .split_whitespace()
        .any(|s| s == crate::domain::scopes::OFFLINE_ACCESS)
}

pub fn sign_error(e: jsonwebtoken::errors::Error) -> OAuthError {
    OAuthError::server_error(e)
}
