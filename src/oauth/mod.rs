//! The built-in authorization server (managed mode): OAuth 2.1 with PKCE S256 for MCP clients.
//! Routes exist only when `auth.mode = "managed"`.

mod assertion;
mod authorize;
mod client_auth;
pub mod clients;
mod cross_site;
pub(crate) mod grant_types;
mod introspect;
pub mod issuer;
mod metadata;
mod oidc;
mod pages;
mod params;
pub mod pkce;
mod register;
mod revoke;
mod state;
mod token;
pub mod tokens;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::{Next, from_fn};
use actix_web::{FromRequest, HttpRequest, HttpResponse, ResponseError, web};
use futures_util::future::LocalBoxFuture;
use serde_json::json;

use crate::shared::rate_limit::{Decision, address_bucket, retry_secs};

pub use state::OAuthState;

/// Request bodies (forms, registration documents) larger than this are refused with 413.
pub const FORM_LIMIT: usize = 64 * 1024;

pub fn routes(cfg: &mut web::ServiceConfig) {
    // Metadata of the root issuer, and (RFC 8414 §3, path inserted) of each managed server's.
    for name in ["oauth-authorization-server", "openid-configuration"] {
        cfg.route(
            &format!("/.well-known/{name}"),
            web::get().to(metadata::authorization_server),
        )
        .route(
            &format!("/.well-known/{name}/oauth/mcp/{{slug}}"),
            web::get().to(metadata::authorization_server),
        );
    }
    cfg.service(
        web::scope("/oauth")
            .wrap(from_fn(limit))
            .configure(endpoints),
    )
    .service(
        web::scope("/api/v1/oauth")
            .wrap(from_fn(limit))
            .configure(endpoints),
    );
}

fn endpoints(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::PayloadConfig::new(FORM_LIMIT))
        .service(
            // A managed server's own issuer: the same endpoints, for that one server.
            web::scope("/mcp/{slug}")
                .configure(issuer_endpoints)
                .route(
                    "/.well-known/openid-configuration",
                    web::get().to(metadata::authorization_server),
                )
                .route(
                    "/.well-known/oauth-authorization-server",
                    web::get().to(metadata::authorization_server),
                )
                .default_service(web::to(not_an_endpoint)),
        )
        .configure(issuer_endpoints)
        .service(
            endpoint("/register/{client_id}")
                .wrap(cors())
                .route(web::get().to(register::read))
                .route(web::put().to(register::update))
                .route(web::delete().to(register::delete))
                .route(preflight()),
        )
        .service(endpoint("/jwks.json").route(web::get().to(metadata::jwks)))
        .default_service(web::to(not_an_endpoint));
}

// Browser-based MCP clients call these with `fetch`: they answer any origin (no cookies are
// involved; PKCE, client credentials or a registration token authenticate). The authorization
// pages are navigated to, not fetched, and get no CORS.
fn cors() -> actix_web::middleware::DefaultHeaders {
    actix_web::middleware::DefaultHeaders::new()
        .add((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"))
        .add((header::ACCESS_CONTROL_EXPOSE_HEADERS, "WWW-Authenticate"))
}

fn preflight() -> actix_web::Route {
    web::method(Method::OPTIONS).to(cors_preflight)
}

/// Another method on an endpoint: 405 in the OAuth shape, not actix's empty one.
fn endpoint(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(not_an_endpoint))
}

/// What every issuer serves.
fn issuer_endpoints(cfg: &mut web::ServiceConfig) {
    cfg.service(
        endpoint("/authorize")
            .route(web::get().to(authorize::get))
            .route(web::post().to(authorize::post)),
    )
    .service(
        endpoint("/token")
            .wrap(cors())
            .route(web::post().to(token::token))
            .route(preflight()),
    )
    .service(
        endpoint("/register")
            .wrap(cors())
            .route(web::post().to(register::register))
            .route(preflight()),
    )
    .service(
        endpoint("/revoke")
            .wrap(cors())
            .route(web::post().to(revoke::revoke))
            .route(preflight()),
    )
    .service(
        endpoint("/userinfo")
            .wrap(cors())
            .route(web::get().to(oidc::userinfo))
            .route(web::post().to(oidc::userinfo))
            .route(preflight()),
    )
    .service(endpoint("/introspect").route(web::post().to(introspect::introspect)));
}

async fn cors_preflight() -> HttpResponse {
    HttpResponse::NoContent()
        .insert_header((
            header::ACCESS_CONTROL_ALLOW_METHODS,
            "GET, POST, PUT, DELETE, OPTIONS",
        ))
        .insert_header((
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            "Authorization, Content-Type, MCP-Protocol-Version",
        ))
        .insert_header((header::ACCESS_CONTROL_MAX_AGE, "86400"))
        .finish()
}

/// Anything else under `/oauth`: an RFC 6749-shaped answer, 405 for a known endpoint's other
/// methods, else 404.
async fn not_an_endpoint(req: HttpRequest) -> Result<HttpResponse, OAuthError> {
    // Under a resource (its other methods) the route's pattern is known.
    if req.match_pattern().is_some() {
        Err(OAuthError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request",
            format!("{} is not allowed here", req.method()),
        ))
    } else {
        Err(OAuthError::new(
            StatusCode::NOT_FOUND,
            "invalid_request",
            "no such endpoint",
        ))
    }
}

/// An RFC 6749 §5.2 error: `{"error", "error_description"}` with the right status.
#[derive(Debug, thiserror::Error)]
#[error("{code}: {description}")]
pub struct OAuthError {
    pub status: StatusCode,
    pub code: &'static str,
    pub description: String,
}

impl OAuthError {
    pub fn new(status: StatusCode, code: &'static str, description: impl Into<String>) -> Self {
        Self {
            status,
            code,
            description: description.into(),
        }
    }
    pub fn invalid_request(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", d)
    }
    pub fn invalid_client(d: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "invalid_client", d)
    }
    pub fn invalid_grant(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_grant", d)
    }
    pub fn invalid_scope(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_scope", d)
    }
    pub fn invalid_target(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_target", d)
    }
    pub fn unauthorized_client(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "unauthorized_client", d)
    }
    pub fn server_error(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "authorization server error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "internal error",
        )
    }
}

impl From<crate::store::StoreError> for OAuthError {
    fn from(e: crate::store::StoreError) -> Self {
        match e {
            crate::store::StoreError::Busy => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "the database is busy",
            ),
            other => Self::server_error(crate::error::ErrorChain(&other)),
        }
    }
}

impl ResponseError for OAuthError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status);
        res.insert_header((header::CACHE_CONTROL, "no-store"));
        if self.status == StatusCode::UNAUTHORIZED {
            res.insert_header((
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"ezforge\""),
            ));
        }
        res.json(json!({ "error": self.code, "error_description": self.description }))
    }
}

/// Per-address request limit on the authorization server's endpoints (`[auth.rate_limit]`):
/// past it, 429 with `Retry-After`. Each of these requests may cost a password hash, a
/// signature, a database write or a metadata-document fetch.
async fn limit(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let Some(oauth) = req.app_data::<web::Data<OAuthState>>() else {
        // Every route here is registered with the services; a missing one is our bug.
        let res = OAuthError::server_error("the authorization server's state is not registered")
            .error_response();
        return Ok(req.into_response(res));
    };
    match oauth.limiter.check(address_bucket(req.peer_addr())) {
        Decision::Allowed { .. } => Ok(next.call(req).await?.map_into_boxed_body()),
        Decision::Limited { retry_after } => {
            let secs = retry_secs(retry_after);
            let mut res = OAuthError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "temporarily_unavailable",
                format!("too many requests from this address; retry in {secs} s"),
            )
            .error_response();
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            Ok(req.into_response(res))
        }
    }
}

/// A registered service, for this part's extractors. A missing one is a bug of ours: a 500,
/// logged, never a panic.
fn service<T: 'static>(req: &HttpRequest) -> Result<web::Data<T>, OAuthError> {
    req.app_data::<web::Data<T>>().cloned().ok_or_else(|| {
        OAuthError::server_error(format!(
            "service {} is not registered",
            std::any::type_name::<T>()
        ))
    })
}

/// A request body of at most [`FORM_LIMIT`] bytes; a larger or broken one is an RFC 6749 error
/// (413 or 400), not actix's plain-text answer.
pub struct Body(pub web::Bytes);

impl FromRequest for Body {
    type Error = OAuthError;
    type Future = LocalBoxFuture<'static, Result<Self, OAuthError>>;

    fn from_request(req: &HttpRequest, payload: &mut actix_web::dev::Payload) -> Self::Future {
        let bytes = web::Bytes::from_request(req, payload);
        Box::pin(async move {
            bytes.await.map(Body).map_err(|e| {
                let status = e.as_response_error().status_code();
                if status == StatusCode::PAYLOAD_TOO_LARGE {
                    OAuthError::new(
                        status,
                        "invalid_request",
                        format!("the request body is larger than {FORM_LIMIT} bytes"),
                    )
                } else {
                    OAuthError::invalid_request("the request body could not be read")
                }
            })
        })
    }
}
