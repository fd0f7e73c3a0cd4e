//! `GET/PATCH /v1/servers/:id/auth` (session only): `ezforge_managed` or `byoa` with an
//! external issuer's four endpoints.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use super::auth::{Principal, owner_only, server_access};
use super::data;
use super::servers::refuse_if_declared;
use crate::config::{AuthMode, ByoaConfig, Config};
use crate::deploy::Deployer;
use crate::domain::kinds::ServerAuthMode;
use crate::domain::{self, validate};
use crate::error::ApiError;
use crate::outbound::Outbound;
use crate::services::gateway::Gateway;
use crate::store::{self, Store, servers::ServerRow};

fn byoa_json(b: &ByoaConfig) -> serde_json::Value {
    json!({
        "authorizationEndpoint": b.authorization_endpoint,
        "tokenEndpoint": b.token_endpoint,
        "jwksUri": b.jwks_uri,
        "issuer": b.issuer,
    })
}

/// The BYOA config in force for a server: its own, else the deployment's default.
pub fn effective_byoa(config: &Config, s: &ServerRow) -> Option<ByoaConfig> {
    if s.auth_mode != ServerAuthMode::Byoa {
        return None;
    }
    s.byoa_config
        .as_deref()
        .and_then(|j| serde_json::from_str(j).ok())
        .or_else(|| config.auth.byoa.clone())
}

fn auth_json(config: &Config, s: &ServerRow) -> serde_json::Value {
    json!({
        "authMode": s.auth_mode,
        "byoaConfig": effective_byoa(config, s).as_ref().map(byoa_json),
    })
}

pub async fn get(
    store: web::Data<Store>,
    config: web::Data<Config>,
    who: Principal,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    who.session()?;
    let key = path.into_inner();
    let (server, _) = store.run(move |c| server_access(c, &who, &key)).await?;
    Ok(data(StatusCode::OK, auth_json(&config, &server)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ByoaBody {
    authorization_endpoint: Option<String>,
    token_endpoint: Option<String>,
    jwks_uri: Option<String>,
    issuer: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AuthBody {
    auth_mode: Option<String>,
    byoa_config: Option<ByoaBody>,
}

/// docs/api.md's rules: all four fields, each an absolute https URL, the issuer without query or
/// fragment. Errors name the field as `byoaConfig.<name>`.
pub fn validate_byoa(b: ByoaBody) -> Result<ByoaConfig, ApiError> {
    let field = |name: &str, v: Option<String>, check: fn(&str) -> Result<url::Url, String>| {
        let path = format!("byoaConfig.{name}");
        let v = v
            .filter(|s| !s.is_empty())
            .ok_or_else(|| ApiError::validation(&path, "required"))?;
        check(&v).map_err(|e| ApiError::validation(&path, e))?;
        Ok::<_, ApiError>(v)
    };
    Ok(ByoaConfig {
        authorization_endpoint: field(
            "authorizationEndpoint",
            b.authorization_endpoint,
            validate::https_url,
        )?,
        token_endpoint: field("tokenEndpoint", b.token_endpoint, validate::https_url)?,
        jwks_uri: field("jwksUri", b.jwks_uri, validate::https_url)?,
        issuer: field("issuer", b.issuer, validate::issuer)?,
    })
}

#[allow(
    clippy::too_many_arguments,
    reason = "a handler lists the services it uses, one extractor each"
)]
pub async fn update(
    store: web::Data<Store>,
    config: web::Data<Config>,
    gateway: web::Data<Gateway>,
    outbound: web::Data<Outbound>,
    deployer: web::Data<Deployer>,
    who: Principal,
    path: web::Path<String>,
    body: web::Json<AuthBody>,
) -> Result<HttpResponse, ApiError> {
    who.session()?;
    let (mode, byoa) = requested_mode(&config, &gateway, body.into_inner())?;
    let key = path.into_inner();
    let actor = who.actor();
    let declared_in = config.clone();
    let server = store
        .write(move |tx| {
            let (mut server, access) = server_access(tx, &who, &key)?;
            // Whoever names the issuer decides who its tokens say the caller is (the `sub` an
            // upstream reads in its assertion): an owner's call, as a trusted client is.
            if !access.owner {
                return Err(owner_only());
            }
            refuse_if_declared(&declared_in, &server)?;
            server.auth_mode = mode;
            server.byoa_config = byoa.as_ref().and_then(|b| serde_json::to_string(b).ok());
            server.updated_at = domain::now();
            store::servers::update(tx, &server)?;
            let details =
                json!({ "authMode": mode, "issuer": byoa.as_ref().map(|b| b.issuer.clone()) });
            store::audit::record(
                tx,
                &actor,
                "server.auth.update",
                Some(&server.id),
                Some(&server.project_id),
                Some(&details),
            )?;
            Ok::<_, ApiError>(server)
        })
        .await?;
    gateway.servers_changed().await;
    let mut body = json!({ "data": auth_json(&config, &server) });
    if let Some(cfg) = effective_byoa(&config, &server) {
        // The switch is made; what would make it fail is said now, not at the first token.
        let warnings = crate::services::gateway::issuer_check::warnings(&outbound, &cfg).await;
        if !warnings.is_empty() {
            for w in &warnings {
                deployer
                    .hub
                    .write(&server.id, "warn", "auth", format!("BYOA issuer: {w}"));
            }
            body["warnings"] = json!(warnings);
        }
    }
    Ok(HttpResponse::Ok().json(body))
}

/// The mode a body asks for, and its BYOA config when `byoa`: valid, and possible here.
fn requested_mode(
    config: &Config,
    gateway: &Gateway,
    body: AuthBody,
) -> Result<(ServerAuthMode, Option<ByoaConfig>), ApiError> {
    match body.auth_mode.as_deref() {
        None => Err(ApiError::validation("authMode", "required")),
        Some("ezforge_managed") => {
            if config.auth.mode == AuthMode::Byoa {
                return Err(ApiError::Conflict(
                    "this deployment runs with auth.mode = \"byoa\": it has no built-in authorization server".into(),
                ));
            }
            Ok((ServerAuthMode::Managed, None))
        }
        Some("byoa") => {
            let b = body.byoa_config.ok_or_else(|| {
                ApiError::validation("byoaConfig", "required when authMode is byoa")
            })?;
            let cfg = validate_byoa(b)?;
            // Tokens naming our issuer (the root one, or a managed server's own) are ours:
            // another key set must not vouch for them.
            if gateway.urls.is_our_issuer(cfg.issuer.trim_end_matches('/')) {
                return Err(ApiError::validation(
                    "byoaConfig.issuer",
                    "is this server's own issuer; use authMode ezforge_managed",
                ));
            }
            Ok((ServerAuthMode::Byoa, Some(cfg)))
        }
        Some(_) => Err(ApiError::validation(
            "authMode",
            "must be \"ezforge_managed\" or \"byoa\"",
        )),
    }
}
