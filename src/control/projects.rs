//! Projects and their members.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use super::ControlState;
use super::auth::{Credential, Principal, owner_only, project_access};
use super::{ListQuery, data, list as list_page, no_content};
use crate::domain::kinds::{ProjectRole, UserRole};
use crate::domain::{self, validate, validate::Slug};
use crate::error::ApiError;
use crate::services::revocations::RevokedGrants;
use crate::store::{self, Store, projects::ProjectRow};

pub fn project_json(p: &ProjectRow, role: Option<ProjectRole>) -> serde_json::Value {
    json!({
        "id": p.id,
        "name": p.name,
        "slug": p.slug,
        "role": role,
        "managedBy": p.managed_by,
        "createdAt": domain::rfc3339(p.created_at),
        "updatedAt": domain::rfc3339(p.updated_at),
    })
}

pub async fn list(
    store: web::Data<Store>,
    who: Principal,
    q: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let page = q.page()?;
    let (member, only) = match &who.credential {
        Credential::Session(u) if u.is_admin() => (None, None),
        Credential::Session(u) => (Some(u.id.clone()), None),
        Credential::Key(k) => (None, Some(k.project_id.clone())),
    };
    let projects = store
        .run(move |c| store::projects::list(c, member.as_deref(), only.as_deref(), &page))
        .await?;
    Ok(list_page(projects, |(p, role)| project_json(p, *role)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateProject {
    name: Option<String>,
    slug: Option<String>,
}

pub async fn create(
    store: web::Data<Store>,
    who: Principal,
    body: web::Json<CreateProject>,
) -> Result<HttpResponse, ApiError> {
    let user = who.session()?.clone();
    let body = body.into_inner();
    let name = super::fields::required_name(body.name.as_deref())?;
    let slug = match body.slug.as_deref() {
        Some(s) => Slug::parse(s).map_err(|e| ApiError::validation("slug", e))?,
        None => Slug::derive(&name).ok_or_else(|| {
            ApiError::validation("slug", "cannot be derived from the name; give one")
        })?,
    };
    let now = domain::now();
    let project = ProjectRow {
        id: domain::new_id("proj_"),
        name,
        slug: slug.into_string(),
        managed_by: "api".into(),
        created_at: now,
        updated_at: now,
    };
    let row = project.clone();
    let actor = who.actor();
    store
        .write(move |tx| {
            if store::projects::find(tx, &row.slug)?.is_some() {
                return Err(ApiError::Conflict(format!(
                    "the slug {} is taken",
                    row.slug
                )));
            }
            store::projects::insert(tx, &row)?;
            store::projects::add_member(tx, &row.id, &user.id, ProjectRole::Owner, now)?;
            store::audit::record(
                tx,
                &actor,
                "project.create",
                Some(&row.id),
                Some(&row.id),
                Some(&json!({ "slug": row.slug })),
            )?;
            Ok(())
        })
        .await?;
    Ok(data(
        StatusCode::CREATED,
        project_json(&project, Some(ProjectRole::Owner)),
    ))
}

pub async fn get(
    store: web::Data<Store>,
    who: Principal,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    who.session()?;
    let key = path.into_inner();
    let access = store.run(move |c| project_access(c, &who, &key)).await?;
    Ok(data(
        StatusCode::OK,
        project_json(&access.project, access.role),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateProject {
    name: Option<String>,
    slug: Option<String>,
}

pub async fn update(
    store: web::Data<Store>,
    who: Principal,
    path: web::Path<String>,
    body: web::Json<UpdateProject>,
) -> Result<HttpResponse, ApiError> {
    who.session()?;
    let body = body.into_inner();
    let name = body
        .name
        .as_deref()
        .map(|n| validate::name(n, 255).map_err(|e| ApiError::validation("name", e)))
        .transpose()?;
    let key = path.into_inner();
    let actor = who.actor();
    let (project, role) = store
        .write(move |tx| {
            let access = project_access(tx, &who, &key)?;
            if !access.owner {
                return Err(owner_only());
            }
            if body
                .slug
                .as_deref()
                .is_some_and(|s| s != access.project.slug)
            {
                return Err(ApiError::validation("slug", "cannot be changed"));
            }
            if let Some(name) = &name {
                store::projects::update_name(tx, &access.project.id, name, domain::now())?;
                store::audit::record(
                    tx,
                    &actor,
                    "project.update",
                    Some(&access.project.id),
                    Some(&access.project.id),
                    None,
                )?;
            }
            let project = store::projects::find(tx, &access.project.id)?
                .ok_or_else(|| ApiError::NotFound("project not found".into()))?;
            Ok((project, access.role))
        })
        .await?;
    Ok(data(StatusCode::OK, project_json(&project, role)))
}

pub async fn delete(
    store: web::Data<Store>,
    who: Principal,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    who.session()?;
    let key = path.into_inner();
    let actor = who.actor();
    store
        .write(move |tx| {
            let access = project_access(tx, &who, &key)?;
            if !access.owner {
                return Err(owner_only());
            }
            let servers = store::projects::server_count(tx, &access.project.id)?;
            if servers > 0 {
                return Err(ApiError::Conflict(format!(
                    "the project still has {servers} server(s); delete them first"
                )));
            }
            store::projects::delete(tx, &access.project.id)?;
            store::audit::record(
                tx,
                &actor,
                "project.delete",
                Some(&access.project.id),
                Some(&access.project.id),
                None,
            )?;
            Ok(())
        })
        .await?;
    Ok(no_content())
}

fn member_json(m: &store::projects::MemberRow) -> serde_json::Value {
    json!({ "userId": m.user_id, "email": m.email, "role": m.role, "createdAt": domain::rfc3339(m.created_at) })
}

pub async fn members(
    store: web::Data<Store>,
    who: Principal,
    path: web::Path<String>,
    q: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    who.session()?;
    let page = q.page()?;
    let key = path.into_inner();
    let members = store
        .run(move |c| {
            let access = project_access(c, &who, &key)?;
            if !access.owner {
                return Err(owner_only());
            }
            Ok(store::projects::members(c, &access.project.id, &page)?)
        })
        .await?;
    Ok(list_page(members, member_json))
}

pub async fn remove_member(
    store: web::Data<Store>,
    revoked_grants: web::Data<RevokedGrants>,
    control: web::Data<ControlState>,
    who: Principal,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    who.session()?;
    let (key, user_id) = path.into_inner();
    let actor = who.actor();
    let refused = revoked_grants.clone();
    let revoked = store
        .write(move |tx| {
            let mut revoked = Vec::new();
            let access = project_access(tx, &who, &key)?;
            if !access.owner {
                return Err(owner_only());
            }
            let role = store::projects::member_role(tx, &access.project.id, &user_id)?
                .ok_or_else(|| ApiError::NotFound("member not found".into()))?;
            store::projects::remove_member(tx, &access.project.id, &user_id)?;
            if role == ProjectRole::Owner
                && store::projects::owner_count(tx, &access.project.id)? == 0
            {
                return Err(ApiError::Conflict(
                    "a project must keep at least one owner".into(),
                ));
            }
            // What they authorized on the project's servers ends with their membership, and
            // the invitations they sent as its owner are withdrawn (an admin keeps both through
            // their role).
            let mut withdrawn = 0;
            let mut made = json!({});
            if store::users::by_id(tx, &user_id)?.is_none_or(|u| u.role != UserRole::Admin) {
                let now = domain::now();
                for gid in
                    store::grants::live_grant_ids_in_project(tx, &user_id, &access.project.id)?
                {
                    store::grants::revoke_grant(tx, &gid, now)?;
                    revoked.push(gid);
                }
                withdrawn = super::membership::withdraw_sent_by(
                    tx,
                    &actor,
                    &user_id,
                    Some(&access.project.id),
                    "sender removed from the project",
                )?;
                // So do the keys and clients they made for it.
                made = super::membership::remove_made_by(
                    tx,
                    &refused,
                    &user_id,
                    Some(&access.project.id),
                )?;
            }
            made["invitationsWithdrawn"] = json!(withdrawn);
            store::audit::record(
                tx,
                &actor,
                "project.member.remove",
                Some(&user_id),
                Some(&access.project.id),
                Some(&made),
            )?;
            Ok(revoked)
        })
        .await?;
    revoked_grants.extend(revoked);
    control.access_changed();
    Ok(no_content())
}
