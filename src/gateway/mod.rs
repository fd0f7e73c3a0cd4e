//! The MCP front door: protected-resource metadata (RFC 9728) and a streaming reverse proxy
//! that validates bearer tokens bound to each server, enforces scopes per JSON-RPC message,
//! rate-limits, and never forwards the client's credentials.

pub mod error;
mod legacy;
mod proxy;

use actix_web::guard::GuardContext;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};

use crate::services::gateway::Gateway;

pub use error::GatewayError;
pub use proxy::{host_routed, path_routed};

/// Routes for path routing, plus the catch-all for server hosts under host routing.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("")
            .guard(actix_web::guard::fn_guard(is_server_host))
            .route(
                "/.well-known/oauth-protected-resource",
                web::get().to(host_metadata),
            )
            .route(
                "/.well-known/oauth-protected-resource",
                web::method(actix_web::http::Method::OPTIONS).to(preflight_metadata),
            )
            .default_service(web::to(host_routed)),
    )
    // `/mcp/{slug}[/rest]`: a prefix, split by hand, and ahead of every route with a pattern
    // (actix tries routes in order), so that the front door runs no pattern matching.
    .service(web::scope("/mcp").default_service(web::to(path_routed)))
    .route(
        "/.well-known/oauth-protected-resource/mcp/{slug}",
        web::get().to(path_metadata),
    )
    .route(
        "/.well-known/oauth-protected-resource/mcp/{slug}",
        web::method(actix_web::http::Method::OPTIONS).to(preflight_metadata),
    )
    .route(
        crate::services::gateway::assertion::JWKS_PATH,
        web::get().to(assertion_jwks),
    );
}

/// Under host routing, is this request for `{slug}.{server_domain}`?
fn is_server_host(ctx: &GuardContext<'_>) -> bool {
    let Some(gateway) = ctx.app_data::<web::Data<Gateway>>() else {
        return false;
    };
    gateway
        .urls
        .slug_from_host(request_host(ctx.head()))
        .is_some()
}

/// The host a request is for: the URI's authority (HTTP/2's `:authority`, or an absolute-form
/// HTTP/1.1 target, which RFC 9112 §3.2.2 puts before `Host`), else the `Host` header.
pub fn request_host(head: &actix_web::dev::RequestHead) -> Option<&str> {
    match head.uri.authority() {
        Some(a) => Some(a.as_str()),
        None => head.headers.get(header::HOST)?.to_str().ok(),
    }
}

fn metadata_response(entry: &crate::services::gateway::registry::ServerEntry) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "application/json"))
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"))
        .body(entry.metadata.clone())
}

fn unknown_server() -> HttpResponse {
    HttpResponse::NotFound().json(
        serde_json::json!({ "error": "not_found", "error_description": "no such MCP server" }),
    )
}

async fn path_metadata(gateway: web::Data<Gateway>, slug: web::Path<String>) -> HttpResponse {
    match gateway.registry.get(&slug) {
        Some(entry) => metadata_response(&entry),
        None => unknown_server(),
    }
}

async fn host_metadata(gateway: web::Data<Gateway>, req: HttpRequest) -> HttpResponse {
    match gateway
        .urls
        .slug_from_host(request_host(req.head()))
        .and_then(|s| gateway.registry.get(&s))
    {
        Some(entry) => metadata_response(&entry),
        None => unknown_server(),
    }
}

/// The keys upstreams verify `X-Ezforge-Assertion` with (both auth modes).
async fn assertion_jwks(gateway: web::Data<Gateway>) -> HttpResponse {
    match gateway.assertions.jwks(&gateway.keys) {
        Ok(jwks) => HttpResponse::Ok()
            .insert_header((header::CONTENT_TYPE, "application/json"))
            .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
            .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"))
            .body(jwks),
        Err(e) => {
            tracing::error!(error = %e, "the assertion keys cannot be published");
            HttpResponse::ServiceUnavailable().json(serde_json::json!({
                "error": "temporarily_unavailable",
                "error_description": "the assertion keys are unavailable",
            }))
        }
    }
}

async fn preflight_metadata() -> HttpResponse {
    HttpResponse::NoContent()
        .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"))
        .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, "GET, OPTIONS"))
        .insert_header((header::ACCESS_CONTROL_ALLOW_HEADERS, "mcp-protocol-version"))
        .insert_header((header::ACCESS_CONTROL_MAX_AGE, "86400"))
        .finish()
}
