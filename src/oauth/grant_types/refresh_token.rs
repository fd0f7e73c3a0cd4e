//! `grant_type=refresh_token`: rotated on every use and bound to its client. Using a rotated
//! token again (a replay, or the loser of a race) revokes the whole grant. Scope may narrow.

use std::sync::Arc;

use crate::app::AppState;
use crate::crypto;
use crate::domain;
use crate::oauth::clients::Client;
use crate::oauth::params::Params;
use crate::oauth::token::Issued;
use crate::oauth::{OAuthError, tokens};
use crate::store::{self, StoreError, grants::GrantRow};

use super::{new_refresh, revoke_now, sign_error};

enum Outcome {
    Granted {
        grant: Box<GrantRow>,
        scopes: String,
        refresh: String,
    },
    Refused(OAuthError),
}

pub async fn exchange(
    state: &actix_web::web::Data<AppState>,
    client: &Arc<Client>,
    params: &Params,
) -> Result<Issued, OAuthError> {
    let token = params.require("refresh_token")?.to_owned();
    let requested: Option<Vec<String>> = params
        .get("scope")
        .map(|s| s.split_whitespace().map(str::to_owned).collect());
    let client_id = client.client_id.clone();
    let st = state.clone();
    let outcome = state
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
            // Claim the token; if it was already used, this is a replay: revoke the grant.
            if row.rotated_at.is_some() || !store::grants::rotate_refresh(&tx, &hash, now)? {
                revoke_now(&st, &tx, &row.grant_id)?;
                tx.commit().map_err(StoreError::from)?;
                return Ok(Outcome::Refused(OAuthError::invalid_grant(
                    "the refresh token was already used; the grant is revoked",
                )));
            }
            let grant = match store::grants::grant(&tx, &row.grant_id)? {
                Some(g) if g.revoked_at.is_none() => g,
                _ => {
                    return Ok(Outcome::Refused(OAuthError::invalid_grant(
                        "the grant has been revoked",
                    )));
                }
            };
            // Access comes from being an admin or a member of the server's project: a user
            // who lost it loses the grant (removal revokes it too; this covers the rest).
            if let Some(uid) = &grant.user_id
                && !store::projects::may_use_server(&tx, uid, &grant.server_id)?
            {
                revoke_now(&st, &tx, &grant.id)?;
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
            // The refresh token keeps the grant's scopes; only the access token narrows.
            let (refresh, new_row) = new_refresh(&st, &grant.id, &grant.client_id, &row.scopes);
            store::grants::insert_refresh(&tx, &new_row)?;
            store::grants::touch_grant(&tx, &grant.id, now)?;
            // In use: not a dynamic client to reap.
            store::clients::touch(&tx, &grant.client_id, now)?;
            tx.commit().map_err(StoreError::from)?;
            Ok(Outcome::Granted {
                grant: Box::new(grant),
                scopes,
                refresh,
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
        state,
        sub,
        &grant.client_id,
        &grant.resource,
        &scopes,
        Some(&grant.id),
    )
    .map_err(sign_error)?;
    Ok(Issued {
        access_token,
        expires_in,
        scope: scopes,
        refresh_token: Some(refresh),
    })
}
