//! `grant_type=authorization_code`: a single-use code, PKCE-verified, bound to its client and
//! redirect URI. A second use of a code revokes everything issued from it.

use std::sync::Arc;

use crate::config::Config;
use crate::crypto;
use crate::domain;
use crate::oauth::clients::{self, Client};
use crate::oauth::issuer::Issuer;
use crate::oauth::oidc::{self, IdToken};
use crate::oauth::params::Params;
use crate::oauth::{OAuthError, pkce};
use crate::services::revocations::RevokedGrants;
use crate::store::{self, StoreError, grants::CodeRow, grants::GrantRow};

use super::{
    GrantExchange, Issued, grant_access_token, has_offline_access, new_refresh, revoke_now,
};

/// What the token request says and who sent it: all the exchange needs, read before the
/// store is touched.
struct Request {
    code: String,
    verifier: Option<String>,
    redirect_uri: Option<String>,
    /// The server a `resource` names (normalised), if one was sent.
    named: Option<Result<String, OAuthError>>,
    /// A server's own issuer exchanges that server's codes only.
    only_server: Option<String>,
    /// Clients that registered the refresh_token grant get refresh tokens; offline_access
    /// guarantees one to any client.
    refresh_registered: bool,
    client_id: String,
    /// How this request authenticated: a refresh of the grant must do the same.
    auth_method: String,
    registered: Vec<String>,
}

/// A code exchanged: the new grant, its refresh token, and for an ID token the user's email,
/// the request's nonce and when they signed in.
struct Granted {
    grant: GrantRow,
    refresh: Option<String>,
    email: String,
    nonce: Option<String>,
    auth_time: Option<i64>,
}

pub async fn exchange(
    grants: &GrantExchange,
    client: &Arc<Client>,
    params: &Params,
    issuer: &Issuer,
) -> Result<Issued, OAuthError> {
    let request = Request::read(grants, client, params, issuer)?;
    let (config, revoked) = (grants.config.clone(), grants.revoked.clone());
    let granted = grants
        .store
        .run(move |c| redeem(c, &config, &revoked, &request))
        .await??;
    issue(grants, issuer, granted)
}

impl Request {
    fn read(
        grants: &GrantExchange,
        client: &Client,
        params: &Params,
        issuer: &Issuer,
    ) -> Result<Request, OAuthError> {
        // A `resource`, if sent, must name the code's server (normalised).
        let resources = params.all("resource");
        let named = match resources.is_empty() {
            true => None,
            false => Some(
                issuer
                    .target(&grants.gateway, &resources)
                    .map(|s| s.id.clone()),
            ),
        };
        Ok(Request {
            code: params.require("code")?.to_owned(),
            verifier: params.get("code_verifier").map(str::to_owned),
            redirect_uri: params.get("redirect_uri").map(str::to_owned),
            named,
            only_server: issuer.server.as_ref().map(|s| s.id.clone()),
            refresh_registered: client.may_use_grant("refresh_token"),
            client_id: client.client_id.clone(),
            auth_method: client.auth_method.clone(),
            registered: client.redirect_uris.clone(),
        })
    }
}

/// Spends the code and, if it may be exchanged, records the grant (one transaction).
fn redeem(
    c: &mut rusqlite::Connection,
    config: &Config,
    revoked: &RevokedGrants,
    req: &Request,
) -> Result<Result<Granted, OAuthError>, StoreError> {
    let now = domain::now();
    let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let hash = crypto::token_hash(&req.code);
    let Some(row) = store::grants::code(&tx, &hash)? else {
        return Ok(Err(OAuthError::invalid_grant("the code is invalid")));
    };
    if row.used_at.is_some() {
        // Replay: everything issued from this code stops working.
        if let Some(gid) = &row.grant_id {
            revoke_now(revoked, &tx, gid)?;
        }
        tx.commit()?;
        return Ok(Err(OAuthError::invalid_grant("the code was already used")));
    }
    // From here on the code is spent, whatever the outcome.
    if let Err(e) = check(&row, req, now) {
        store::grants::use_code(&tx, &hash, now, None)?;
        tx.commit()?;
        return Ok(Err(e));
    }
    // Access may have ended between consent and exchange (removed from the project, no
    // longer an admin): as at refresh, nothing is issued then.
    if !store::projects::may_use_server(&tx, &row.user_id, &row.server_id)? {
        store::grants::use_code(&tx, &hash, now, None)?;
        tx.commit()?;
        return Ok(Err(OAuthError::invalid_grant(
            "the user no longer has access to this server",
        )));
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
        auth_method: Some(req.auth_method.clone()),
    };
    store::grants::insert_grant(&tx, &grant)?;
    store::grants::use_code(&tx, &hash, now, Some(&grant.id))?;
    let refresh = if req.refresh_registered || has_offline_access(&grant.scopes) {
        let (token, refresh_row) = new_refresh(config, &grant.id, &grant.client_id, &grant.scopes);
        store::grants::insert_refresh(&tx, &refresh_row)?;
        Some(token)
    } else {
        None
    };
    store::clients::touch(&tx, &grant.client_id, now)?;
    let email = store::users::by_id(&tx, &row.user_id)?
        .map(|u| u.email)
        .unwrap_or_default();
    tx.commit()?;
    Ok(Ok(Granted {
        grant,
        refresh,
        email,
        nonce: row.nonce,
        auth_time: row.auth_time,
    }))
}

/// May this unused code be exchanged by this request? The first rule it breaks, in order:
/// client, expiry, redirect URI, PKCE, resource, issuer.
fn check(row: &CodeRow, req: &Request, now: i64) -> Result<(), OAuthError> {
    if row.client_id != req.client_id {
        return Err(OAuthError::invalid_grant(
            "the code was issued to another client",
        ));
    }
    if row.expires_at <= now {
        return Err(OAuthError::invalid_grant("the code has expired"));
    }
    let redirect_ok = match req.redirect_uri.as_deref() {
        Some(r) if row.redirect_uri.is_empty() => clients::redirect_matches(&req.registered, r),
        given => row.redirect_uri.is_empty() || given == Some(row.redirect_uri.as_str()),
    };
    if !redirect_ok {
        return Err(OAuthError::invalid_grant(
            "redirect_uri does not match the authorization request",
        ));
    }
    match req.verifier.as_deref() {
        None => return Err(OAuthError::invalid_request("code_verifier is required")),
        Some(v) if !pkce::verify(v, &row.code_challenge) => {
            return Err(OAuthError::invalid_grant(
                "the code_verifier does not match the code_challenge",
            ));
        }
        Some(_) => {}
    }
    match &req.named {
        Some(Ok(id)) if id == &row.server_id => {}
        None => {}
        Some(_) => {
            return Err(OAuthError::invalid_target(
                "resource must match the authorization request",
            ));
        }
    }
    if req
        .only_server
        .as_ref()
        .is_some_and(|id| id != &row.server_id)
    {
        return Err(OAuthError::invalid_grant(
            "the code was issued for a server another authorization server serves",
        ));
    }
    Ok(())
}

/// The tokens of a new grant: an access token, its refresh token, an ID token for `openid`.
fn issue(grants: &GrantExchange, issuer: &Issuer, g: Granted) -> Result<Issued, OAuthError> {
    let grant = g.grant;
    let (access_token, expires_in) = grant_access_token(grants, issuer, &grant, &grant.scopes)?;
    let id_token = oidc::id_token(
        &grants.config,
        &grants.keys,
        &IdToken {
            iss: &issuer.url,
            client_id: &grant.client_id,
            user_id: grant.user_id.as_deref().unwrap_or(&grant.client_id),
            email: &g.email,
            scopes: &grant.scopes,
            nonce: g.nonce.as_deref(),
            auth_time: g.auth_time,
        },
    )?;
    Ok(Issued {
        access_token,
        expires_in,
        scope: grant.scopes,
        refresh_token: g.refresh,
        id_token,
    })
}
