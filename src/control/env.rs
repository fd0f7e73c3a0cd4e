//! A server's environment variables. Values are sealed with the master key and never returned.
//! Writing them changes what runs, so it needs `deployments:write`; names that make programs
//! load code are refused ([`crate::domain::env_rules`]).

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use super::auth::{Principal, server_access};
use super::{ListQuery, data, no_content, server_list};
use crate::crypto::MasterKey;
use crate::domain::scopes::ApiScope;
use crate::domain::{self, Secret, env_rules};
use crate::error::ApiError;
use crate::store::{self, Store, env_vars::EnvVarRow};

const MAX_VALUE: usize = 32 * 1024;
/// Per server. A process's environment shares the kernel's ~2 MiB exec limit with its
/// arguments; past it the process would not start at all.
const MAX_VARS: usize = 500;
const MAX_TOTAL: usize = 256 * 1024;

fn env_json(e: &EnvVarRow) -> serde_json::Value {
    // A row stored before its name was refused: listed, never passed to a process.
    let refused = env_rules::refusal(&e.name);
    json!({ "name": e.name, "createdAt": domain::rfc3339(e.created_at), "updatedAt": domain::rfc3339(e.updated_at), "refused": refused })
}

fn check_name(name: &str) -> Result<(), ApiError> {
    let mut chars = name.chars();
    let ok = name.len() <= 128
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !ok {
        return Err(ApiError::validation(
            "name",
            "must match [A-Za-z_][A-Za-z0-9_]*, at most 128 characters",
        ));
    }
    match env_rules::refusal(name) {
        Some(why) => Err(ApiError::validation("name", why)),
        None => Ok(()),
    }
}

fn check_value(v: &Secret) -> Result<(), ApiError> {
    if v.expose().len() > MAX_VALUE || v.expose().contains('\0') {
        return Err(ApiError::validation(
            "value",
            "must be at most 32 KiB, without NUL characters",
        ));
    }
    Ok(())
}

/// Whether the server's variables, with `name` set to a value of `len` bytes, stay within
/// [`MAX_VARS`] and [`MAX_TOTAL`] (names and values).
fn check_room(
    tx: &rusqlite::Connection,
    server_id: &str,
    name: &str,
    len: usize,
) -> Result<(), ApiError> {
    let others: Vec<(String, usize)> = store::env_vars::sealed_lengths(tx, server_id)?
        .into_iter()
        .filter(|(n, _)| n != name)
        .collect();
    if others.len() >= MAX_VARS {
        return Err(ApiError::validation(
            "name",
            format!("a server has at most {MAX_VARS} env vars; delete one first"),
        ));
    }
    let total = others
        .iter()
        .map(|(n, sealed)| n.len() + crate::crypto::MasterKey::plaintext_len(*sealed))
        .sum::<usize>()
        + name.len()
        + len;
    if total > MAX_TOTAL {
        return Err(ApiError::validation(
            "value",
            format!(
                "a server's env vars (names and values) total at most {} KiB; this would make {} bytes",
                MAX_TOTAL / 1024,
                total
            ),
        ));
    }
    Ok(())
}

pub async fn list(
    store: web::Data<Store>,
    who: Principal,
    path: web::Path<String>,
    q: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let key = path.into_inner();
    let fetch = store::env_vars::list;
    server_list(&store, who, key, &q, ApiScope::ServersRead, fetch, env_json).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateEnv {
    name: Option<String>,
    value: Option<Secret>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutEnv {
    value: Option<Secret>,
}

/// Writes one variable; `must_be_new` makes an existing name a 409. Returns (row, created).
async fn write(
    store: &Store,
    master_key: web::Data<MasterKey>,
    who: Principal,
    server_key: String,
    name: String,
    value: Secret,
    must_be_new: bool,
) -> Result<(EnvVarRow, bool), ApiError> {
    check_name(&name)?;
    check_value(&value)?;
    let actor = who.actor();
    store
        .write(move |tx| {
            let (server, _) = server_access(tx, &who, &server_key)?;
            let existing = store::env_vars::find(tx, &server.id, &name)?;
            if must_be_new && existing.is_some() {
                return Err(ApiError::Conflict(format!(
                    "{name} is already set; use PUT to replace it"
                )));
            }
            check_room(tx, &server.id, &name, value.expose().len())?;
            let sealed = master_key.seal(
                value.expose().as_bytes(),
                &crate::domain::env_rules::seal_context(&server.id, &name),
            );
            let now = domain::now();
            store::env_vars::upsert(tx, &domain::new_id("env_"), &server.id, &name, &sealed, now)?;
            let action = if existing.is_some() {
                "env.replace"
            } else {
                "env.create"
            };
            store::audit::record(
                tx,
                &actor,
                action,
                Some(&server.id),
                Some(&server.project_id),
                Some(&json!({ "name": name })),
            )?;
            let row = store::env_vars::find(tx, &server.id, &name)?
                .ok_or_else(|| ApiError::NotFound("env var not found".into()))?;
            Ok((row, existing.is_none()))
        })
        .await
}

pub async fn create(
    store: web::Data<Store>,
    master_key: web::Data<MasterKey>,
    who: Principal,
    path: web::Path<String>,
    body: web::Json<CreateEnv>,
) -> Result<HttpResponse, ApiError> {
    who.require(ApiScope::DeploymentsWrite)?;
    let b = body.into_inner();
    let name = b
        .name
        .ok_or_else(|| ApiError::validation("name", "required"))?;
    let value = b
        .value
        .ok_or_else(|| ApiError::validation("value", "required"))?;
    let (row, _) = write(
        &store,
        master_key,
        who,
        path.into_inner(),
        name,
        value,
        true,
    )
    .await?;
    Ok(data(StatusCode::CREATED, env_json(&row)))
}

pub async fn put(
    store: web::Data<Store>,
    master_key: web::Data<MasterKey>,
    who: Principal,
    path: web::Path<(String, String)>,
    body: web::Json<PutEnv>,
) -> Result<HttpResponse, ApiError> {
    who.require(ApiScope::DeploymentsWrite)?;
    let (server, name) = path.into_inner();
    let value = body
        .into_inner()
        .value
        .ok_or_else(|| ApiError::validation("value", "required"))?;
    let (row, created) = write(&store, master_key, who, server, name, value, false).await?;
    Ok(data(
        if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        env_json(&row),
    ))
}

pub async fn delete(
    store: web::Data<Store>,
    who: Principal,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    who.require(ApiScope::DeploymentsWrite)?;
    let (key, name) = path.into_inner();
    let actor = who.actor();
    store
        .write(move |tx| {
            let (server, _) = server_access(tx, &who, &key)?;
            if !store::env_vars::delete(tx, &server.id, &name)? {
                return Err(ApiError::NotFound("env var not found".into()));
            }
            store::audit::record(
                tx,
                &actor,
                "env.delete",
                Some(&server.id),
                Some(&server.project_id),
                Some(&json!({ "name": name })),
            )?;
            Ok::<_, ApiError>(())
        })
        .await?;
    Ok(no_content())
}
