//! `GET /v1/billing`: this month's usage and the configured limits. Usage is counted in
//! memory (front door requests and bytes, supervised process time) and added to the
//! `usage` table every few seconds.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use serde_json::json;

use super::auth::{Credential, Principal};
use super::data;
use crate::config::Config;
use crate::deploy::Deployer;
use crate::domain::{self, scopes::ApiScope};
use crate::error::{ApiError, ErrorChain};
use crate::services::gateway::Gateway;
use crate::store::{self, Store, usage::UsageDelta};

/// Adds what was counted since the last flush to this month's usage.
pub async fn flush_usage(store: &Store, gateway: &Gateway, deployer: &Deployer) {
    let compute = deployer.take_compute();
    let mut rows = Vec::new();
    for e in gateway.registry.all() {
        let (requests, bytes) = e.counters.take_delta();
        let compute_ms = compute.get(&e.id).copied().unwrap_or(0);
        if requests > 0 || bytes > 0 || compute_ms > 0 {
            rows.push((e.clone(), requests, bytes, compute_ms));
        }
    }
    if rows.is_empty() {
        return;
    }
    let (month, _, _) = domain::month_of(domain::now());
    let batch: Vec<(String, String, UsageDelta)> = rows
        .iter()
        .map(|(e, r, b, c)| {
            (
                e.id.clone(),
                e.project_id.clone(),
                UsageDelta {
                    requests: *r as i64,
                    bytes: *b as i64,
                    compute_ms: *c as i64,
                },
            )
        })
        .collect();
    let result = store
        .write(move |tx| {
            for (sid, pid, d) in &batch {
                store::usage::add(tx, &month, sid, pid, d)?;
            }
            Ok::<_, store::StoreError>(())
        })
        .await;
    if let Err(e) = result {
        tracing::warn!(error = %ErrorChain(&e), "could not record usage; will retry");
        for (e, r, b, _) in rows {
            e.counters.restore_delta(r, b);
        }
    }
}

pub async fn get(
    store: web::Data<Store>,
    gateway: web::Data<Gateway>,
    deployer: web::Data<Deployer>,
    config: web::Data<Config>,
    who: Principal,
) -> Result<HttpResponse, ApiError> {
    who.require(ApiScope::BillingRead)?;
    flush_usage(&store, &gateway, &deployer).await;
    let (project, member) = match &who.credential {
        Credential::Session(u) if u.is_admin() => (None, None),
        Credential::Session(u) => (None, Some(u.id.clone())),
        Credential::Key(k) => (Some(k.project_id.clone()), None),
    };
    let (month, start, end) = domain::month_of(domain::now());
    let m = month.clone();
    let totals = store
        .run(move |c| store::usage::totals(c, &m, project.as_deref(), member.as_deref()))
        .await?;
    let limits = &config.limits;
    Ok(data(
        StatusCode::OK,
        json!({
            "plan": "self_hosted",
            "period": { "month": month, "start": domain::rfc3339(start), "end": domain::rfc3339(end) },
            "usage": {
                "requestCount": totals.requests,
                "computeSeconds": totals.compute_ms / 1000,
                "bandwidthBytes": totals.bytes,
            },
            "limits": {
                "requestsPerMonth": limits.requests_per_month,
                "computeSecondsPerMonth": limits.compute_seconds_per_month,
                "bandwidthBytesPerMonth": limits.bandwidth_bytes_per_month,
            },
        }),
    ))
}
