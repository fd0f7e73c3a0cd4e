//! OAuth clients allowed for a server (session only): registered by name and redirect URIs,
//! or pre-registered by the URL of their Client ID Metadata Document. Only the project's owners
//! and instance admins may mark one `trusted` (consent skipped).

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use rusqlite::Connection;
use serde::Deserialize;
use serde_json::json;

use super::auth::{Principal, server_access};
use super::{data, no_content};
use crate::crypto;
use crate::domain::scopes::MCP_READ;
use crate::domain::{self, Secret, validate};
use crate::error::ApiError;
use crate::services::revocations::RevokedGrants;
use crate::store::audit::Actor;
use crate::store::{self, Store, clients::ClientRow};

pub fn client_json(c: &ClientRow) -> serde_json::Value {
    let redirect_uris: serde_json::Value =
        serde_json::from_str(&c.redirect_uris).unwrap_or_else(|_| json!([]));
    json!({
        "id": c.id,
        "clientId": c.client_id,
        "name": c.name,
        "redirectUris": redirect_uris,
        "scopes": c.scopes.split_whitespace().collect::<Vec<_>>(),
        "isDynamic": c.is_dynamic,
        "trusted": c.trusted,
        "confidential": c.secret_hash.is_some(),
        "clientMetadataUrl": c.metadata_url,
        "createdAt": domain::rfc3339(c.created_at),
    })
}

pub async fn list(
    store: web::Data<Store>,
    who: Principal,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    who.session()?;
    let key = path.into_inner();
    let clients = store
        .run(move |c| {
            let (server, _) = server_access(c, &who, &key)?;
            Ok::<_, ApiError>(store::clients::for_server(c, &server.id)?)
        })
        .await?;
    Ok(data(
        StatusCode::OK,
        clients.iter().map(client_json).collect::<Vec<_>>(),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateClient {
    name: Option<String>,
    redirect_uris: Option<Vec<String>>,
    scopes: Option<Vec<String>>,
    trusted: Option<bool>,
    confidential: Option<bool>,
    client_metadata_url: Option<String>,
}

/// A Client ID Metadata Document URL: https with a path, no fragment (draft-ietf-oauth-client-id-metadata-document).
pub fn metadata_url(s: &str) -> Result<String, String> {
    let url = validate::https_url(s)?;
    if url.path() == "/" || url.path().is_empty() {
        return Err("must have a path".into());
    }
    Ok(url.to_string())
}

pub async fn create(
    store: web::Data<Store>,
    who: Principal,
    path: web::Path<String>,
    body: web::Json<CreateClient>,
) -> Result<HttpResponse, ApiError> {
    who.session()?;
    let (row, secret) = new_client(body.into_inner(), domain::now())?;
    let key = path.into_inner();
    let actor = who.actor();
    let row = store
        .write(move |tx| register(tx, &who, &actor, &key, row))
        .await?;
    let mut body = client_json(&row);
    if let Some(s) = secret {
        body["clientSecret"] = json!(s.expose());
    }
    Ok(data(StatusCode::CREATED, body))
}

/// The client a body asks for, validated, before any server is looked at; with its secret
/// when confidential (shown once).
fn new_client(b: CreateClient, now: i64) -> Result<(ClientRow, Option<Secret>), ApiError> {
    let scopes = requested_scopes(b.scopes.as_deref())?;
    let mut row = ClientRow {
        id: domain::new_id("oac_"),
        client_id: String::new(),
        server_id: None,
        name: String::new(),
        redirect_uris: "[]".into(),
        scopes: scopes.join(" "),
        trusted: b.trusted.unwrap_or(false),
        is_dynamic: false,
        secret_hash: None,
        metadata_url: None,
        created_at: now,
        updated_at: now,
        last_used_at: None,
        registration_token_hash: None,
        auth_method: "none".into(),
        grant_types: "authorization_code refresh_token".into(),
        application_type: "web".into(),
        metadata: None,
        created_by: None,
    };
    let secret = match b.client_metadata_url {
        Some(url) => {
            if b.redirect_uris.is_some() || b.confidential.is_some() {
                return Err(ApiError::validation(
                    "clientMetadataUrl",
                    "comes alone: redirect URIs and authentication are in the metadata document",
                ));
            }
            by_metadata_url(&mut row, &url, b.name)?;
            None
        }
        None => by_redirect_uris(&mut row, b.name, b.redirect_uris, b.confidential)?,
    };
    Ok((row, secret))
}

/// `scopes`: `mcp:read` when absent; else at least one, each a scope token.
fn requested_scopes(scopes: Option<&[String]>) -> Result<Vec<String>, ApiError> {
    match scopes {
        None => Ok(vec![MCP_READ.to_owned()]),
        Some([]) => Err(ApiError::validation("scopes", "must not be empty")),
        Some(list) => list
            .iter()
            .map(|s| validate::scope_token(s).map_err(|e| ApiError::validation("scopes", e)))
            .collect(),
    }
}

/// A client pre-registered by its metadata document's URL, which is its client id (and its
/// name unless one is given).
fn by_metadata_url(row: &mut ClientRow, url: &str, name: Option<String>) -> Result<(), ApiError> {
    let url = metadata_url(url).map_err(|e| ApiError::validation("clientMetadataUrl", e))?;
    row.name = name
        .map(|n| validate::name(&n, 255).map_err(|e| ApiError::validation("name", e)))
        .transpose()?
        .unwrap_or_else(|| url.clone());
    row.client_id = url.clone();
    row.metadata_url = Some(url);
    row.is_dynamic = true;
    Ok(())
}

/// A client registered by name and redirect URIs, under a new client id; confidential ones
/// get a secret (returned) and may use `client_credentials`.
fn by_redirect_uris(
    row: &mut ClientRow,
    name: Option<String>,
    uris: Option<Vec<String>>,
    confidential: Option<bool>,
) -> Result<Option<Secret>, ApiError> {
    row.name = super::fields::required_name(name.as_deref())?;
    let uris = uris.ok_or_else(|| ApiError::validation("redirectUris", "required"))?;
    if uris.is_empty() || uris.len() > 20 {
        return Err(ApiError::validation(
            "redirectUris",
            "must hold 1 to 20 URIs",
        ));
    }
    for (i, u) in uris.iter().enumerate() {
        validate::redirect_uri(u)
            .map_err(|e| ApiError::validation(&format!("redirectUris[{i}]"), e))?;
    }
    row.redirect_uris = serde_json::to_string(&uris).map_err(|e| ApiError::Internal(e.into()))?;
    row.client_id = format!("client_{}", domain::base32(&domain::random_bytes::<15>()));
    if !confidential.unwrap_or(false) {
        return Ok(None);
    }
    let s = crypto::new_token("ezf_cs_");
    row.secret_hash = Some(crypto::token_hash(s.expose()));
    row.auth_method = "client_secret_basic".into();
    row.grant_types = "authorization_code refresh_token client_credentials".into();
    Ok(Some(s))
}

/// Registers `row` for the server `key` names, if the caller may (blocking, in the caller's
/// transaction).
fn register(
    tx: &Connection,
    who: &Principal,
    actor: &Actor,
    key: &str,
    mut row: ClientRow,
) -> Result<ClientRow, ApiError> {
    let (server, access) = server_access(tx, who, key)?;
    // A trusted client skips consent for everyone, admins included: the project's
    // owners decide that, not any member.
    if row.trusted && !access.owner {
        return Err(ApiError::Forbidden {
            message: "trusted: only an owner of the project or an instance admin may register a trusted client (it skips the consent page)".into(),
            required_scope: None,
        });
    }
    if store::clients::find(tx, &row.client_id)?.is_some() {
        return Err(ApiError::Conflict(format!(
            "the client {} is already registered",
            row.client_id
        )));
    }
    row.server_id = Some(server.id.clone());
    // Registration is session-only: the actor is a user, whose leaving removes the client.
    row.created_by = Some(actor.id.clone());
    store::clients::insert(tx, &row)?;
    let details = json!({ "clientId": row.client_id, "name": row.name, "trusted": row.trusted });
    store::audit::record(
        tx,
        actor,
        "client.create",
        Some(&row.id),
        Some(&server.project_id),
        Some(&details),
    )?;
    Ok(row)
}

pub async fn delete(
    store: web::Data<Store>,
    revoked: web::Data<RevokedGrants>,
    who: Principal,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    who.session()?;
    let (key, client_key) = path.into_inner();
    let actor = who.actor();
    store
        .write(move |tx| {
            let (server, _) = server_access(tx, &who, &key)?;
            let client = store::clients::find(tx, &client_key)?
                .filter(|cl| cl.server_id.as_deref() == Some(server.id.as_str()))
                .ok_or_else(|| ApiError::NotFound("client not found".into()))?;
            for gid in store::grants::live_grant_ids(tx, Some(&server.id), Some(&client.client_id))?
            {
                store::grants::revoke_grant(tx, &gid, domain::now())?;
                revoked.revoke(&gid);
            }
            // Its client_credentials tokens belong to no grant: remembered by client.
            revoked.revoke_deleted(tx, Vec::new(), std::slice::from_ref(&client.client_id))?;
            store::clients::delete(tx, &client.id)?;
            store::audit::record(
                tx,
                &actor,
                "client.delete",
                Some(&client.id),
                Some(&server.project_id),
                Some(&json!({ "clientId": client.client_id })),
            )?;
            Ok::<_, ApiError>(())
        })
        .await?;
    Ok(no_content())
}
