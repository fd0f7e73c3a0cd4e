//! The control API (`/v1`, and the same under `/api/v1`), as `shared/API.md` specifies.

mod health;

use actix_web::{HttpRequest, web};

use crate::error::ApiError;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::scope("/v1").configure(v1))
        .service(web::scope("/api/v1").configure(v1));
}

fn v1(cfg: &mut web::ServiceConfig) {
    cfg.route("/health", web::get().to(health::health));
}

/// Everything unrouted: a JSON 404 in the control API's error shape.
pub async fn not_found(req: HttpRequest) -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::NotFound(format!(
        "no route for {} {}",
        req.method(),
        req.path()
    )))
}
