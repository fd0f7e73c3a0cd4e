//! What an invitation is worth inside a transaction: whether it can still be used (its sender
//! still an owner of its project, or an admin), joining its project by it, creating an account
//! by an instance admin's one, and withdrawing what a sender sent, and removing the keys and
//! clients they made, once they lose their standing.
//! The handlers of `invitations.rs`, `sessions.rs`, `projects.rs` and `users.rs` share these.

use rusqlite::Connection;
use serde_json::json;

use crate::domain;
use crate::domain::kinds::{ProjectRole, UserRole};
use crate::error::ApiError;
use crate::services::revocations::RevokedGrants;
use crate::store::audit::Actor;
use crate::store::invitations::InvitationRow;
use crate::store::{self, users::UserRow};

/// One answer for every invitation a caller cannot use, so a token tells nothing about why.
pub fn unusable() -> ApiError {
    ApiError::NotFound(
        "invitation not found, expired, withdrawn, or not addressed to this account".into(),
    )
}

/// `POST /v1/auth/invite` with an invitation not sent by an instance admin: the same answer
/// whether or not an account has its email.
fn creates_no_account() -> ApiError {
    ApiError::Forbidden {
        message: "sign in as the invited email to accept; an administrator creates accounts".into(),
        required_scope: None,
    }
}

/// The unexpired invitation with this token, if whoever sent it may still invite to its
/// project (blocking).
pub fn usable(conn: &Connection, token_hash: &str, now: i64) -> Result<InvitationRow, ApiError> {
    standing(
        conn,
        store::invitations::by_token(conn, token_hash, now)?.ok_or_else(unusable)?,
    )
}

/// `inv`, if whoever sent it may still invite to its project (blocking).
pub fn standing(conn: &Connection, inv: InvitationRow) -> Result<InvitationRow, ApiError> {
    if entitled(conn, &inv)? {
        Ok(inv)
    } else {
        Err(unusable())
    }
}

/// Whether the sender of `inv` may still invite to its project: an owner of it, or an admin.
pub fn entitled(conn: &Connection, inv: &InvitationRow) -> Result<bool, ApiError> {
    Ok(match store::users::by_id(conn, &inv.invited_by)? {
        Some(u) if u.role == UserRole::Admin => true,
        Some(u) => {
            store::projects::member_role(conn, &inv.project_id, &u.id)? == Some(ProjectRole::Owner)
        }
        None => false,
    })
}

/// Whether the sender of `inv` is an instance admin, whose invitations may create accounts.
fn sent_by_admin(conn: &Connection, inv: &InvitationRow) -> Result<bool, ApiError> {
    Ok(store::users::by_id(conn, &inv.invited_by)?.is_some_and(|u| u.role == UserRole::Admin))
}

/// For `POST /v1/auth/invite`, before any password is hashed: `false` when no live invitation
/// has this token; the refusal when its invitation cannot be used or may not create an
/// account (the same whether or not an account has its email); `true` when it may.
pub fn may_create_account(conn: &Connection, token_hash: &str, now: i64) -> Result<bool, ApiError> {
    if store::invitations::by_token(conn, token_hash, now)?.is_none() {
        return Ok(false);
    }
    let inv = usable(conn, token_hash, now)?;
    if sent_by_admin(conn, &inv)? {
        Ok(true)
    } else {
        Err(creates_no_account())
    }
}

/// Withdraws the invitations `user_id` sent (to `project_id` only, when given), each audited
/// with `reason`; how many there were (blocking, in the caller's transaction).
pub fn withdraw_sent_by(
    tx: &Connection,
    actor: &Actor,
    user_id: &str,
    project_id: Option<&str>,
    reason: &str,
) -> Result<usize, ApiError> {
    let sent = store::invitations::sent_by(tx, user_id)?;
    let mut withdrawn = 0;
    for inv in sent
        .iter()
        .filter(|i| project_id.is_none_or(|p| p == i.project_id))
    {
        store::invitations::delete(tx, &inv.id)?;
        store::audit::record(
            tx,
            actor,
            "project.invitation.withdraw",
            Some(&inv.id),
            Some(&inv.project_id),
            Some(&json!({ "email": inv.email, "reason": reason })),
        )?;
        withdrawn += 1;
    }
    Ok(withdrawn)
}

/// Removes what `user_id` made in `project_id` (or in every project) that would outlast their
/// access: the API keys they made (and the keys made with those), whose secrets they hold, and
/// the clients they registered, whose secrets they hold or whose redirect URIs they chose.
/// The clients' tokens are refused at once. Returns the ids removed, for the audit record
/// (blocking, in the caller's transaction).
pub fn remove_made_by(
    tx: &Connection,
    revoked: &RevokedGrants,
    user_id: &str,
    project_id: Option<&str>,
) -> Result<serde_json::Value, ApiError> {
    let keys = store::api_keys::made_by_user(tx, user_id, project_id)?;
    for id in &keys {
        store::api_keys::delete(tx, id)?;
    }
    let now = domain::now();
    let mut clients = Vec::new();
    for client in store::clients::registered_by(tx, user_id, project_id)? {
        let grants = store::grants::live_grant_ids(
            tx,
            client.server_id.as_deref(),
            Some(&client.client_id),
        )?;
        for gid in &grants {
            store::grants::revoke_grant(tx, gid, now)?;
        }
        // Its client_credentials tokens belong to no grant: refused by client.
        revoked.revoke_deleted(tx, grants, std::slice::from_ref(&client.client_id))?;
        store::clients::delete(tx, &client.id)?;
        clients.push(client.client_id);
    }
    Ok(json!({ "keysRevoked": keys, "clientsRemoved": clients }))
}

/// Adds `user_id` to the invitation's project with its role, and uses the invitation up.
pub fn join(
    tx: &Connection,
    inv: &InvitationRow,
    user_id: &str,
    actor: &Actor,
    now: i64,
) -> Result<(), ApiError> {
    store::projects::add_member(tx, &inv.project_id, user_id, inv.role, now)?;
    store::invitations::delete(tx, &inv.id)?;
    store::audit::record(
        tx,
        actor,
        "project.invitation.accept",
        Some(user_id),
        Some(&inv.project_id),
        Some(&json!({ "invitationId": inv.id, "role": inv.role })),
    )?;
    Ok(())
}

/// For `POST /v1/auth/invite` with an instance admin's invitation's token: creates the account
/// of its email, which no account may have yet, with `password_hash`, and joins the project
/// (blocking, in the caller's transaction). Anyone else's invitation is refused alike whether
/// or not an account has the email, and never touches one.
pub fn join_as_new_account(
    tx: &Connection,
    token_hash: &str,
    password_hash: &str,
    now: i64,
    address: Option<String>,
) -> Result<UserRow, ApiError> {
    let inv = usable(tx, token_hash, now)?;
    if !sent_by_admin(tx, &inv)? {
        return Err(creates_no_account());
    }
    if store::users::by_email(tx, &inv.email)?.is_some() {
        return Err(ApiError::Conflict(
            "an account with this invitation's email exists: sign in as it and accept with POST /v1/invitations/accept".into(),
        ));
    }
    let user = UserRow {
        id: domain::new_id("usr_"),
        email: inv.email.clone(),
        role: UserRole::Member,
        password_hash: Some(password_hash.to_owned()),
        created_at: now,
        updated_at: now,
    };
    store::users::insert(tx, &user)?;
    let actor = Actor {
        id: user.id.clone(),
        address,
    };
    let details = json!({ "email": user.email, "role": user.role, "invitationId": inv.id });
    store::audit::record(
        tx,
        &actor,
        "user.create",
        Some(&user.id),
        None,
        Some(&details),
    )?;
    join(tx, &inv, &user.id, &actor, now)?;
    Ok(user)
}
