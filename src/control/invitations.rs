//! Project membership by invitation. An owner invites an email; the answer is the same whether
//! or not an account has it (no one learns who has an account), and carries a one-time token
//! for the owner to hand over. The invitee accepts with it: signed in as that email
//! (`POST /v1/invitations/accept`), or, when no account has the email, by choosing a password
//! (`POST /v1/auth/invite`, which then creates the account). An invitation is only as good as
//! its sender's standing: once they are no longer an owner (or admin), it is void.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use rusqlite::Connection;
use serde::Deserialize;
use serde_json::json;

use super::auth::{Principal, project_access};
use super::projects::{owner_only, project_json};
use super::{ListQuery, data, list as list_page, no_content};
use crate::app::AppState;
use crate::crypto;
use crate::domain::{self, Secret};
use crate::error::ApiError;
use crate::store::audit::Actor;
use crate::store::invitations::{InvitationRow, InvitationView};
use crate::store::{self, users::UserRow};

/// How long an invitation can be accepted.
pub const INVITATION_TTL_SECS: i64 = 7 * 86_400;

fn invitation_json(v: &InvitationView, now: i64) -> serde_json::Value {
    let i = &v.row;
    json!({
        "id": i.id,
        "projectId": i.project_id,
        "project": { "id": i.project_id, "name": v.project_name, "slug": v.project_slug },
        "email": i.email,
        "role": i.role,
        "status": if i.expires_at > now { "pending" } else { "expired" },
        "invitedBy": i.invited_by,
        "invitedByEmail": v.inviter_email,
        "createdAt": domain::rfc3339(i.created_at),
        "expiresAt": domain::rfc3339(i.expires_at),
    })
}

/// One answer for every invitation a caller cannot use, so a token tells nothing about why.
fn unusable() -> ApiError {
    ApiError::NotFound(
        "invitation not found, expired, withdrawn, or not addressed to this account".into(),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InviteBody {
    email: Option<String>,
    role: Option<String>,
}

/// `POST /v1/projects/:projectId/members {email, role?}`: invites the email (owners).
pub async fn invite(
    state: web::Data<AppState>,
    who: Principal,
    path: web::Path<String>,
    body: web::Json<InviteBody>,
) -> Result<HttpResponse, ApiError> {
    let inviter = who.session()?.clone();
    let body = body.into_inner();
    let email = super::users::required_email(body.email.as_deref())?;
    let role = match body.role.as_deref().unwrap_or("member") {
        r @ ("owner" | "member") => r.to_owned(),
        _ => {
            return Err(ApiError::validation(
                "role",
                "must be \"owner\" or \"member\"",
            ));
        }
    };
    let token = crypto::new_token("ezf_inv_");
    let token_hash = crypto::token_hash(token.expose());
    let now = domain::now();
    let key = path.into_inner();
    let actor = who.actor();
    let view = state
        .store
        .write(move |tx| {
            let access = project_access(tx, &who, &key)?;
            if !access.owner {
                return Err(owner_only());
            }
            let project = access.project;
            // Already in the project: its owners see its members, so this tells them nothing new.
            if let Some(user) = store::users::by_email(tx, &email)?
                && store::projects::member_role(tx, &project.id, &user.id)?.is_some()
            {
                return Err(ApiError::Conflict(format!(
                    "{} is already a member",
                    user.email
                )));
            }
            if let Some(old) = store::invitations::for_email_in_project(tx, &project.id, &email)? {
                if old.expires_at > now && entitled(tx, &old)? {
                    return Err(ApiError::Conflict(format!(
                        "{email} has a pending invitation; withdraw it to invite again"
                    )));
                }
                store::invitations::delete(tx, &old.id)?;
            }
            let row = InvitationRow {
                id: domain::new_id("inv_"),
                project_id: project.id.clone(),
                email,
                role,
                token_hash,
                invited_by: inviter.id.clone(),
                created_at: now,
                expires_at: now + INVITATION_TTL_SECS,
            };
            store::invitations::insert(tx, &row)?;
            let details = json!({ "email": row.email, "role": row.role });
            store::audit::record(
                tx,
                &actor,
                "project.invitation.create",
                Some(&row.id),
                Some(&project.id),
                Some(&details),
            )?;
            Ok(InvitationView {
                row,
                inviter_email: Some(inviter.email),
                project_name: project.name,
                project_slug: project.slug,
            })
        })
        .await?;
    let mut body = invitation_json(&view, now);
    body["inviteToken"] = json!(token.expose());
    Ok(data(StatusCode::CREATED, body))
}

/// `GET /v1/projects/:projectId/invitations` (owners): pending and expired ones.
pub async fn list(
    state: web::Data<AppState>,
    who: Principal,
    path: web::Path<String>,
    q: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    who.session()?;
    let page = q.page()?;
    let key = path.into_inner();
    let items = state
        .store
        .run(move |c| {
            let access = project_access(c, &who, &key)?;
            if !access.owner {
                return Err(owner_only());
            }
            Ok(store::invitations::list_for_project(
                c,
                &access.project.id,
                &page,
            )?)
        })
        .await?;
    let now = domain::now();
    Ok(list_page(items, |v| invitation_json(v, now)))
}

/// `DELETE /v1/projects/:projectId/invitations/:invitationId` (owners): its token stops working.
pub async fn withdraw(
    state: web::Data<AppState>,
    who: Principal,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    who.session()?;
    let (key, id) = path.into_inner();
    let actor = who.actor();
    state
        .store
        .write(move |tx| {
            let access = project_access(tx, &who, &key)?;
            if !access.owner {
                return Err(owner_only());
            }
            let inv = store::invitations::in_project(tx, &access.project.id, &id)?
                .ok_or_else(|| ApiError::NotFound("invitation not found".into()))?;
            store::invitations::delete(tx, &inv.id)?;
            store::audit::record(
                tx,
                &actor,
                "project.invitation.withdraw",
                Some(&inv.id),
                Some(&inv.project_id),
                Some(&json!({ "email": inv.email })),
            )?;
            Ok(())
        })
        .await?;
    Ok(no_content())
}

/// `GET /v1/invitations`: the caller's own pending invitations.
pub async fn mine(
    state: web::Data<AppState>,
    who: Principal,
    q: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let email = who.session()?.email.clone();
    let page = q.page()?;
    let now = domain::now();
    let items = state
        .store
        .run(move |c| store::invitations::list_for_email(c, &email, now, &page))
        .await?;
    Ok(list_page(items, |v| invitation_json(v, now)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcceptBody {
    token: Option<Secret>,
}

/// `POST /v1/invitations/accept {token}`: joins the project, signed in as the invitee.
pub async fn accept(
    state: web::Data<AppState>,
    who: Principal,
    body: web::Json<AcceptBody>,
) -> Result<HttpResponse, ApiError> {
    let user = who.session()?.clone();
    let token = body
        .into_inner()
        .token
        .ok_or_else(|| ApiError::validation("token", "required"))?;
    let token_hash = crypto::token_hash(token.expose());
    let now = domain::now();
    let actor = who.actor();
    let (project, role) = state
        .store
        .write(move |tx| {
            let inv = usable(tx, &token_hash, now)?;
            if !inv.email.eq_ignore_ascii_case(&user.email) {
                return Err(unusable());
            }
            if store::projects::member_role(tx, &inv.project_id, &user.id)?.is_some() {
                return Err(ApiError::Conflict(
                    "you are already a member of this project".into(),
                ));
            }
            join(tx, &inv, &user.id, &actor, now)?;
            let project = store::projects::find(tx, &inv.project_id)?.ok_or_else(unusable)?;
            Ok((project, inv.role))
        })
        .await?;
    Ok(data(StatusCode::OK, project_json(&project, Some(&role))))
}

/// `DELETE /v1/invitations/:invitationId`: the invitee declines.
pub async fn decline(
    state: web::Data<AppState>,
    who: Principal,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let email = who.session()?.email.clone();
    let id = path.into_inner();
    let actor = who.actor();
    state
        .store
        .write(move |tx| {
            let inv = store::invitations::by_id(tx, &id)?
                .filter(|i| i.email.eq_ignore_ascii_case(&email))
                .ok_or_else(|| ApiError::NotFound("invitation not found".into()))?;
            store::invitations::delete(tx, &inv.id)?;
            store::audit::record(
                tx,
                &actor,
                "project.invitation.decline",
                Some(&inv.id),
                Some(&inv.project_id),
                None,
            )?;
            Ok::<_, ApiError>(())
        })
        .await?;
    Ok(no_content())
}

/// The unexpired invitation with this token, if whoever sent it may still invite to its
/// project (blocking).
fn usable(conn: &Connection, token_hash: &str, now: i64) -> Result<InvitationRow, ApiError> {
    let inv = store::invitations::by_token(conn, token_hash, now)?.ok_or_else(unusable)?;
    if entitled(conn, &inv)? {
        Ok(inv)
    } else {
        Err(unusable())
    }
}

/// Whether the sender of `inv` may still invite to its project: an owner of it, or an admin.
fn entitled(conn: &Connection, inv: &InvitationRow) -> Result<bool, ApiError> {
    Ok(match store::users::by_id(conn, &inv.invited_by)? {
        Some(u) if u.role == "admin" => true,
        Some(u) => {
            store::projects::member_role(conn, &inv.project_id, &u.id)?.as_deref() == Some("owner")
        }
        None => false,
    })
}

/// Whether a token is a live invitation's (so a made-up one costs no password hash).
pub fn token_exists(conn: &Connection, token_hash: &str, now: i64) -> Result<bool, ApiError> {
    Ok(store::invitations::by_token(conn, token_hash, now)?.is_some())
}

/// Adds `user_id` to the invitation's project with its role, and uses the invitation up.
fn join(
    tx: &Connection,
    inv: &InvitationRow,
    user_id: &str,
    actor: &Actor,
    now: i64,
) -> Result<(), ApiError> {
    store::projects::add_member(tx, &inv.project_id, user_id, &inv.role, now)?;
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

/// For `POST /v1/auth/invite` with an invitation's token: creates the account of its email,
/// which no account may have yet, with `password_hash`, and joins the project (blocking, in
/// the caller's transaction).
pub fn join_as_new_account(
    tx: &Connection,
    token_hash: &str,
    password_hash: &str,
    now: i64,
    address: Option<String>,
) -> Result<UserRow, ApiError> {
    let inv = usable(tx, token_hash, now)?;
    if store::users::by_email(tx, &inv.email)?.is_some() {
        return Err(ApiError::Conflict(
            "an account with this invitation's email exists: sign in as it and accept with POST /v1/invitations/accept".into(),
        ));
    }
    let user = UserRow {
        id: domain::new_id("usr_"),
        email: inv.email.clone(),
        role: "member".into(),
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
