//! The MCP front door: protected-resource metadata (RFC 9728) and a streaming reverse proxy
//! that validates bearer tokens bound to each server, enforces scopes per JSON-RPC message,
//! rate-limits, and never forwards the client's credentials.

pub mod access_log;
pub mod assertion;
pub mod counters;
pub mod issuer_check;
pub mod jsonrpc;
pub mod jwks;
mod legacy;
pub mod policy;
mod proxy;
pub mod registry;
pub mod sessions;
pub mod upstream;
pub mod verify;

use std::sync::Arc;

use actix_web::guard::GuardContext;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};

use crate::app::AppState;
use crate::control::rate_limit::Limiter;

pub use proxy::{host_routed, path_routed};

/// The front door's shared state, built once.
pub struct Gateway {
    pub registry: registry::Registry,
    pub verifier: verify::Verifier,
    pub tools: policy::ToolTable,
    pub sessions: sessions::SessionSeal,
    pub limiter: Limiter,
    /// For health checks (the front door's requests go through each worker's own
    /// [`upstream::UpstreamClient`]): the same client, so the same destination checks.
    pub health: upstream::UpstreamClient,
    /// TLS settings of the workers' upstream clients, built once.
    pub upstream_tls: Arc<rustls::ClientConfig>,
    /// Where upstream URLs may point.
    pub destinations: Arc<crate::shared::destinations::Destinations>,
    /// `X-Ezforge-Assertion` for upstreams.
    pub assertions: assertion::Assertions,
    pub log: Arc<access_log::AccessLog>,
}

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
    .route(assertion::JWKS_PATH, web::get().to(assertion_jwks));
}

/// Under host routing, is this request for `{slug}.{server_domain}`?
fn is_server_host(ctx: &GuardContext<'_>) -> bool {
    let Some(state) = ctx.app_data::<web::Data<AppState>>() else {
        return false;
    };
    server_slug_from_host(state, request_host(ctx.head())).is_some()
}

/// The host a request is for: the URI's authority (HTTP/2's `:authority`, or an absolute-form
/// HTTP/1.1 target, which RFC 9112 §3.2.2 puts before `Host`), else the `Host` header.
pub fn request_host(head: &actix_web::dev::RequestHead) -> Option<&str> {
    match head.uri.authority() {
        Some(a) => Some(a.as_str()),
        None => head.headers.get(header::HOST)?.to_str().ok(),
    }
}

pub fn server_slug_from_host(state: &AppState, host: Option<&str>) -> Option<String> {
    if state.config.gateway.routing != crate::config::Routing::Host {
        return None;
    }
    let domain = state.config.gateway.server_domain.as_deref()?;
    let host = host?.split(':').next()?.to_ascii_lowercase();
    let slug = host.strip_suffix(domain)?.strip_suffix('.')?;
    (!slug.is_empty() && !slug.contains('.')).then(|| slug.to_owned())
}

fn metadata_response(entry: &registry::ServerEntry) -> HttpResponse {
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

async fn path_metadata(state: web::Data<AppState>, slug: web::Path<String>) -> HttpResponse {
    match state.gateway.registry.get(&slug) {
        Some(entry) => metadata_response(&entry),
        None => unknown_server(),
    }
}

async fn host_metadata(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    match server_slug_from_host(&state, request_host(req.head()))
        .and_then(|s| state.gateway.registry.get(&s))
    {
        Some(entry) => metadata_response(&entry),
        None => unknown_server(),
    }
}

/// The keys upstreams verify `X-Ezforge-Assertion` with (both auth modes).
async fn assertion_jwks(state: web::Data<AppState>) -> HttpResponse {
    match state.gateway.assertions.jwks(&state.keys) {
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
