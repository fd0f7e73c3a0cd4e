//! Project membership by invitation. An owner invites an email; the answer is the same whether
//! or not an account has it (no one learns who has an account), and carries a one-time token
//! for the owner to hand over. The invitee accepts signed in as that email, with the token
//! (`POST /v1/invitations/accept`) or from their own list (`POST /v1/invitations/:id/accept`).
//!
//! Only an instance admin's invitation may create an account (`POST /v1/auth/invite`, as for
//! users an admin creates without a password): admins make accounts anyway. Anyone else's is
//! refused there with one answer whatever the email (an owner holding their own invitation's
//! token must learn nothing, and squat nothing): an administrator creates the account, and the
//! invitation then waits in its list. An invitation is only as good as its sender's standing:
//! once they are no longer an owner (or admin), it is void.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use rusqlite::Connection;
use serde::Deserialize;
use serde_json::json;

use super::auth::{Principal, owner_only, project_access};
use super::membership::{entitled, join, standing, unusable, usable};
use super::projects::project_json;
use super::{ListQuery, data, list as list_page, no_content};
use crate::crypto;
use crate::domain::kinds::ProjectRole;
use crate::domain::{self, Secret};
use crate::error::ApiError;
use crate::store::audit::Actor;
use crate::store::invitations::{InvitationRow, InvitationView};
use crate::store::{self, Store};

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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InviteBody {
    email: Option<String>,
    role: Option<String>,
}

/// `POST /v1/projects/:projectId/members {email, role?}`: invites the email (owners).
pub async fn invite(
    store: web::Data<Store>,
    who: Principal,
    path: web::Path<String>,
    body: web::Json<InviteBody>,
) -> Result<HttpResponse, ApiError> {
    let inviter = who.session()?.clone();
    let body = body.into_inner();
    let email = super::users::required_email(body.email.as_deref())?;
    let role = invitee_role(body.role.as_deref())?;
    let token = crypto::new_token("ezf_inv_");
    let now = domain::now();
    let row = InvitationRow {
        id: domain::new_id("inv_"),
        project_id: String::new(),
        email,
        role,
        token_hash: crypto::token_hash(token.expose()),
        invited_by: inviter.id.clone(),
        created_at: now,
        expires_at: now + INVITATION_TTL_SECS,
    };
    let key = path.into_inner();
    let actor = who.actor();
    let view = store
        .write(move |tx| {
            let access = project_access(tx, &who, &key)?;
            if !access.owner {
                return Err(owner_only());
            }
            let project = access.project;
            let row = send(tx, &actor, &project.id, row, now)?;
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

/// `role`: `member` unless `owner` is asked for.
fn invitee_role(role: Option<&str>) -> Result<ProjectRole, ApiError> {
    match ProjectRole::parse(role.unwrap_or("member")) {
        Some(r) => Ok(r),
        None => Err(ApiError::validation(
            "role",
            "must be \"owner\" or \"member\"",
        )),
    }
}

/// Records the invitation `row` to `project_id`, unless its email is a member already or has
/// a live invitation there; one that expired, or went void with its sender's standing, is
/// replaced (blocking, in the caller's transaction).
fn send(
    tx: &Connection,
    actor: &Actor,
    project_id: &str,
    mut row: InvitationRow,
    now: i64,
) -> Result<InvitationRow, ApiError> {
    // Already in the project: its owners see its members, so this tells them nothing new.
    if let Some(user) = store::users::by_email(tx, &row.email)?
        && store::projects::member_role(tx, project_id, &user.id)?.is_some()
    {
        return Err(ApiError::Conflict(format!(
            "{} is already a member",
            user.email
        )));
    }
    if let Some(old) = store::invitations::for_email_in_project(tx, project_id, &row.email)? {
        if old.expires_at > now && entitled(tx, &old)? {
            return Err(ApiError::Conflict(format!(
                "{} has a pending invitation; withdraw it to invite again",
                row.email
            )));
        }
        // Expired, or void since its sender lost their standing: replaced.
        store::invitations::delete(tx, &old.id)?;
        store::audit::record(
            tx,
            actor,
            "project.invitation.replace",
            Some(&old.id),
            Some(project_id),
            Some(&json!({ "email": old.email, "replacedBy": row.id })),
        )?;
    }
    row.project_id = project_id.to_owned();
    store::invitations::insert(tx, &row)?;
    let details = json!({ "email": row.email, "role": row.role });
    store::audit::record(
        tx,
        actor,
        "project.invitation.create",
        Some(&row.id),
        Some(project_id),
        Some(&details),
    )?;
    Ok(row)
}

/// `GET /v1/projects/:projectId/invitations` (owners): pending and expired ones.
pub async fn list(
    store: web::Data<Store>,
    who: Principal,
    path: web::Path<String>,
    q: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    who.session()?;
    let page = q.page()?;
    let key = path.into_inner();
    let items = store
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
    store: web::Data<Store>,
    who: Principal,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    who.session()?;
    let (key, id) = path.into_inner();
    let actor = who.actor();
    store
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
    store: web::Data<Store>,
    who: Principal,
    q: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let email = who.session()?.email.clone();
    let page = q.page()?;
    let now = domain::now();
    let items = store
        .run(move |c| store::invitations::list_for_email(c, &email, now, &page))
        .await?;
    Ok(list_page(items, |v| invitation_json(v, now)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcceptBody {
    token: Option<Secret>,
}

/// Which invitation an invitee accepts.
enum Which {
    Token(String),
    Id(String),
}

/// `POST /v1/invitations/accept {token}`: joins the project, signed in as the invitee.
pub async fn accept(
    store: web::Data<Store>,
    who: Principal,
    body: web::Json<AcceptBody>,
) -> Result<HttpResponse, ApiError> {
    // Who may comes first: an API key learns nothing from the body's validation.
    who.session()?;
    let token = body
        .into_inner()
        .token
        .ok_or_else(|| ApiError::validation("token", "required"))?;
    accept_one(
        &store,
        who,
        Which::Token(crypto::token_hash(token.expose())),
    )
    .await
}

/// `POST /v1/invitations/:invitationId/accept`: the same, for one of the caller's own
/// invitations (`GET /v1/invitations`), without the token.
pub async fn accept_by_id(
    store: web::Data<Store>,
    who: Principal,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    accept_one(&store, who, Which::Id(path.into_inner())).await
}

async fn accept_one(store: &Store, who: Principal, which: Which) -> Result<HttpResponse, ApiError> {
    let user = who.session()?.clone();
    let now = domain::now();
    let actor = who.actor();
    let (project, role) = store
        .write(move |tx| {
            let inv = match which {
                Which::Token(token_hash) => usable(tx, &token_hash, now)?,
                Which::Id(id) => standing(
                    tx,
                    store::invitations::by_id(tx, &id)?
                        .filter(|i| i.expires_at > now)
                        .ok_or_else(unusable)?,
                )?,
            };
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
    Ok(data(StatusCode::OK, project_json(&project, Some(role))))
}

/// `DELETE /v1/invitations/:invitationId`: the invitee declines.
pub async fn decline(
    store: web::Data<Store>,
    who: Principal,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let email = who.session()?.email.clone();
    let id = path.into_inner();
    let actor = who.actor();
    store
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
