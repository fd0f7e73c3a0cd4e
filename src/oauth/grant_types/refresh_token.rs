//! `grant_type=refresh_token`: rotated on every use and bound to its client. The token just
//! rotated, replayed within `auth.refresh_reuse_grace` while its successor is unused (processes
//! of one client refreshing at once), gets that same successor again: the family never
//! branches. Any other reuse of a rotated token revokes the whole grant. Scope may narrow.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use serde_json::json;

use crate::config::Config;
use crate::crypto;
use crate::domain;
use crate::oauth::clients::Client;
use crate::oauth::issuer::Issuer;
use crate::oauth::params::Params;
use crate::oauth::{OAuthError, client_auth};
use crate::services::revocations::{ReuseCounters, RevokedGrants};
use crate::store::{self, StoreError, grants::GrantRow, grants::RefreshRow};

use super::{
    GrantExchange, Issued, grant_access_token, has_offline_access, refresh_row, revoke_now,
    successor,
};

/// What the refresh request says and who sent it: all the exchange needs, read before the
/// store is touched.
struct Request {
    token: String,
    /// The scopes asked for (at most those granted), if `scope` was sent.
    requested: Option<Vec<String>>,
    /// A server's own issuer serves that server's grants only.
    only_server: Option<String>,
    /// The server a `resource` names, if one was sent: it must be the grant's.
    named: Option<String>,
    client_id: String,
    may_refresh: bool,
    /// The client authentication method this request used, and whether the client holds keys.
    used: String,
    has_keys: bool,
    /// `auth.refresh_reuse_grace`, in seconds.
    grace: i64,
    /// The token that replaces this one.
    next: String,
}

/// A refresh granted: the grant, the scopes of the new access token, the refresh token to use
/// next.
struct Granted {
    grant: GrantRow,
    scopes: String,
    refresh: String,
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
    let request = Request::read(grants, client, params, issuer)?;
    let (config, revoked, reuse) = (
        grants.config.clone(),
        grants.revoked.clone(),
        grants.reuse.clone(),
    );
    let granted = grants
        .store
        .run(move |c| rotate(c, &config, &revoked, &reuse, request))
        .await??;
    let (access_token, expires_in) =
        grant_access_token(grants, issuer, &granted.grant, &granted.scopes)?;
    Ok(Issued {
        access_token,
        expires_in,
        scope: granted.scopes,
        refresh_token: Some(granted.refresh),
        id_token: None,
    })
}

impl Request {
    fn read(
        grants: &GrantExchange,
        client: &Client,
        params: &Params,
        issuer: &Issuer,
    ) -> Result<Request, OAuthError> {
        let token = params.require("refresh_token")?.to_owned();
        let requested: Option<Vec<String>> = params
            .get("scope")
            .map(|s| s.split_whitespace().map(str::to_owned).collect());
        let only_server = issuer.server.as_ref().map(|s| s.id.clone());
        let resources = params.all("resource");
        let named = if resources.is_empty() {
            None
        } else {
            Some(issuer.target(&grants.gateway, &resources)?.id.clone())
        };
        let next = successor(&grants.master_key, &token);
        Ok(Request {
            token,
            requested,
            only_server,
            named,
            client_id: client.client_id.clone(),
            may_refresh: client.may_use_grant("refresh_token"),
            used: client.auth_method.clone(),
            has_keys: client.has_keys(),
            grace: grants.config.auth.refresh_reuse_grace.as_secs(),
            next,
        })
    }
}

/// Claims the refresh token and, if the grant may be refreshed, records its successor (one
/// transaction). A refusal rolls back what was done (the claim too), except that a replay, a
/// lost access (both revoke the grant) and an expired token are committed.
fn rotate(
    c: &mut rusqlite::Connection,
    config: &Config,
    revoked: &RevokedGrants,
    reuse: &ReuseCounters,
    req: Request,
) -> Result<Result<Granted, OAuthError>, StoreError> {
    let now = domain::now();
    let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let hash = crypto::token_hash(&req.token);
    let Some(row) = store::grants::refresh(&tx, &hash)? else {
        return Ok(Err(OAuthError::invalid_grant(
            "the refresh token is invalid",
        )));
    };
    if row.client_id != req.client_id {
        return Ok(Err(OAuthError::invalid_grant(
            "the refresh token was issued to another client",
        )));
    }
    // Authenticated as the grant was obtained, before anything is used or revoked.
    let grant = store::grants::grant(&tx, &row.grant_id)?;
    if let Some(g) = &grant
        && let Err(e) = client_auth::may_refresh(g.auth_method.as_deref(), &req.used, req.has_keys)
    {
        return Ok(Err(e));
    }
    // Claim the token. Used already: the same successor within the grace while that is
    // unused (a race between a client's own processes), else a replay that revokes.
    let replayed = row.rotated_at.is_some() || !store::grants::rotate_refresh(&tx, &hash, now)?;
    if replayed && !within_grace(&tx, &row, &req, now)? {
        return Ok(Err(refuse_replay(tx, revoked, reuse, &row)?));
    }
    let grant = match grant {
        Some(g) if g.revoked_at.is_none() => g,
        _ => {
            return Ok(Err(OAuthError::invalid_grant("the grant has been revoked")));
        }
    };
    if let Err(e) = check_server(&grant, &req) {
        return Ok(Err(e));
    }
    if let Some(e) = lapsed(&tx, revoked, &grant, &row, now)? {
        tx.commit()?;
        return Ok(Err(e));
    }
    let scopes = match scopes(&req, &row) {
        Ok(s) => s,
        Err(e) => return Ok(Err(e)),
    };
    if replayed {
        audit_reuse(&tx, &grant.id, &grant.client_id, "grace")?;
    } else {
        // The refresh token keeps the grant's scopes; only the access token narrows.
        let new_row = refresh_row(config, &req.next, &grant.id, &grant.client_id, &row.scopes);
        store::grants::insert_refresh(&tx, &new_row)?;
    }
    store::grants::touch_grant(&tx, &grant.id, now)?;
    // In use: not a dynamic client to reap.
    store::clients::touch(&tx, &grant.client_id, now)?;
    tx.commit()?;
    if replayed {
        reuse.grace.fetch_add(1, Relaxed);
    }
    Ok(Ok(Granted {
        grant,
        scopes,
        refresh: req.next,
    }))
}

/// Is a replay of the rotated `row` the race the grace allows: within it, while the successor
/// is unused?
fn within_grace(
    tx: &rusqlite::Transaction<'_>,
    row: &RefreshRow,
    req: &Request,
    now: i64,
) -> Result<bool, StoreError> {
    let rotated_at = row.rotated_at.unwrap_or(now);
    Ok(req.grace > 0
        && now - rotated_at <= req.grace
        && store::grants::refresh(tx, &crypto::token_hash(&req.next))?
            .is_some_and(|s| s.rotated_at.is_none()))
}

/// A replay outside the grace: the whole grant is revoked (committed), and the refusal to send.
fn refuse_replay(
    tx: rusqlite::Transaction<'_>,
    revoked: &RevokedGrants,
    reuse: &ReuseCounters,
    row: &RefreshRow,
) -> Result<OAuthError, StoreError> {
    revoke_now(revoked, &tx, &row.grant_id)?;
    audit_reuse(&tx, &row.grant_id, &row.client_id, "revoked")?;
    tx.commit()?;
    reuse.revoked.fetch_add(1, Relaxed);
    tracing::warn!(grant = %row.grant_id, client_id = %row.client_id, "a rotated refresh token was used again; the grant is revoked");
    Ok(OAuthError::invalid_grant(
        "the refresh token was already used; the grant is revoked",
    ))
}

/// The grant's server must be the one this issuer serves and the one a `resource` names.
fn check_server(grant: &GrantRow, req: &Request) -> Result<(), OAuthError> {
    if req
        .only_server
        .as_ref()
        .is_some_and(|id| id != &grant.server_id)
    {
        return Err(OAuthError::invalid_grant(
            "the refresh token is for a server another authorization server serves",
        ));
    }
    if req.named.as_ref().is_some_and(|id| id != &grant.server_id) {
        return Err(OAuthError::invalid_target(
            "resource must name the server the refresh token is for",
        ));
    }
    Ok(())
}

/// Why the grant lapsed, if it did: its user lost access to the server (the grant is revoked
/// here), or the refresh token expired. The caller commits either way.
fn lapsed(
    tx: &rusqlite::Transaction<'_>,
    revoked: &RevokedGrants,
    grant: &GrantRow,
    row: &RefreshRow,
    now: i64,
) -> Result<Option<OAuthError>, StoreError> {
    // Access comes from being an admin or a member of the server's project: a user who lost
    // it loses the grant (removal revokes it too; this covers the rest).
    if let Some(uid) = &grant.user_id
        && !store::projects::may_use_server(tx, uid, &grant.server_id)?
    {
        revoke_now(revoked, tx, &grant.id)?;
        return Ok(Some(OAuthError::invalid_grant(
            "the user no longer has access to this server; the grant is revoked",
        )));
    }
    if row.expires_at <= now {
        return Ok(Some(OAuthError::invalid_grant(
            "the refresh token has expired",
        )));
    }
    Ok(None)
}

/// The scopes of the new access token: those asked for, each granted, else all granted. A
/// client that did not register the grant refreshes only what offline_access gave.
fn scopes(req: &Request, row: &RefreshRow) -> Result<String, OAuthError> {
    if !req.may_refresh && !has_offline_access(&row.scopes) {
        return Err(OAuthError::unauthorized_client(
            "this client may not use the refresh_token grant",
        ));
    }
    let granted: Vec<&str> = row.scopes.split_whitespace().collect();
    match &req.requested {
        Some(asked) => {
            if let Some(wider) = asked.iter().find(|s| !granted.contains(&s.as_str())) {
                return Err(OAuthError::invalid_scope(format!(
                    "the scope {wider} was not granted"
                )));
            }
            Ok(asked.join(" "))
        }
        None => Ok(row.scopes.clone()),
    }
}
