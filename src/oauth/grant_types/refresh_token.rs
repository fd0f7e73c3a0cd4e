//! `grant_type=refresh_token`: rotated on every use and bound to its client. The token just
//! rotated, replayed within `auth.refresh_reuse_grace` while its successor is unused (processes
//! of one client refreshing at once), gets that same successor again: the family never
//! branches. Any other reuse of a rotated token revokes the whole grant. Scope may narrow.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use serde_json::json;

use crate::crypto;
use crate::domain;
use crate::oauth::clients::Client;
use crate::oauth::issuer::Issuer;
use crate::oauth::params::Params;
use crate::oauth::{OAuthError, client_auth, tokens};
use crate::store::{self, StoreError, grants::GrantRow};

use super::{
    GrantExchange, Issued, has_offline_access, refresh_row, revoke_now, sign_error, successor,
};

enum Outcome {
    Granted {
        grant: Box<GrantRow>,
        scopes: String,
        refresh: String,
    },
    Refused(OAuthError),
}

/// Records a replay of a rotated refresh token in the audit log (in the grant's transaction).
fn audit_reuse(
    tx: &rusqlite::Transaction<'_>,
    grant_id: &str,
    client_id: &str,
    outcome: &str,
) -> Result<(), StoreError> {
    store::audit::record(
        tx,
        &store::audit::Actor::system("oauth"),
        "grant.refresh_reuse",
        Some(grant_id),
        None,
        Some(&json!({ "clientId": client_id, "outcome": outcome })),
    )
}

pub async fn exchange(
    grants: &GrantExchange,
    client: &Arc<Client>,
    params: &Params,
    issuer: &Issuer,
) -> Result<Issued, OAuthError> {
    let token = params.require("refresh_token")?.to_owned();
    let requested: Option<Vec<String>> = params
        .get("scope")
        .map(|s| s.split_whitespace().map(str::to_owned).collect());
    // A server's own issuer serves that server's grants only; a `resource`, if sent, must name
    // the grant's server.
    let only_server = issuer.server.as_ref().map(|s| s.id.clone());
    let resources = params.all("resource");
    let named = if resources.is_empty() {
        None
    } else {
        Some(issuer.target(&grants.gateway, &resources)?.id.clone())
    };
    let client_id = client.client_id.clone();
    let may_refresh = client.may_use_grant("refresh_token");
    let (used, has_keys) = (client.auth_method.clone(), client.has_keys());
    let grace = grants.config.auth.refresh_reuse_grace.as_secs();
    let next = successor(&grants.master_key, &token);
    let (config, revoked, reuse) = (
        grants.config.clone(),
        grants.revoked.clone(),
        grants.reuse.clone(),
    );
    let outcome = grants
        .store
        .run(move |c| -> Result<Outcome, StoreError> {
            let now = domain::now();
            let tx = c
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(StoreError::from)?;
            let hash = crypto::token_hash(&token);
            let Some(row) = store::grants::refresh(&tx, &hash)? else {
                return Ok(Outcome::Refused(OAuthError::invalid_grant(
                    "the refresh token is invalid",
                )));
            };
            if row.client_id != client_id {
                return Ok(Outcome::Refused(OAuthError::invalid_grant(
                    "the refresh token was issued to another client",
                )));
            }
            // Authenticated as the grant was obtained, before anything is used or revoked.
            let grant = store::grants::grant(&tx, &row.grant_id)?;
            if let Some(g) = &grant
                && let Err(e) = client_auth::may_refresh(g.auth_method.as_deref(), &used, has_keys)
            {
                return Ok(Outcome::Refused(e));
            }
            let next_hash = crypto::token_hash(&next);
            // Claim the token. Used already: the same successor within the grace while that is
            // unused (a race between a client's own processes), else a replay that revokes.
            let replayed = row.rotated_at.is_some() || !store::grants::rotate_refresh(&tx, &hash, now)?;
            if replayed {
                let rotated_at = row.rotated_at.unwrap_or(now);
                let within = grace > 0
                    && now - rotated_at <= grace
                    && store::grants::refresh(&tx, &next_hash)?.is_some_and(|s| s.rotated_at.is_none());
                if !within {
                    revoke_now(&revoked, &tx, &row.grant_id)?;
                    audit_reuse(&tx, &row.grant_id, &row.client_id, "revoked")?;
                    tx.commit().map_err(StoreError::from)?;
                    reuse.revoked.fetch_add(1, Relaxed);
                    tracing::warn!(grant = %row.grant_id, client_id = %row.client_id, "a rotated refresh token was used again; the grant is revoked");
                    return Ok(Outcome::Refused(OAuthError::invalid_grant(
                        "the refresh token was already used; the grant is revoked",
                    )));
                }
            }
            let grant = match grant {
                Some(g) if g.revoked_at.is_none() => g,
                _ => {
                    return Ok(Outcome::Refused(OAuthError::invalid_grant(
                        "the grant has been revoked",
                    )));
                }
            };
            if only_server.as_ref().is_some_and(|id| id != &grant.server_id) {
                return Ok(Outcome::Refused(OAuthError::invalid_grant(
                    "the refresh token is for a server another authorization server serves",
                )));
            }
            if named.as_ref().is_some_and(|id| id != &grant.server_id) {
                return Ok(Outcome::Refused(OAuthError::invalid_target(
                    "resource must name the server the refresh token is for",
                )));
            }
            // Access comes from being an admin or a member of the server's project: a user
            // who lost it loses the grant (removal revokes it too; this covers the rest).
            if let Some(uid) = &grant.user_id
                && !store::projects::may_use_server(&tx, uid, &grant.server_id)?
            {
                revoke_now(&revoked, &tx, &grant.id)?;
                tx.commit().map_err(StoreError::from)?;
                return Ok(Outcome::Refused(OAuthError::invalid_grant(
                    "the user no longer has access to this server; the grant is revoked",
                )));
            }
            if row.expires_at <= now {
                tx.commit().map_err(StoreError::from)?;
                return Ok(Outcome::Refused(OAuthError::invalid_grant(
                    "the refresh token has expired",
                )));
            }
            // A client that did not register the grant refreshes only what offline_access gave.
            if !may_refresh && !has_offline_access(&row.scopes) {
                return Ok(Outcome::Refused(OAuthError::unauthorized_client(
                    "this client may not use the refresh_token grant",
                )));
            }
            let granted: Vec<&str> = row.scopes.split_whitespace().collect();
            let scopes = match &requested {
                Some(req) => {
                    if let Some(wider) = req.iter().find(|s| !granted.contains(&s.as_str())) {
                        return Ok(Outcome::Refused(OAuthError::invalid_scope(format!(
                            "the scope {wider} was not granted"
                        ))));
                    }
                    req.join(" ")
                }
                None => row.scopes.clone(),
            };
            if replayed {
                audit_reuse(&tx, &grant.id, &grant.client_id, "grace")?;
            } else {
                // The refresh token keeps the grant's scopes; only the access token narrows.
                let new_row = refresh_row(&config, &next, &grant.id, &grant.client_id, &row.scopes);
                store::grants::insert_refresh(&tx, &new_row)?;
            }
            store::grants::touch_grant(&tx, &grant.id, now)?;
            // In use: not a dynamic client to reap.
            store::clients::touch(&tx, &grant.client_id, now)?;
            tx.commit().map_err(StoreError::from)?;
            if replayed {
                reuse.grace.fetch_add(1, Relaxed);
            }
            Ok(Outcome::Granted {
                grant: Box::new(grant),
                scopes,
                refresh: next,
            })
        })
        .await?;
    let (grant, scopes, refresh) = match outcome {
        Outcome::Granted {
            grant,
            scopes,
            refresh,
        } => (grant, scopes, refresh),
        Outcome::Refused(e) => return Err(e),
    };
    let sub = grant.user_id.as_deref().unwrap_or(&grant.client_id);
    let (access_token, expires_in) = tokens::access_token(
        &grants.config,
        &grants.keys,
        &tokens::AccessToken {
            iss: &issuer.url,
            sub,
            client_id: &grant.client_id,
            resource: &grant.resource,
            scope: &scopes,
            grant_id: Some(&grant.id),
        },
    )
    .map_err(sign_error)?;
    Ok(Issued {
        access_token,
        expires_in,
        scope: scopes,
        refresh_token: Some(refresh),
        id_token: None,
    })
}
