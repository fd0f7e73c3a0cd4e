//! `grant_type=authorization_code`: a single-use code, PKCE-verified, bound to its client and
//! redirect URI. A second use of a code revokes everything issued from it.

use std::sync::Arc;

use crate::crypto;
use crate::domain;
use crate::oauth::clients::Client;
use crate::oauth::issuer::Issuer;
use crate::oauth::oidc::{self, IdToken};
use crate::oauth::params::Params;
use crate::oauth::{OAuthError, pkce, tokens};
use crate::store::{self, StoreError, grants::GrantRow};

use super::{GrantExchange, Issued, has_offline_access, new_refresh, revoke_now, sign_error};

enum Outcome {
    Granted {
        grant: Box<GrantRow>,
        refresh: Option<String>,
        /// For an ID token: the user's email, the request's nonce, when they signed in.
        email: String,
        nonce: Option<String>,
        auth_time: Option<i64>,
    },
    Refused(OAuthError),
}

pub async fn exchange(
    grants: &GrantExchange,
    client: &Arc<Client>,
    params: &Params,
    issuer: &Issuer,
) -> Result<Issued, OAuthError> {
    let code = params.require("code")?.to_owned();
    let verifier = params.get("code_verifier").map(str::to_owned);
    let redirect_uri = params.get("redirect_uri").map(str::to_owned);
    // A `resource`, if sent, must name the code's server (normalised); a server's own issuer
    // exchanges that server's codes only.
    let resources = params.all("resource");
    let named = match resources.is_empty() {
        true => None,
        false => Some(
            issuer
                .target(&grants.gateway, &resources)
                .map(|s| s.id.clone()),
        ),
    };
    let only_server = issuer.server.as_ref().map(|s| s.id.clone());
    // Clients that registered the refresh_token grant get refresh tokens; offline_access
    // guarantees one to any client.
    let refresh_registered = client.may_use_grant("refresh_token");
    let client_id = client.client_id.clone();
    // How this request authenticated: a refresh of the grant must do the same.
    let auth_method = client.auth_method.clone();
    let registered = client.redirect_uris.clone();
    let (config, revoked) = (grants.config.clone(), grants.revoked.clone());
    let outcome = grants
        .store
        .run(move |c| -> Result<Outcome, StoreError> {
            let now = domain::now();
            let tx = c
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(StoreError::from)?;
            let hash = crypto::token_hash(&code);
            let Some(row) = store::grants::code(&tx, &hash)? else {
                return Ok(Outcome::Refused(OAuthError::invalid_grant(
                    "the code is invalid",
                )));
            };
            if row.used_at.is_some() {
                // Replay: everything issued from this code stops working.
                if let Some(gid) = &row.grant_id {
                    revoke_now(&revoked, &tx, gid)?;
                }
                tx.commit().map_err(StoreError::from)?;
                return Ok(Outcome::Refused(OAuthError::invalid_grant(
                    "the code was already used",
                )));
            }
            // From here on the code is spent, whatever the outcome.
            let refuse =
                |tx: rusqlite::Transaction<'_>, e: OAuthError| -> Result<Outcome, StoreError> {
                    store::grants::use_code(&tx, &hash, now, None)?;
                    tx.commit()?;
                    Ok(Outcome::Refused(e))
                };
            if row.client_id != client_id {
                return refuse(
                    tx,
                    OAuthError::invalid_grant("the code was issued to another client"),
                );
            }
            if row.expires_at <= now {
                return refuse(tx, OAuthError::invalid_grant("the code has expired"));
            }
            let redirect_ok = match redirect_uri.as_deref() {
                Some(r) if row.redirect_uri.is_empty() => {
                    crate::oauth::clients::redirect_matches(&registered, r)
                }
                given => row.redirect_uri.is_empty() || given == Some(row.redirect_uri.as_str()),
            };
            if !redirect_ok {
                return refuse(
                    tx,
                    OAuthError::invalid_grant(
                        "redirect_uri does not match the authorization request",
                    ),
                );
            }
            match verifier.as_deref() {
                None => {
                    return refuse(tx, OAuthError::invalid_request("code_verifier is required"));
                }
                Some(v) if !pkce::verify(v, &row.code_challenge) => {
                    return refuse(
                        tx,
                        OAuthError::invalid_grant(
                            "the code_verifier does not match the code_challenge",
                        ),
                    );
                }
                Some(_) => {}
            }
            match &named {
                Some(Ok(id)) if id == &row.server_id => {}
                None => {}
                Some(_) => {
                    return refuse(
                        tx,
                        OAuthError::invalid_target("resource must match the authorization request"),
                    );
                }
            }
            if only_server.as_ref().is_some_and(|id| id != &row.server_id) {
                return refuse(
                    tx,
                    OAuthError::invalid_grant(
                        "the code was issued for a server another authorization server serves",
                    ),
                );
            }
            let grant = GrantRow {
                id: domain::new_id("grt_"),
                user_id: Some(row.user_id.clone()),
                client_id: row.client_id.clone(),
                client_name: row.client_name.clone(),
                server_id: row.server_id.clone(),
                resource: row.resource.clone(),
                scopes: row.scopes.clone(),
                created_at: now,
                last_used_at: Some(now),
                revoked_at: None,
                auth_method: Some(auth_method),
            };
            store::grants::insert_grant(&tx, &grant)?;
            store::grants::use_code(&tx, &hash, now, Some(&grant.id))?;
            let refresh = if refresh_registered || has_offline_access(&grant.scopes) {
                let (token, refresh_row) =
                    new_refresh(&config, &grant.id, &grant.client_id, &grant.scopes);
                store::grants::insert_refresh(&tx, &refresh_row)?;
                Some(token)
            } else {
                None
            };
            store::clients::touch(&tx, &grant.client_id, now)?;
            let email = store::users::by_id(&tx, &row.user_id)?
                .map(|u| u.email)
                .unwrap_or_default();
            tx.commit().map_err(StoreError::from)?;
            Ok(Outcome::Granted {
                grant: Box::new(grant),
                refresh,
                email,
                nonce: row.nonce,
                auth_time: row.auth_time,
            })
        })
        .await?;
    let (grant, refresh, email, nonce, auth_time) = match outcome {
        Outcome::Granted {
            grant,
            refresh,
            email,
            nonce,
            auth_time,
        } => (grant, refresh, email, nonce, auth_time),
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
            scope: &grant.scopes,
            grant_id: Some(&grant.id),
        },
    )
    .map_err(sign_error)?;
    let id_token = oidc::id_token(
        &grants.config,
        &grants.keys,
        &IdToken {
            iss: &issuer.url,
            client_id: &grant.client_id,
            user_id: sub,
            email: &email,
            scopes: &grant.scopes,
            nonce: nonce.as_deref(),
            auth_time,
        },
    )?;
    Ok(Issued {
        access_token,
        expires_in,
        scope: grant.scopes,
        refresh_token: refresh,
        id_token,
    })
}
