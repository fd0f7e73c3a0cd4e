//! API keys: `ezf_live_`/`ezf_test_` + 43 random characters, shown once, stored as SHA-256.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use super::ControlState;
use super::auth::{
    Credential, KeyUsage, LIVE_KEY_PREFIX, Principal, TEST_KEY_PREFIX, project_access,
};
use super::{ListQuery, data, list as list_page, no_content, time};
use crate::crypto;
use crate::domain::scopes::{ApiScope, ApiScopes};
use crate::domain::{self, Secret};
use crate::error::ApiError;
use crate::store::{self, Store, api_keys::ApiKeyRow};

fn key_json(usage: &KeyUsage, k: &ApiKeyRow) -> serde_json::Value {
    json!({
        "id": k.id,
        "projectId": k.project_id,
        "name": k.name,
        "prefix": k.prefix,
        "scopes": ApiScopes::from_stored(&k.scopes).names(),
        "environment": k.environment,
        "expiresAt": time(k.expires_at),
        "lastUsedAt": time(usage.latest(&k.id, k.last_used_at)),
        "createdAt": domain::rfc3339(k.created_at),
    })
}

pub async fn list(
    store: web::Data<Store>,
    control: web::Data<ControlState>,
    who: Principal,
    path: web::Path<String>,
    q: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    who.require(ApiScope::ServersRead)?;
    let page = q.page()?;
    let key = path.into_inner();
    let keys = store
        .run(move |c| {
            let access = project_access(c, &who, &key)?;
            Ok::<_, ApiError>(store::api_keys::list(c, &access.project.id, &page)?)
        })
        .await?;
    Ok(list_page(keys, |k| key_json(&control.key_usage, k)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateKey {
    name: Option<String>,
    scopes: Option<Vec<String>>,
    expires_at: Option<String>,
    environment: Option<String>,
}

pub async fn create(
    store: web::Data<Store>,
    control: web::Data<ControlState>,
    who: Principal,
    path: web::Path<String>,
    body: web::Json<CreateKey>,
) -> Result<HttpResponse, ApiError> {
    who.require(ApiScope::ServersWrite)?;
    let now = domain::now();
    let new = NewKey::from_body(&who, body.into_inner(), now)?;
    let secret = crypto::new_token(new.prefix);
    let hash = crypto::token_hash(secret.expose());
    let actor = who.actor();
    let key = path.into_inner();
    let row = store
        .write(move |tx| {
            let access = project_access(tx, &who, &key)?;
            let row = new.row(&access.project.id, &actor.id, &secret, now);
            store::api_keys::insert(tx, &row, &hash)?;
            let details = json!({
                "name": row.name, "scopes": new.scopes.names(), "environment": new.environment,
            });
            store::audit::record(
                tx,
                &actor,
                "api_key.create",
                Some(&row.id),
                Some(&row.project_id),
                Some(&details),
            )?;
            Ok::<_, ApiError>((row, secret))
        })
        .await?;
    let (row, secret) = row;
    let mut body = key_json(&control.key_usage, &row);
    body["key"] = json!(secret.expose());
    Ok(data(StatusCode::CREATED, body))
}

/// A key a body asks for, validated, and within what the caller may give it.
struct NewKey {
    name: String,
    scopes: ApiScopes,
    expires_at: Option<i64>,
    environment: &'static str,
    prefix: &'static str,
}

impl NewKey {
    fn from_body(who: &Principal, body: CreateKey, now: i64) -> Result<Self, ApiError> {
        let name = super::fields::required_name(body.name.as_deref())?;
        let scopes = requested_scopes(body.scopes)?;
        // A key can never mint a key with scopes it lacks.
        if let Credential::Key(k) = &who.credential
            && let Some(missing) = scopes.iter().find(|s| !k.scopes.contains(*s))
        {
            return Err(ApiError::forbidden_scope(missing.as_str()));
        }
        let expires_at = expiry(who, body.expires_at.as_deref(), now)?;
        let (environment, prefix) = match body.environment.as_deref().unwrap_or("live") {
            "live" => ("live", LIVE_KEY_PREFIX),
            "test" => ("test", TEST_KEY_PREFIX),
            _ => {
                return Err(ApiError::validation(
                    "environment",
                    "must be \"live\" or \"test\"",
                ));
            }
        };
        Ok(NewKey {
            name,
            scopes,
            expires_at,
            environment,
            prefix,
        })
    }

    /// The row of this key, in `project_id`, made by `created_by`, for `secret`.
    fn row(&self, project_id: &str, created_by: &str, secret: &Secret, now: i64) -> ApiKeyRow {
        ApiKeyRow {
            id: domain::new_id("key_"),
            project_id: project_id.to_owned(),
            name: self.name.clone(),
            prefix: secret
                .expose()
                .chars()
                .take(self.prefix.len() + 4)
                .collect(),
            scopes: self.scopes.to_stored(),
            environment: self.environment.into(),
            created_by: created_by.to_owned(),
            created_at: now,
            expires_at: self.expires_at,
            last_used_at: None,
        }
    }
}

/// `scopes`: required, at least one, each a known API scope.
fn requested_scopes(requested: Option<Vec<String>>) -> Result<ApiScopes, ApiError> {
    let requested = requested.ok_or_else(|| ApiError::validation("scopes", "required"))?;
    if requested.is_empty() {
        return Err(ApiError::validation(
            "scopes",
            "must name at least one scope",
        ));
    }
    let mut scopes = ApiScopes::default();
    for s in &requested {
        let scope = ApiScope::parse(s).ok_or_else(|| {
            let known: Vec<&str> = ApiScope::ALL.iter().map(|s| s.as_str()).collect();
            ApiError::validation(
                "scopes",
                format!("unknown scope {s:?}; known: {}", known.join(", ")),
            )
        })?;
        scopes.insert(scope);
    }
    Ok(scopes)
}

/// `expiresAt`: absent, or an RFC 3339 time in the future; never later than the expiry of the
/// key making it, and that expiry when absent.
fn expiry(who: &Principal, expires_at: Option<&str>, now: i64) -> Result<Option<i64>, ApiError> {
    let expires_at = match expires_at {
        None => None,
        Some(t) => {
            let at = domain::parse_rfc3339(t).ok_or_else(|| {
                ApiError::validation(
                    "expiresAt",
                    "must be an RFC 3339 time with Z or an offset (2030-01-01T00:00:00Z)",
                )
            })?;
            if at <= now {
                return Err(ApiError::validation("expiresAt", "must be in the future"));
            }
            Some(at)
        }
    };
    // Nor one that outlives it: a key's keys expire with it at the latest (and are revoked
    // with it).
    match (&who.credential, expires_at) {
        (Credential::Key(k), Some(at)) if k.expires_at.is_some_and(|parent| at > parent) => {
            Err(ApiError::validation(
                "expiresAt",
                "must not be later than the expiry of the key making it",
            ))
        }
        (Credential::Key(k), None) => Ok(k.expires_at),
        (_, at) => Ok(at),
    }
}

pub async fn revoke(
    store: web::Data<Store>,
    control: web::Data<ControlState>,
    who: Principal,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    who.require(ApiScope::ServersWrite)?;
    let id = path.into_inner();
    let actor = who.actor();
    store
        .write(move |tx| {
            let key = store::api_keys::by_id(tx, &id)?
                .ok_or_else(|| ApiError::NotFound("API key not found".into()))?;
            // Visible only to those who can see its project.
            project_access(tx, &who, &key.project_id)
                .map_err(|_| ApiError::NotFound("API key not found".into()))?;
            // The keys it made (and theirs) go with it: whoever held it may have made them.
            let minted = store::api_keys::minted_by(tx, &key.id)?;
            for id in minted.iter().chain([&key.id]) {
                store::api_keys::delete(tx, id)?;
            }
            let details = (!minted.is_empty()).then(|| json!({ "alsoRevoked": minted }));
            store::audit::record(
                tx,
                &actor,
                "api_key.revoke",
                Some(&key.id),
                Some(&key.project_id),
                details.as_ref(),
            )?;
            Ok::<_, ApiError>(())
        })
        .await?;
    control.access_changed();
    Ok(no_content())
}
