//! `GET /v1/servers/:id/metrics`: a window of the access log, summarised. Errors are 5xx and
//! the 4xx answers other than challenges (401, 403), which are counted apart.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::ControlState;
use super::auth::{Principal, server_access};
use super::data;
use crate::deploy::process::ProcState;
use crate::deploy::{Target, TargetKind};
use crate::domain::{self, scopes::ApiScope};
use crate::error::ApiError;
use crate::services::gateway::Gateway;
use crate::store::request_log::WindowStats;
use crate::store::{self, Store};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsParams {
    window: Option<String>,
}

fn counts(pairs: &[(String, i64)]) -> Value {
    Value::Object(
        pairs
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect::<Map<String, Value>>(),
    )
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

pub async fn get(
    store: web::Data<Store>,
    control: web::Data<ControlState>,
    gateway: web::Data<Gateway>,
    who: Principal,
    path: web::Path<String>,
    q: web::Query<MetricsParams>,
) -> Result<HttpResponse, ApiError> {
    who.require(ApiScope::MetricsRead)?;
    let window = q.into_inner().window.unwrap_or_else(|| "1h".into());
    let secs = window_secs(&window)?;
    let to = domain::now_ms();
    let from = to - secs * 1000;
    let key = path.into_inner();
    let _turn = control
        .log_scans
        .acquire()
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    let (server, stats) = store
        .run(move |c| {
            let (server, _) = server_access(c, &who, &key)?;
            let stats = store::request_log::window_stats(c, &server.id, from)?;
            Ok::<_, ApiError>((server, stats))
        })
        .await?;
    let target = gateway
        .registry
        .get(&server.slug)
        .and_then(|e| e.target.clone());
    let upstream = upstream_status(target.as_deref(), &stats);
    let span = [domain::rfc3339_ms(from), domain::rfc3339_ms(to)];
    Ok(data(
        StatusCode::OK,
        summary_json(&window, span, &stats, upstream),
    ))
}

/// `window`: its length in seconds.
fn window_secs(window: &str) -> Result<i64, ApiError> {
    match window {
        "1h" => Ok(3600),
        "24h" => Ok(86_400),
        "7d" => Ok(7 * 86_400),
        _ => Err(ApiError::BadRequest("window: must be 1h, 24h or 7d".into())),
    }
}

/// How the server's upstream fares: a process by its state; a URL (or a stdio bridge) by how
/// the latest request fared.
fn upstream_status(target: Option<&Target>, stats: &WindowStats) -> &'static str {
    match target.map(|t| &t.kind) {
        None => "none",
        Some(TargetKind::Process(p)) => match p.state() {
            ProcState::Running { .. } => "healthy",
            ProcState::Stopped => "stopped",
            ProcState::Backoff { .. } => "unhealthy",
            _ => "unknown",
        },
        Some(_) => match stats.last_status {
            None => "unknown",
            Some(502..=504) => "unhealthy",
            Some(_) => "healthy",
        },
    }
}

/// The figures of `window`, which spans `[from, to]` (RFC 3339).
fn summary_json(
    window: &str,
    [from, to]: [String; 2],
    stats: &WindowStats,
    upstream_status: &str,
) -> Value {
    // Challenges (401, 403) are how OAuth starts and steps up, not failures: apart.
    let errors = stats.errors_4xx + stats.errors_5xx;
    let challenges = stats.challenges_401 + stats.challenges_403;
    let rate = |n: i64| {
        if stats.requests > 0 {
            round2(n as f64 / stats.requests as f64 * 100.0) / 100.0
        } else {
            0.0
        }
    };
    json!({
        "window": window,
        "from": from,
        "to": to,
        "requests": stats.requests,
        "errors": { "4xx": stats.errors_4xx, "5xx": stats.errors_5xx },
        "errorRate": rate(errors),
        "challenges": { "401": stats.challenges_401, "403": stats.challenges_403 },
        "challengeRate": rate(challenges),
        "latencyMs": stats.latency.map(|[p50, p95, p99]| json!({
            "p50": round2(p50), "p95": round2(p95), "p99": round2(p99),
        })),
        "methods": counts(&stats.methods),
        "tools": counts(&stats.tools),
        "authFailures": counts(&stats.auth_failures),
        "upstream": { "status": upstream_status, "errors": stats.upstream_errors },
    })
}
