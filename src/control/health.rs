use std::time::Duration;

use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::store::Store;

/// `GET /v1/health`: unwrapped `{status, version, timestamp, services:{database}}`;
/// 503 when the database does not answer within two seconds.
pub async fn health(store: web::Data<Store>) -> HttpResponse {
    let db_ok = matches!(
        tokio::time::timeout(Duration::from_secs(2), store.ping()).await,
        Ok(Ok(()))
    );
    let body = json!({
        "status": if db_ok { "ok" } else { "degraded" },
        "version": env!("CARGO_PKG_VERSION"),
        "timestamp": crate::domain::rfc3339(crate::domain::now()),
        "services": { "database": if db_ok { "ok" } else { "unavailable" } },
    });
    let mut res = if db_ok {
        HttpResponse::Ok()
    } else {
        HttpResponse::ServiceUnavailable()
    };
    res.insert_header(("Cache-Control", "no-store")).json(body)
}
