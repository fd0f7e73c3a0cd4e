//! `GET /v1/audit` (admins): who did what, when, from where. Newest first.

use actix_web::{HttpResponse, web};
use serde_json::json;

use super::auth::Principal;
use super::{ListQuery, list as list_page};
use crate::domain;
use crate::error::ApiError;
use crate::store::{self, Store, audit::AuditRow};

fn audit_json(a: &AuditRow) -> serde_json::Value {
    let details: serde_json::Value = a
        .details
        .as_deref()
        .and_then(|d| serde_json::from_str(d).ok())
        .unwrap_or(serde_json::Value::Null);
    json!({
        "id": a.id,
        "at": domain::rfc3339(a.at),
        "actor": a.actor,
        "action": a.action,
        "target": a.target,
        "projectId": a.project_id,
        "address": a.address,
        "details": details,
    })
}

pub async fn list(
    store: web::Data<Store>,
    who: Principal,
    q: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    who.admin()?;
    let page = q.page()?;
    if page
        .after
        .as_deref()
        .is_some_and(|a| a.parse::<i64>().is_err())
    {
        return Err(ApiError::BadRequest(
            "cursor: not a cursor this API returned".into(),
        ));
    }
    let rows = store.run(move |c| store::audit::list(c, &page)).await?;
    Ok(list_page(rows, audit_json))
}
