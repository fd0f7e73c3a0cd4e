//! Who is calling: a session (cookie `ezf_session`/`__Host-ezf_session`, or `Bearer ezf_sess_…`) or an API key
//! (`Bearer ezf_live_…` / `ezf_test_…`), and what they may reach.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;

use actix_web::http::Method;
use actix_web::{FromRequest, HttpRequest, web};
use rusqlite::Connection;

use super::ControlState;
use crate::crypto;
use crate::domain::kinds::{ProjectRole, UserRole};
use crate::domain::scopes::{ApiScope, ApiScopes};
use crate::error::ApiError;
use crate::services::accounts::{SESSION_PREFIX, session_cookie_value};
use crate::services::gateway::Gateway;
use crate::store::audit::Actor;
use crate::store::projects::ProjectRow;
use crate::store::servers::ServerRow;
use crate::store::{self, Store, StoreError};

pub const LIVE_KEY_PREFIX: &str = "ezf_live_";
pub const TEST_KEY_PREFIX: &str = "ezf_test_";

#[derive(Debug, Clone)]
pub struct SessionUser {
    pub id: String,
    pub email: String,
    pub role: UserRole,
    pub token_hash: String,
    pub expires_at: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

impl SessionUser {
    pub fn is_admin(&self) -> bool {
        self.role == UserRole::Admin
    }
}

#[derive(Debug, Clone)]
pub struct KeyPrincipal {
    pub id: String,
    pub project_id: String,
    pub scopes: ApiScopes,
    /// When the key stops working (unix seconds), if ever.
    pub expires_at: Option<i64>,
}

#[derive(Debug, Clone)]
pub enum Credential {
    Session(SessionUser),
    Key(KeyPrincipal),
}

/// The authenticated caller of a control API request.
#[derive(Debug, Clone)]
pub struct Principal {
    pub credential: Credential,
    pub address: Option<String>,
}

impl Principal {
    /// Session-only endpoints: an API key gets 403 whatever its scopes.
    pub fn session(&self) -> Result<&SessionUser, ApiError> {
        match &self.credential {
            Credential::Session(u) => Ok(u),
            Credential::Key(_) => Err(ApiError::Forbidden {
                message: "this endpoint needs a signed-in user; API keys cannot use it".into(),
                required_scope: None,
            }),
        }
    }

    pub fn admin(&self) -> Result<&SessionUser, ApiError> {
        let user = self.session()?;
        if user.is_admin() {
            Ok(user)
        } else {
            Err(ApiError::Forbidden {
                message: "only an admin may do this".into(),
                required_scope: None,
            })
        }
    }

    /// Sessions hold every scope within their projects; keys only those they were given.
    pub fn require(&self, scope: ApiScope) -> Result<(), ApiError> {
        match &self.credential {
            Credential::Key(k) if !k.scopes.contains(scope) => {
                Err(ApiError::forbidden_scope(scope.as_str()))
            }
            _ => Ok(()),
        }
    }

    pub fn actor(&self) -> Actor {
        Actor {
            id: match &self.credential {
                Credential::Session(u) => u.id.clone(),
                Credential::Key(k) => k.id.clone(),
            },
            address: self.address.clone(),
        }
    }
}

impl Principal {
    /// The caller as it stands now: `None` once its session has ended or its key has been
    /// revoked or has expired; else with its current role or scopes (blocking).
    pub fn reload(&self, conn: &Connection, now: i64) -> Result<Option<Principal>, StoreError> {
        let credential = match &self.credential {
            Credential::Session(u) => {
                store::sessions::lookup(conn, &u.token_hash, now)?.map(|(row, expires_at)| {
                    Credential::Session(SessionUser {
                        id: row.id,
                        email: row.email,
                        role: row.role,
                        token_hash: u.token_hash.clone(),
                        expires_at,
                        created_at: row.created_at,
                        updated_at: row.updated_at,
                    })
                })
            }
            Credential::Key(k) => store::api_keys::by_id(conn, &k.id)?
                .filter(|row| row.expires_at.is_none_or(|at| at > now))
                .map(|row| {
                    Credential::Key(KeyPrincipal {
                        scopes: ApiScopes::from_stored(&row.scopes),
                        id: row.id,
                        project_id: row.project_id,
                        expires_at: row.expires_at,
                    })
                }),
        };
        Ok(credential.map(|credential| Principal {
            credential,
            address: self.address.clone(),
        }))
    }
}

/// A project as seen by a caller.
#[derive(Debug, Clone)]
pub struct ProjectAccess {
    pub project: ProjectRow,
    /// The caller's membership role, if a member.
    pub role: Option<ProjectRole>,
    /// Owner rights: an owner, or an admin.
    pub owner: bool,
}

/// 403 for what only a project's owners (and admins) may do.
pub fn owner_only() -> ApiError {
    ApiError::Forbidden {
        message: "only a project owner may do this".into(),
        required_scope: None,
    }
}

/// Resolves a project by id or slug; 404 unless the caller may see it (blocking).
pub fn project_access(
    conn: &Connection,
    who: &Principal,
    key: &str,
) -> Result<ProjectAccess, ApiError> {
    let not_found = || ApiError::NotFound("project not found".into());
    let project = store::projects::find(conn, key)?.ok_or_else(not_found)?;
    visible(conn, who, project).map_err(|e| match e {
        Some(e) => e,
        None => not_found(),
    })
}

fn visible(
    conn: &Connection,
    who: &Principal,
    project: ProjectRow,
) -> Result<ProjectAccess, Option<ApiError>> {
    match &who.credential {
        Credential::Key(k) if k.project_id == project.id => Ok(ProjectAccess {
            project,
            role: None,
            owner: false,
        }),
        Credential::Key(_) => Err(None),
        Credential::Session(u) => {
            let role = store::projects::member_role(conn, &project.id, &u.id)
                .map_err(|e| Some(e.into()))?;
            if role.is_none() && !u.is_admin() {
                return Err(None);
            }
            let owner = u.is_admin() || role == Some(ProjectRole::Owner);
            Ok(ProjectAccess {
                project,
                role,
                owner,
            })
        }
    }
}

/// Resolves a server by id or slug; 404 unless the caller may see its project (blocking).
pub fn server_access(
    conn: &Connection,
    who: &Principal,
    key: &str,
) -> Result<(ServerRow, ProjectAccess), ApiError> {
    let not_found = || ApiError::NotFound("server not found".into());
    let server = store::servers::find(conn, key)?.ok_or_else(not_found)?;
    let project = store::projects::find(conn, &server.project_id)?.ok_or_else(not_found)?;
    let access = visible(conn, who, project).map_err(|e| e.unwrap_or_else(not_found))?;
    Ok((server, access))
}

/// API key last-use times, written in batches rather than once per request.
#[derive(Default)]
pub struct KeyUsage {
    pending: Mutex<HashMap<String, i64>>,
}

impl KeyUsage {
    pub fn record(&self, key_id: &str, at: i64) {
        if let Ok(mut m) = self.pending.lock() {
            m.insert(key_id.to_owned(), at);
        }
    }

    /// The newest known use, including one not yet written.
    pub fn latest(&self, key_id: &str, stored: Option<i64>) -> Option<i64> {
        let pending = self
            .pending
            .lock()
            .ok()
            .and_then(|m| m.get(key_id).copied());
        pending.max(stored)
    }

    pub fn take(&self) -> Vec<(String, i64)> {
        self.pending
            .lock()
            .map(|mut m| m.drain().collect())
            .unwrap_or_default()
    }

    /// Writes pending uses (blocking).
    pub fn flush(&self, conn: &mut Connection) -> Result<(), StoreError> {
        let uses = self.take();
        if uses.is_empty() {
            return Ok(());
        }
        store::api_keys::touch_many(conn, &uses)
    }
}

/// The token a request presents: `Authorization: Bearer …`, else the session cookie (`true`).
pub(super) fn presented(req: &HttpRequest) -> Result<Option<(String, bool)>, ApiError> {
    if let Some(h) = req.headers().get(actix_web::http::header::AUTHORIZATION) {
        let value = h
            .to_str()
            .map_err(|_| ApiError::Unauthenticated("malformed Authorization header".into()))?;
        let token = bearer_token(value).ok_or_else(|| {
            ApiError::Unauthenticated("Authorization must be a Bearer token".into())
        })?;
        return Ok(Some((token.to_owned(), false)));
    }
    Ok(session_cookie_value(req).map(|t| (t, true)))
}

/// The token of an `Authorization: Bearer …` value.
fn bearer_token(value: &str) -> Option<&str> {
    value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

fn is_unsafe(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

impl FromRequest for Principal {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let services = Needs::of(req);
        let presented = presented(req);
        let address = req.peer_addr().map(|a| a.ip().to_string());
        let unsafe_method = is_unsafe(req.method());
        let origin = req
            .headers()
            .get(actix_web::http::header::ORIGIN)
            .map(|o| o.to_str().unwrap_or("invalid").to_owned());
        Box::pin(async move {
            let Needs {
                store,
                control,
                gateway,
            } = services?;
            let (token, via_cookie) = presented?
                .ok_or_else(|| ApiError::Unauthenticated("authentication required".into()))?;
            // CSRF: a cookie-authenticated unsafe request must come from our own origin.
            if via_cookie
                && unsafe_method
                && origin
                    .as_deref()
                    .is_some_and(|o| o != gateway.urls.public_url())
            {
                return Err(ApiError::Forbidden {
                    message: "cross-origin request refused".into(),
                    required_scope: None,
                });
            }
            let credential = authenticate(&store, &control, token).await?;
            Ok(Principal {
                credential,
                address,
            })
        })
    }
}

/// What the extractor needs: the store (sessions, keys), the control API's state (limiter,
/// key usage) and the gateway service (our own origin, for the CSRF check).
struct Needs {
    store: web::Data<Store>,
    control: web::Data<ControlState>,
    gateway: web::Data<Gateway>,
}

impl Needs {
    fn of(req: &HttpRequest) -> Result<Self, ApiError> {
        Ok(Self {
            store: service(req)?,
            control: service(req)?,
            gateway: service(req)?,
        })
    }
}

/// A registered service; a missing one is a server fault (500, logged), never a panic.
pub(super) fn service<T: 'static>(req: &HttpRequest) -> Result<web::Data<T>, ApiError> {
    req.app_data::<web::Data<T>>().cloned().ok_or_else(|| {
        ApiError::Internal(anyhow::anyhow!(
            "service {} not registered",
            std::any::type_name::<T>()
        ))
    })
}

/// Whether `token` is a live session or API key (noting it as verified for the rate limit).
pub(super) async fn verifies(store: &Store, control: &ControlState, token: &str) -> bool {
    authenticate(store, control, token.to_owned()).await.is_ok()
}

async fn authenticate(
    store: &Store,
    control: &ControlState,
    token: String,
) -> Result<Credential, ApiError> {
    let now = crate::domain::now();
    let hash = crypto::token_hash(&token);
    if token.starts_with(SESSION_PREFIX) {
        let found = store
            .run(move |c| store::sessions::lookup(c, &hash, now).map(|u| (u, hash)))
            .await?;
        return match found {
            (Some((u, expires_at)), hash) => {
                control.limiter.verified(&hash);
                Ok(Credential::Session(SessionUser {
                    id: u.id,
                    email: u.email,
                    role: u.role,
                    token_hash: hash,
                    expires_at,
                    created_at: u.created_at,
                    updated_at: u.updated_at,
                }))
            }
            (None, _) => Err(ApiError::Unauthenticated(
                "session expired or invalid; sign in again".into(),
            )),
        };
    }
    if token.starts_with(LIVE_KEY_PREFIX) || token.starts_with(TEST_KEY_PREFIX) {
        let key = store
            .run(move |c| store::api_keys::by_hash(c, &hash, now).map(|k| (k, hash)))
            .await?;
        return match key {
            (Some(k), hash) => {
                control.limiter.verified(&hash);
                control.key_usage.record(&k.id, now);
                Ok(Credential::Key(KeyPrincipal {
                    scopes: ApiScopes::from_stored(&k.scopes),
                    id: k.id,
                    project_id: k.project_id,
                    expires_at: k.expires_at,
                }))
            }
            (None, _) => Err(ApiError::Unauthenticated(
                "API key revoked, expired or unknown".into(),
            )),
        };
    }
    Err(ApiError::Unauthenticated("unrecognised credential".into()))
}

#[cfg(test)]
mod tests {
    use actix_web::http::StatusCode;
    use actix_web::{App, test, web};

    use super::Principal;

    async fn whoami(_: Principal) -> &'static str {
        "ok"
    }

    fn request() -> actix_web::test::TestRequest {
        test::TestRequest::get()
            .uri("/")
            .insert_header(("Authorization", "Bearer ezf_live_x"))
    }

    /// Without its services, the extractor answers 500 in the API's error shape; no panic.
    #[actix_web::test]
    async fn the_extractor_without_its_services_is_a_500() {
        let app = test::init_service(App::new().route("/", web::get().to(whoami))).await;
        let res = test::call_service(&app, request().to_request()).await;
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body: serde_json::Value = test::read_body_json(res).await;
        assert_eq!(body["error"]["code"], "INTERNAL");
    }

    /// The rate limit never lets a request through unlimited for want of its limiter.
    #[actix_web::test]
    async fn the_rate_limit_without_its_services_is_a_500() {
        let app = test::init_service(
            App::new()
                .wrap(actix_web::middleware::from_fn(
                    super::super::rate_limit::limit,
                ))
                .route("/", web::get().to(|| async { "reached" })),
        )
        .await;
        let res = test::call_service(&app, request().to_request()).await;
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body: serde_json::Value = test::read_body_json(res).await;
        assert_eq!(body["error"]["code"], "INTERNAL");
    }
}
