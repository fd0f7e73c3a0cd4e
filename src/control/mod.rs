//! The control API (`/v1`, and the same under `/api/v1`), as `docs/api.md` describes it and
//! `docs/openapi.json` (served at `/v1/openapi.json`) specifies it.
//! One file per resource; `auth.rs` is the credential extractor and the access rules.

mod audit;
pub mod auth;
pub mod billing;
mod clients;
pub mod declared;
mod deploy_error;
mod deployments;
pub(crate) mod env;
mod fields;
mod grants;
mod health;
mod invitations;
mod keys;
mod logs;
mod membership;
mod metrics;
mod openapi;
mod projects;
pub mod rate_limit;
mod server_auth;
mod servers;
pub mod sessions;
mod state;
mod users;

pub use state::ControlState;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::error::ApiError;
use crate::store::{Page, PageRequest};

/// Request bodies larger than this are refused with 413.
pub const BODY_LIMIT: usize = 1024 * 1024;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/v1")
            .wrap(actix_web::middleware::from_fn(rate_limit::limit))
            .configure(v1),
    )
    .service(
        web::scope("/api/v1")
            .wrap(actix_web::middleware::from_fn(rate_limit::limit))
            .configure(v1),
    );
}

/// The route table under `/v1`: the API's table of contents, so one function, longer than
/// most; it stays whole because `tests/api/control/openapi.rs` and `tests/api/docs.rs` read it
/// from this function's text to hold `docs/openapi.json` and `docs/api.md` against it. Order
/// matters where paths overlap (actix tries resources in order): `/invitations/accept` comes
/// before `/invitations/{invitation}`.
fn v1(cfg: &mut web::ServiceConfig) {
    cfg.app_data(json_config())
        .app_data(
            web::QueryConfig::default()
                .error_handler(|e, _| ApiError::BadRequest(format!("query: {e}")).into()),
        )
        .app_data(
            web::PathConfig::default()
                .error_handler(|e, _| ApiError::BadRequest(format!("path: {e}")).into()),
        )
        .service(resource("/health").route(web::get().to(health::health)))
        .service(resource("/openapi.json").route(web::get().to(openapi::get)))
        .service(resource("/auth/login").route(web::post().to(sessions::login)))
        .service(resource("/auth/logout").route(web::post().to(sessions::logout)))
        .service(resource("/auth/session").route(web::get().to(sessions::current)))
        .service(resource("/auth/invite").route(web::post().to(sessions::accept_invite)))
        .service(
            resource("/users")
                .route(web::get().to(users::list))
                .route(web::post().to(users::create)),
        )
        .service(resource("/users/{user}").route(web::delete().to(users::delete)))
        .service(
            resource("/projects")
                .route(web::get().to(projects::list))
                .route(web::post().to(projects::create)),
        )
        .service(
            resource("/projects/{project}")
                .route(web::get().to(projects::get))
                .route(web::patch().to(projects::update))
                .route(web::delete().to(projects::delete)),
        )
        .service(
            resource("/projects/{project}/members")
                .route(web::get().to(projects::members))
                .route(web::post().to(invitations::invite)),
        )
        .service(
            resource("/projects/{project}/invitations").route(web::get().to(invitations::list)),
        )
        .service(
            resource("/projects/{project}/invitations/{invitation}")
                .route(web::delete().to(invitations::withdraw)),
        )
        .service(resource("/invitations").route(web::get().to(invitations::mine)))
        .service(resource("/invitations/accept").route(web::post().to(invitations::accept)))
        .service(
            resource("/invitations/{invitation}/accept")
                .route(web::post().to(invitations::accept_by_id)),
        )
        .service(
            resource("/invitations/{invitation}").route(web::delete().to(invitations::decline)),
        )
        .service(
            resource("/projects/{project}/members/{user}")
                .route(web::delete().to(projects::remove_member)),
        )
        .service(
            resource("/projects/{project}/keys")
                .route(web::get().to(keys::list))
                .route(web::post().to(keys::create)),
        )
        .service(resource("/keys/{key}").route(web::delete().to(keys::revoke)))
        .service(
            resource("/projects/{project}/servers")
                .route(web::get().to(servers::list_in_project))
                .route(web::post().to(servers::create)),
        )
        .service(resource("/servers").route(web::get().to(servers::list)))
        .service(
            resource("/servers/{server}")
                .route(web::get().to(servers::get))
                .route(web::patch().to(servers::update))
                .route(web::delete().to(servers::delete)),
        )
        .service(
            resource("/servers/{server}/auth")
                .route(web::get().to(server_auth::get))
                .route(web::patch().to(server_auth::update)),
        )
        .service(
            resource("/servers/{server}/clients")
                .route(web::get().to(clients::list))
                .route(web::post().to(clients::create)),
        )
        .service(
            resource("/servers/{server}/clients/{client:.+}")
                .route(web::delete().to(clients::delete)),
        )
        .service(
            resource("/servers/{server}/env")
                .route(web::get().to(env::list))
                .route(web::post().to(env::create)),
        )
        .service(
            resource("/servers/{server}/env/{name}")
                .route(web::put().to(env::put))
                .route(web::delete().to(env::delete)),
        )
        .service(
            resource("/servers/{server}/deployments")
                .route(web::get().to(deployments::list))
                .route(web::post().to(deployments::create)),
        )
        .service(
            resource("/servers/{server}/rollback").route(web::post().to(deployments::rollback)),
        )
        .service(resource("/servers/{server}/logs").route(web::get().to(logs::list)))
        .service(resource("/servers/{server}/logs/stream").route(web::get().to(logs::stream)))
        .service(resource("/servers/{server}/metrics").route(web::get().to(metrics::get)))
        .service(resource("/billing").route(web::get().to(billing::get)))
        .service(resource("/grants").route(web::get().to(grants::list)))
        .service(resource("/grants/{grant}").route(web::delete().to(grants::revoke)))
        .service(resource("/audit").route(web::get().to(audit::list)))
        .default_service(web::to(not_found));
}

/// A resource whose unmatched methods answer 405 in the API's error shape.
fn resource(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(|req: HttpRequest| async move {
        let e = ApiError::MethodNotAllowed(format!(
            "{} is not allowed on {}",
            req.method(),
            req.path()
        ));
        Err::<HttpResponse, _>(e)
    }))
}

fn json_config() -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(BODY_LIMIT)
        .error_handler(|err, _req| {
            use actix_web::error::JsonPayloadError as E;
            let api = match &err {
                E::OverflowKnownLength { limit, .. } | E::Overflow { limit } => {
                    ApiError::PayloadTooLarge { limit: *limit }
                }
                E::ContentType => {
                    ApiError::UnsupportedMediaType("Content-Type must be application/json".into())
                }
                E::Deserialize(e) => ApiError::BadRequest(format!("invalid JSON body: {e}")),
                other => ApiError::BadRequest(format!("invalid request body: {other}")),
            };
            api.into()
        })
}

/// Everything unrouted: a JSON 404 in the control API's error shape.
pub async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound(format!(
        "no route for {} {}",
        req.method(),
        req.path()
    )))
}

/// `?limit=&cursor=` on list endpoints.
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    limit: Option<i64>,
    cursor: Option<String>,
}

impl ListQuery {
    pub fn page(&self) -> Result<PageRequest, ApiError> {
        let limit = match self.limit {
            None => 20,
            Some(n @ 1..=100) => n as u32,
            Some(_) => {
                return Err(ApiError::BadRequest(
                    "limit: must be between 1 and 100".into(),
                ));
            }
        };
        let after = match self.cursor.as_deref() {
            None | Some("") => None,
            Some(c) => Some(
                URL_SAFE_NO_PAD
                    .decode(c)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .ok_or_else(|| {
                        ApiError::BadRequest("cursor: not a cursor this API returned".into())
                    })?,
            ),
        };
        Ok(PageRequest { after, limit })
    }
}

/// A paginated list of something under one server the caller may see.
pub async fn server_list<T: Send + 'static, U: Serialize>(
    store: &crate::store::Store,
    who: auth::Principal,
    key: String,
    q: &ListQuery,
    scope: crate::domain::scopes::ApiScope,
    fetch: fn(
        &rusqlite::Connection,
        &str,
        &PageRequest,
    ) -> Result<Page<T>, crate::store::StoreError>,
    render: impl Fn(&T) -> U,
) -> Result<HttpResponse, ApiError> {
    who.require(scope)?;
    let page = q.page()?;
    let items = store
        .run(move |c| {
            let (server, _) = auth::server_access(c, &who, &key)?;
            Ok::<_, ApiError>(fetch(c, &server.id, &page)?)
        })
        .await?;
    Ok(list(items, render))
}

/// `{"data": value}` with `status`.
pub fn data(status: StatusCode, value: impl Serialize) -> HttpResponse {
    HttpResponse::build(status).json(json!({ "data": value }))
}

/// `{"data": [...], "meta": {cursor, hasMore, total}}`.
pub fn list<T, U: Serialize>(page: Page<T>, render: impl Fn(&T) -> U) -> HttpResponse {
    let items: Vec<U> = page.items.iter().map(render).collect();
    let cursor = page
        .next
        .as_ref()
        .map(|n| URL_SAFE_NO_PAD.encode(n.as_bytes()));
    HttpResponse::Ok().json(json!({
        "data": items,
        "meta": { "cursor": cursor, "hasMore": page.next.is_some(), "total": page.total },
    }))
}

pub fn no_content() -> HttpResponse {
    HttpResponse::NoContent().finish()
}

/// RFC 3339, or null.
pub fn time(t: Option<i64>) -> serde_json::Value {
    t.map_or(serde_json::Value::Null, |t| {
        json!(crate::domain::rfc3339(t))
    })
}

/// A double option for PATCH bodies: absent (`None`), `null` (`Some(None)`), or a value.
pub fn nullable<'de, T, D>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: serde::Deserializer<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}
