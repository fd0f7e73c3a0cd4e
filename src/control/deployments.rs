//! Deployments of a server: list, deploy, roll back. The pipeline itself is `crate::deploy`.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::{Principal, server_access};
use super::servers::refuse_if_declared;
use super::{ListQuery, data, server_list, time};
use crate::config::Config;
use crate::deploy::{DeployBody, DeployRequest, Deployer, Spec};
use crate::domain::kinds::{DeploymentKind, DeploymentStatus};
use crate::domain::{self, scopes::ApiScope};
use crate::error::ApiError;
use crate::services::gateway::Gateway;
use crate::store::{self, Store, deployments::DeploymentRow, servers::ServerRow};

pub fn deployment_json(d: &DeploymentRow) -> Value {
    let target: Value = serde_json::from_str(&d.target).unwrap_or(Value::Null);
    json!({
        "id": d.id,
        "serverId": d.server_id,
        "version": d.version,
        "label": d.label,
        "type": d.kind,
        "target": target,
        "status": d.status,
        "active": d.active,
        "errorMessage": d.error_message,
        "createdAt": domain::rfc3339(d.created_at),
        "finishedAt": time(d.finished_at),
    })
}

pub async fn list(
    store: web::Data<Store>,
    who: Principal,
    path: web::Path<String>,
    q: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let key = path.into_inner();
    who.require(ApiScope::DeploymentsRead)?;
    // Deployment cursors are versions: anything else was not returned by this API.
    if q.page()?
        .after
        .is_some_and(|v| v.parse::<i64>().map_or(true, |n| n < 1))
    {
        return Err(ApiError::BadRequest(
            "cursor: not a cursor this API returned".into(),
        ));
    }
    let fetch = store::deployments::list;
    server_list(
        &store,
        who,
        key,
        &q,
        ApiScope::DeploymentsRead,
        fetch,
        deployment_json,
    )
    .await
}

async fn writable_server(
    store: &Store,
    config: &Config,
    who: Principal,
    key: String,
) -> Result<ServerRow, ApiError> {
    who.require(ApiScope::DeploymentsWrite)?;
    let (server, _) = store.run(move |c| server_access(c, &who, &key)).await?;
    refuse_if_declared(config, &server)?;
    Ok(server)
}

/// Whether this deployment may run here: where an upstream URL points (checked again here:
/// also one a rollback brings back), and whether commands may run at all.
fn allowed(
    config: &Config,
    gateway: &Gateway,
    deployer: &Deployer,
    req: &DeployRequest,
) -> Result<(), ApiError> {
    if let Spec::Upstream { upstream_url } = &req.spec {
        super::servers::upstream_url(&gateway.destinations, upstream_url, "upstreamUrl")?;
    }
    if matches!(req.spec, Spec::Command { .. }) && !config.deploy.allow_commands {
        return Err(ApiError::Forbidden {
            message: "deployments that run a command are turned off here (deploy.allow_commands); deploy an upstreamUrl".into(),
            required_scope: None,
        });
    }
    if matches!(req.spec, Spec::Command { .. })
        && let Some(why) = deployer.sandbox.refusal()
    {
        return Err(ApiError::Forbidden {
            message: why,
            required_scope: None,
        });
    }
    Ok(())
}

/// Runs an [`allowed`] deployment and audits it.
async fn run(
    deployer: &web::Data<Deployer>,
    store: &Store,
    who: &Principal,
    server: ServerRow,
    req: DeployRequest,
) -> Result<HttpResponse, ApiError> {
    let actor = who.actor();
    let (sid, pid) = (server.id.clone(), server.project_id.clone());
    let row = deployer.deploy(server, req).await?;
    let details = json!({ "version": row.version, "status": row.status, "type": row.kind });
    let did = row.id.clone();
    let audited = store
        .write(move |tx| {
            store::audit::record(
                tx,
                &actor,
                "deployment.create",
                Some(&sid),
                Some(&pid),
                Some(&details),
            )
        })
        .await;
    if let Err(e) = audited {
        // The deployment itself is done; a missing audit row must not turn it into an error.
        tracing::warn!(deployment = %did, error = %e, "could not audit a deployment");
    }
    Ok(data(StatusCode::CREATED, deployment_json(&row)))
}

pub async fn create(
    store: web::Data<Store>,
    config: web::Data<Config>,
    gateway: web::Data<Gateway>,
    deployer: web::Data<Deployer>,
    who: Principal,
    path: web::Path<String>,
    body: web::Json<DeployBody>,
) -> Result<HttpResponse, ApiError> {
    // Who may deploy here comes first: a caller who may not learns nothing from validation.
    let server = writable_server(&store, &config, who.clone(), path.into_inner()).await?;
    let parsed = body.into_inner().parse()?;
    let req = DeployRequest {
        spec: parsed.spec,
        label: parsed.label,
        kind: DeploymentKind::Deploy,
        rollback: parsed.rollback.unwrap_or(server.rollback_on_failure),
        check: true,
    };
    allowed(&config, &gateway, &deployer, &req)?;
    run(&deployer, &store, &who, server, req).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RollbackBody {
    version: Option<i64>,
    deployment_id: Option<String>,
}

pub async fn rollback(
    store: web::Data<Store>,
    config: web::Data<Config>,
    gateway: web::Data<Gateway>,
    deployer: web::Data<Deployer>,
    who: Principal,
    path: web::Path<String>,
    body: web::Json<RollbackBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let server = writable_server(&store, &config, who.clone(), path.into_inner()).await?;
    if body.version.is_none() == body.deployment_id.is_none() {
        return Err(ApiError::validation(
            "version",
            "give either version (an integer) or deploymentId",
        ));
    }
    let sid = server.id.clone();
    let to = store
        .run(move |c| {
            store::deployments::find(c, &sid, body.deployment_id.as_deref(), body.version)
        })
        .await?
        .ok_or_else(|| {
            ApiError::NotFound("no such deployment of this server (it may have been pruned)".into())
        })?;
    if to.active {
        return Err(ApiError::Conflict(format!(
            "deployment v{} is the one serving already",
            to.version
        )));
    }
    if matches!(to.status.as_str(), "failed" | "pending" | "building") {
        return Err(ApiError::Conflict(format!(
            "deployment v{} {}; roll back to one that ran",
            to.version,
            if to.status == DeploymentStatus::Failed {
                "failed"
            } else {
                "has not finished"
            }
        )));
    }
    let spec = Spec::from_json(&to.target).ok_or_else(|| {
        ApiError::Internal(anyhow::anyhow!("deployment {} target unreadable", to.id))
    })?;
    let req = DeployRequest {
        spec,
        label: to
            .label
            .clone()
            .or_else(|| Some(format!("v{}", to.version))),
        kind: DeploymentKind::Rollback,
        rollback: server.rollback_on_failure,
        check: true,
    };
    allowed(&config, &gateway, &deployer, &req)?;
    run(&deployer, &store, &who, server, req).await
}
