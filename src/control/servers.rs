//! MCP servers: create, list, get, update, delete. A server's `url` is its resource URI, the
//! audience its tokens are bound to.

use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use rusqlite::Connection;
use serde::Deserialize;
use serde_json::json;

use super::ControlState;
use super::auth::{Credential, Principal, project_access, server_access};
use super::{ListQuery, data, list as list_page, no_content, nullable};
use crate::config::{AuthMode, Config};
use crate::deploy::Deployer;
use crate::domain::kinds::{ServerAuthMode, ServerStatus};
use crate::domain::scopes::ApiScope;
use crate::domain::{self, validate, validate::Slug};
use crate::error::ApiError;
use crate::services::gateway::Gateway;
use crate::services::revocations::RevokedGrants;
use crate::shared::destinations::Destinations;
use crate::store::audit::Actor;
use crate::store::{self, Store, servers::ServerRow};

pub fn server_json(gateway: &Gateway, s: &ServerRow) -> serde_json::Value {
    let tool_scopes: serde_json::Value =
        serde_json::from_str(&s.tool_scopes).unwrap_or_else(|_| json!({}));
    let target = gateway
        .registry
        .get(&s.slug)
        .filter(|e| e.id == s.id)
        .and_then(|e| e.target.clone());
    let status = target
        .as_deref()
        .and_then(|t| t.status_override())
        .unwrap_or(s.status.as_str());
    json!({
        "id": s.id,
        "projectId": s.project_id,
        "name": s.name,
        "slug": s.slug,
        "status": status,
        // Why, when the status is one the API found out (an upstream that cannot be reached).
        "statusReason": target.as_deref().and_then(|t| t.unreachable()),
        "url": gateway.urls.resource(&s.slug),
        "subdomain": gateway.urls.subdomain(&s.slug),
        "authMode": s.auth_mode,
        "upstreamUrl": s.upstream_url,
        "healthCheckPath": s.health_check_path,
        "rollbackOnHealthCheckFailure": s.rollback_on_failure,
        "deploymentRetentionCount": s.retention_count,
        "autoStopSeconds": s.auto_stop_seconds,
        "toolScopes": tool_scopes,
        "managedBy": s.managed_by,
        "activeDeploymentId": target.as_deref().and_then(|t| t.deployment_id.clone()),
        "process": target.as_deref().map_or(serde_json::Value::Null, |t| t.process_json()),
        "rateLimit": s.rate_limit.as_deref().and_then(|r| serde_json::from_str::<crate::config::RateLimit>(r).ok())
            .map(|r| json!({ "perMinute": r.per_minute, "burst": r.burst })),
        "createdAt": domain::rfc3339(s.created_at),
        "updatedAt": domain::rfc3339(s.updated_at),
    })
}

pub async fn list(
    store: web::Data<Store>,
    gateway: web::Data<Gateway>,
    who: Principal,
    q: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    who.require(ApiScope::ServersRead)?;
    let page = q.page()?;
    let (project, member) = match &who.credential {
        Credential::Session(u) if u.is_admin() => (None, None),
        Credential::Session(u) => (None, Some(u.id.clone())),
        Credential::Key(k) => (Some(k.project_id.clone()), None),
    };
    let servers = store
        .run(move |c| store::servers::list(c, project.as_deref(), member.as_deref(), &page))
        .await?;
    Ok(list_page(servers, |s| server_json(&gateway, s)))
}

pub async fn list_in_project(
    store: web::Data<Store>,
    gateway: web::Data<Gateway>,
    who: Principal,
    path: web::Path<String>,
    q: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    who.require(ApiScope::ServersRead)?;
    let page = q.page()?;
    let key = path.into_inner();
    let servers = store
        .run(move |c| {
            let access = project_access(c, &who, &key)?;
            Ok::<_, ApiError>(store::servers::list(
                c,
                Some(&access.project.id),
                None,
                &page,
            )?)
        })
        .await?;
    Ok(list_page(servers, |s| server_json(&gateway, s)))
}

/// The mutable fields, shared by create and update.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServerFields {
    name: Option<String>,
    slug: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    upstream_url: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    health_check_path: Option<Option<String>>,
    rollback_on_health_check_failure: Option<bool>,
    deployment_retention_count: Option<i64>,
    #[serde(default, deserialize_with = "nullable")]
    auto_stop_seconds: Option<Option<i64>>,
    tool_scopes: Option<BTreeMap<String, String>>,
    #[serde(default, deserialize_with = "nullable")]
    rate_limit: Option<Option<RateLimitBody>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RateLimitBody {
    per_minute: u32,
    burst: u32,
}

/// Validates tool-name -> scope overrides; returns them as stored JSON.
pub fn tool_scopes_json(map: &BTreeMap<String, String>) -> Result<String, (String, String)> {
    if map.len() > 1000 {
        return Err(("toolScopes".into(), "at most 1000 entries".into()));
    }
    for (tool, scope) in map {
        validate::name(tool, 128)
            .map_err(|e| (format!("toolScopes.{tool}"), format!("tool name {e}")))?;
        validate::tool_scope(scope).map_err(|e| (format!("toolScopes.{tool}"), e))?;
    }
    serde_json::to_string(map).map_err(|e| ("toolScopes".into(), e.to_string()))
}

impl ServerFields {
    /// Applies the present fields to `s`, validating each (an upstream URL also against
    /// where upstreams may point).
    fn apply(self, s: &mut ServerRow, destinations: &Destinations) -> Result<(), ApiError> {
        if let Some(name) = self.name {
            s.name = validate::name(&name, 255).map_err(|e| ApiError::validation("name", e))?;
        }
        if let Some(url) = self.upstream_url {
            s.upstream_url = url
                .map(|u| upstream_url(destinations, &u, "upstreamUrl"))
                .transpose()?;
            s.status = if s.upstream_url.is_some() {
                ServerStatus::Running
            } else {
                ServerStatus::Stopped
            };
        }
        if let Some(path) = self.health_check_path {
            if let Some(p) = &path
                && (!p.starts_with('/')
                    || p.len() > 255
                    || p.chars().any(|c| c.is_control() || c == ' '))
            {
                return Err(ApiError::validation(
                    "healthCheckPath",
                    "must be a path starting with '/', at most 255 characters",
                ));
            }
            s.health_check_path = path;
        }
        if let Some(b) = self.rollback_on_health_check_failure {
            s.rollback_on_failure = b;
        }
        if let Some(n) = self.deployment_retention_count {
            if !(1..=100).contains(&n) {
                return Err(ApiError::validation(
                    "deploymentRetentionCount",
                    "must be between 1 and 100",
                ));
            }
            s.retention_count = n;
        }
        if let Some(secs) = self.auto_stop_seconds {
            if secs.is_some_and(|n| !(1..=30 * 86_400).contains(&n)) {
                return Err(ApiError::validation(
                    "autoStopSeconds",
                    "must be null or between 1 and 2592000",
                ));
            }
            s.auto_stop_seconds = secs;
        }
        if let Some(limit) = self.rate_limit {
            s.rate_limit = match limit {
                None => None,
                Some(r) => {
                    let limit = crate::config::RateLimit {
                        per_minute: r.per_minute,
                        burst: r.burst,
                    };
                    if limit.problem().is_some() {
                        return Err(ApiError::validation(
                            "rateLimit",
                            format!(
                                "perMinute and burst must be between 1 and {}",
                                crate::config::RateLimit::MAX
                            ),
                        ));
                    }
                    Some(serde_json::to_string(&limit).map_err(|e| ApiError::Internal(e.into()))?)
                }
            };
        }
        if let Some(map) = self.tool_scopes {
            s.tool_scopes = tool_scopes_json(&map).map_err(|(f, e)| ApiError::validation(&f, e))?;
        }
        Ok(())
    }
}

/// An upstream URL as given, once it is valid and its destination allowed; else 422 naming
/// `field` and the rule.
pub fn upstream_url(
    destinations: &Destinations,
    url: &str,
    field: &str,
) -> Result<String, ApiError> {
    let parsed = validate::upstream_url(url).map_err(|e| ApiError::validation(field, e))?;
    destinations
        .check_url(&parsed)
        .map_err(|e| ApiError::validation(field, format!("is refused: {e}")))?;
    Ok(String::from(parsed))
}

pub async fn create(
    store: web::Data<Store>,
    config: web::Data<Config>,
    gateway: web::Data<Gateway>,
    deployer: web::Data<Deployer>,
    who: Principal,
    path: web::Path<String>,
    body: web::Json<ServerFields>,
) -> Result<HttpResponse, ApiError> {
    who.require(ApiScope::ServersWrite)?;
    // A server made with an upstream takes traffic at once: a deployment, as a PATCH of its
    // upstream is (else deleting a server and making it again would repoint its URI).
    if matches!(body.upstream_url, Some(Some(_))) {
        who.require(ApiScope::DeploymentsWrite)?;
    }
    let server = new_server(&config, &gateway.destinations, body.into_inner())?;
    let key = path.into_inner();
    let actor = who.actor();
    let server = store
        .write(move |tx| {
            let access = project_access(tx, &who, &key)?;
            insert(tx, &actor, &access.project.id, server)
        })
        .await?;
    gateway.servers_changed().await;
    let server = record_upstream(&deployer, &store, server).await?;
    Ok(data(StatusCode::CREATED, server_json(&gateway, &server)))
}

/// The server a create body asks for, validated (its project is set once it is found).
fn new_server(
    config: &Config,
    destinations: &Destinations,
    mut body: ServerFields,
) -> Result<ServerRow, ApiError> {
    let name = super::fields::required_name(body.name.as_deref())?;
    let slug = match body.slug.take() {
        Some(s) => Slug::parse(&s).map_err(|e| ApiError::validation("slug", e))?,
        None => Slug::derive(&name).ok_or_else(|| {
            ApiError::validation("slug", "cannot be derived from the name; give one")
        })?,
    };
    let now = domain::now();
    let auth_mode = match config.auth.mode {
        AuthMode::Managed => ServerAuthMode::Managed,
        AuthMode::Byoa => ServerAuthMode::Byoa,
    };
    let mut server = ServerRow {
        id: domain::new_id("srv_"),
        project_id: String::new(),
        name,
        slug: slug.into_string(),
        status: ServerStatus::Stopped,
        upstream_url: None,
        health_check_path: None,
        rollback_on_failure: true,
        retention_count: 10,
        auto_stop_seconds: None,
        tool_scopes: "{}".into(),
        auth_mode,
        byoa_config: None,
        managed_by: "api".into(),
        rate_limit: None,
        created_at: now,
        updated_at: now,
    };
    body.apply(&mut server, destinations)?;
    Ok(server)
}

/// Records `server` in `project_id` if its slug is free: taken by no server, and not kept by
/// another project (blocking, in the caller's transaction).
fn insert(
    tx: &Connection,
    actor: &Actor,
    project_id: &str,
    mut server: ServerRow,
) -> Result<ServerRow, ApiError> {
    if store::servers::find(tx, &server.slug)?.is_some() {
        return Err(ApiError::Conflict(format!(
            "the slug {} is taken",
            server.slug
        )));
    }
    if store::servers::retired_to(tx, &server.slug)?.is_some_and(|owner| owner != project_id) {
        return Err(ApiError::Conflict(format!(
            "the slug {} belonged to a deleted server of another project and stays with that project: the server's URL is the identity its tokens, consents and upstream assertions (aud) name",
            server.slug
        )));
    }
    server.project_id = project_id.to_owned();
    store::servers::insert(tx, &server)?;
    let details = json!({ "slug": server.slug, "upstreamUrl": server.upstream_url });
    store::audit::record(
        tx,
        actor,
        "server.create",
        Some(&server.id),
        Some(&server.project_id),
        Some(&details),
    )?;
    Ok(server)
}

pub async fn get(
    store: web::Data<Store>,
    gateway: web::Data<Gateway>,
    who: Principal,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    who.require(ApiScope::ServersRead)?;
    let key = path.into_inner();
    let (server, _) = store.run(move |c| server_access(c, &who, &key)).await?;
    Ok(data(StatusCode::OK, server_json(&gateway, &server)))
}

/// 409 for servers declared in the config file: the file is their source of truth.
pub fn refuse_if_declared(config: &Config, s: &ServerRow) -> Result<(), ApiError> {
    if s.managed_by == "config" {
        let file = config
            .source_file
            .as_ref()
            .map_or_else(|| "the config file".to_owned(), |p| p.display().to_string());
        return Err(ApiError::Conflict(format!(
            "server {} is declared in {file}; change it there",
            s.slug
        )));
    }
    Ok(())
}

pub async fn update(
    store: web::Data<Store>,
    config: web::Data<Config>,
    gateway: web::Data<Gateway>,
    deployer: web::Data<Deployer>,
    who: Principal,
    path: web::Path<String>,
    body: web::Json<ServerFields>,
) -> Result<HttpResponse, ApiError> {
    who.require(ApiScope::ServersWrite)?;
    let mut body = body.into_inner();
    let upstream_set = body.upstream_url.is_some();
    // Changing (or clearing) where a live server's traffic goes is a deployment.
    if upstream_set {
        who.require(ApiScope::DeploymentsWrite)?;
    }
    let key = path.into_inner();
    let actor = who.actor();
    let gw = gateway.clone();
    let server = store
        .write(move |tx| {
            let (mut server, _) = server_access(tx, &who, &key)?;
            refuse_if_declared(&config, &server)?;
            if body.slug.take().is_some_and(|s| s != server.slug) {
                return Err(ApiError::validation(
                    "slug",
                    "cannot be changed: tokens are bound to the server's URL",
                ));
            }
            body.apply(&mut server, &gw.destinations)?;
            if upstream_set && server.upstream_url.is_none() {
                // Clearing the upstream ends whatever deployment served (also after a restart).
                store::deployments::deactivate_all(tx, &server.id)?;
            }
            server.updated_at = domain::now();
            store::servers::update(tx, &server)?;
            store::audit::record(
                tx,
                &actor,
                "server.update",
                Some(&server.id),
                Some(&server.project_id),
                None,
            )?;
            Ok(server)
        })
        .await?;
    let server = if upstream_set {
        if server.upstream_url.is_none() {
            deployer.remove(&server.id);
            gateway.servers_changed().await;
            server
        } else {
            record_upstream(&deployer, &store, server).await?
        }
    } else {
        gateway.servers_changed().await;
        server
    };
    Ok(data(StatusCode::OK, server_json(&gateway, &server)))
}

/// An `upstreamUrl` set on the server itself is a deployment too (taken as is, without a
/// health check: the upstream may not be up yet).
async fn record_upstream(
    deployer: &web::Data<Deployer>,
    store: &Store,
    server: ServerRow,
) -> Result<ServerRow, ApiError> {
    let Some(url) = server.upstream_url.clone() else {
        return Ok(server);
    };
    let req = crate::deploy::DeployRequest {
        spec: crate::deploy::Spec::Upstream { upstream_url: url },
        label: None,
        kind: crate::domain::kinds::DeploymentKind::Deploy,
        rollback: true,
        check: false,
    };
    let id = server.id.clone();
    deployer.deploy(server, req).await?;
    store
        .run(move |c| store::servers::find(c, &id))
        .await?
        .ok_or_else(|| ApiError::NotFound("server not found".into()))
}

#[allow(
    clippy::too_many_arguments,
    reason = "a handler lists the services it uses, one extractor each"
)]
pub async fn delete(
    store: web::Data<Store>,
    config: web::Data<Config>,
    gateway: web::Data<Gateway>,
    revoked: web::Data<RevokedGrants>,
    deployer: web::Data<Deployer>,
    control: web::Data<ControlState>,
    who: Principal,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    who.require(ApiScope::ServersWrite)?;
    let key = path.into_inner();
    let actor = who.actor();
    let gw = gateway.clone();
    store
        .write(move |tx| {
            let (server, _) = server_access(tx, &who, &key)?;
            refuse_if_declared(&config, &server)?;
            // Its grants and its clients' machine tokens end now: the front door refuses them
            // even if the slug returns (also after a restart: the rows go with the server, the
            // records stay). Grants revoked earlier are recorded too, for the same reason. Its
            // remembered consents go, and its slug stays with its project.
            let resource = gw.urls.resource(&server.slug);
            let removed = store::servers::delete(tx, &server, &resource, domain::now())?;
            revoked.refuse(removed.grants, &removed.clients);
            store::audit::record(
                tx,
                &actor,
                "server.delete",
                Some(&server.id),
                Some(&server.project_id),
                Some(&json!({ "slug": server.slug })),
            )?;
            Ok::<_, ApiError>(server.id)
        })
        .await
        .map(|id| deployer.remove(&id))?;
    gateway.servers_changed().await;
    control.access_changed();
    Ok(no_content())
}
