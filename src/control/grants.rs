//! `GET /v1/grants` (a user's own authorizations; admins see all) and `DELETE /v1/grants/:id`:
//! revoking ends the grant's refresh tokens, and its access tokens at the front door, at once.

use actix_web::{HttpResponse, web};
use serde_json::json;

use super::auth::Principal;
use super::{ListQuery, list as list_page, no_content, time};
use crate::domain;
use crate::error::ApiError;
use crate::services::revocations::RevokedGrants;
use crate::store::{self, Store, grants::GrantRow};

fn grant_json(g: &GrantRow) -> serde_json::Value {
    json!({
        "id": g.id,
        "userId": g.user_id,
        "clientId": g.client_id,
        "clientName": g.client_name,
        "serverId": g.server_id,
        "resource": g.resource,
        "scopes": g.scopes.split_whitespace().collect::<Vec<_>>(),
        "createdAt": domain::rfc3339(g.created_at),
        "lastUsedAt": time(g.last_used_at),
    })
}

pub async fn list(
    store: web::Data<Store>,
    who: Principal,
    q: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let user = who.session()?;
    let page = q.page()?;
    let only = (!user.is_admin()).then(|| user.id.clone());
    let grants = store
        .run(move |c| store::grants::list_grants(c, only.as_deref(), &page))
        .await?;
    Ok(list_page(grants, grant_json))
}

pub async fn revoke(
    store: web::Data<Store>,
    revoked: web::Data<RevokedGrants>,
    who: Principal,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let user = who.session()?.clone();
    let id = path.into_inner();
    let actor = who.actor();
    store
        .write(move |tx| {
            let grant = store::grants::grant(tx, &id)?
                .filter(|g| {
                    g.revoked_at.is_none()
                        && (user.is_admin() || g.user_id.as_deref() == Some(user.id.as_str()))
                })
                .ok_or_else(|| ApiError::NotFound("grant not found".into()))?;
            store::grants::revoke_grant(tx, &grant.id, domain::now())?;
            store::audit::record(
                tx,
                &actor,
                "grant.revoke",
                Some(&grant.id),
                None,
                Some(&json!({ "clientId": grant.client_id })),
            )?;
            revoked.revoke(&grant.id);
            Ok::<_, ApiError>(())
        })
        .await?;
    Ok(no_content())
}
