//! Admin-only user management.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use super::ControlState;
use super::auth::Principal;
use super::sessions::{check_password_rules, user_json};
use super::{ListQuery, data, list as list_page, no_content};
use crate::crypto;
use crate::domain::kinds::UserRole;
use crate::domain::{self, Secret, password, validate};
use crate::error::ApiError;
use crate::services::revocations::RevokedGrants;
use crate::store::{self, Store, users::UserRow};

const INVITE_TTL_SECS: i64 = 7 * 86_400;

pub async fn list(
    store: web::Data<Store>,
    who: Principal,
    q: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    who.admin()?;
    let page = q.page()?;
    let users = store.run(move |c| store::users::list(c, &page)).await?;
    Ok(list_page(users, user_json))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    email: Option<String>,
    password: Option<Secret>,
    role: Option<String>,
}

pub async fn create(
    store: web::Data<Store>,
    who: Principal,
    body: web::Json<CreateUser>,
) -> Result<HttpResponse, ApiError> {
    who.admin()?;
    let body = body.into_inner();
    let email = required_email(body.email.as_deref())?;
    let role = match UserRole::parse(body.role.as_deref().unwrap_or("member")) {
        Some(r) => r,
        None => {
            return Err(ApiError::validation(
                "role",
                "must be \"admin\" or \"member\"",
            ));
        }
    };
    let hash = match body.password {
        Some(pw) => {
            check_password_rules(&pw)?;
            Some(
                web::block(move || password::hash(&pw))
                    .await
                    .map_err(|e| ApiError::Internal(e.into()))?
                    .map_err(|e| ApiError::Internal(anyhow::anyhow!("{e}")))?,
            )
        }
        None => None,
    };
    let invite = hash.is_none().then(|| crypto::new_token("ezf_inv_"));
    let invite_hash = invite.as_ref().map(|t| crypto::token_hash(t.expose()));
    let now = domain::now();
    let user = UserRow {
        id: domain::new_id("usr_"),
        email,
        password_hash: hash,
        role,
        created_at: now,
        updated_at: now,
    };
    let actor = who.actor();
    let row = user.clone();
    store
        .write(move |tx| {
            if store::users::by_email(tx, &row.email)?.is_some() {
                return Err(ApiError::Conflict(format!(
                    "a user with the email {} already exists",
                    row.email
                )));
            }
            store::users::insert(tx, &row)?;
            if let Some(h) = &invite_hash {
                store::users::create_invite(tx, h, &row.id, now + INVITE_TTL_SECS)?;
            }
            let details = json!({ "email": row.email, "role": row.role });
            store::audit::record(
                tx,
                &actor,
                "user.create",
                Some(&row.id),
                None,
                Some(&details),
            )?;
            Ok(())
        })
        .await?;
    let mut body = json!({ "user": user_json(&user) });
    if let Some(t) = invite {
        body["inviteToken"] = json!(t.expose());
    }
    Ok(data(StatusCode::CREATED, body))
}

/// A body's `email`: present, and an address (422 naming the field otherwise).
pub(super) fn required_email(email: Option<&str>) -> Result<String, ApiError> {
    let email = email.ok_or_else(|| ApiError::validation("email", "required"))?;
    validate::email(email).map_err(|e| ApiError::validation("email", e))
}

pub async fn delete(
    store: web::Data<Store>,
    revoked: web::Data<RevokedGrants>,
    control: web::Data<ControlState>,
    who: Principal,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let me = who.admin()?.id.clone();
    let target = path.into_inner();
    if target == me {
        return Err(ApiError::Conflict(
            "you cannot delete your own account".into(),
        ));
    }
    let actor = who.actor();
    store
        .write(move |tx| {
            let user = store::users::by_id(tx, &target)?
                .ok_or_else(|| ApiError::NotFound("user not found".into()))?;
            // Their grants go with them: the front door must refuse the tokens still out. So do
            // the invitations they sent, each audited.
            let grants = store::grants::grant_ids_of_user(tx, &user.id)?;
            let withdrawn =
                super::membership::withdraw_sent_by(tx, &actor, &user.id, None, "sender deleted")?;
            store::users::delete(tx, &user.id)?;
            if user.role == UserRole::Admin && store::users::admin_count(tx)? == 0 {
                return Err(ApiError::Conflict("cannot delete the last admin".into()));
            }
            revoked.revoke_deleted(tx, grants, &[])?;
            // The keys and clients they made, in every project, go with them.
            let mut details = super::membership::remove_made_by(tx, &revoked, &user.id, None)?;
            details["email"] = json!(user.email);
            details["invitationsWithdrawn"] = json!(withdrawn);
            store::audit::record(
                tx,
                &actor,
                "user.delete",
                Some(&user.id),
                None,
                Some(&details),
            )?;
            Ok(())
        })
        .await?;
    control.access_changed();
    Ok(no_content())
}
