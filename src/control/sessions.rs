//! Sign-in for people: `POST /v1/auth/login` (cookie for browsers, bearer token for the CLI),
//! logout, the current session, and accepting an invite.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use super::ControlState;
use super::auth::Principal;
use super::{data, no_content, time};
use crate::crypto;
use crate::domain::{self, Secret, password};
use crate::error::ApiError;
use crate::services::accounts::{Accounts, LoginError};
use crate::store::{self, Store, audit::Actor, users::UserRow};

pub fn user_json(u: &UserRow) -> serde_json::Value {
    json!({
        "id": u.id,
        "email": u.email,
        "role": u.role,
        "createdAt": domain::rfc3339(u.created_at),
        "updatedAt": domain::rfc3339(u.updated_at),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    email: Option<String>,
    password: Option<Secret>,
}

/// Same answer, in about the same time, for an unknown email and a wrong password.
fn invalid_credentials() -> ApiError {
    ApiError::Unauthenticated("invalid email or password".into())
}

pub async fn login(
    accounts: web::Data<Accounts>,
    req: HttpRequest,
    body: web::Json<LoginBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let email = body
        .email
        .filter(|e| !e.is_empty())
        .ok_or_else(|| ApiError::validation("email", "required"))?;
    let pw = body
        .password
        .ok_or_else(|| ApiError::validation("password", "required"))?;
    let address = req.peer_addr().map(|a| a.ip().to_string());
    let user = match accounts.verify_login(&email, pw, address.as_deref()).await {
        Ok(u) => u,
        Err(LoginError::Invalid) => return Err(invalid_credentials()),
        Err(LoginError::Throttled(wait)) => {
            return Err(ApiError::RateLimited { retry_after: wait });
        }
        Err(LoginError::Store(e)) => return Err(e.into()),
    };
    let (token, expires_at) = accounts.start_session(&user, address).await?;
    let ttl = accounts.session_ttl_secs();
    let cookie = accounts.session_cookie(token.expose(), ttl);
    let mut res = data(
        StatusCode::OK,
        json!({ "user": user_json(&user), "expiresAt": domain::rfc3339(expires_at), "token": token.expose() }),
    );
    res.add_cookie(&cookie)
        .map_err(|e| ApiError::Internal(e.into()))?;
    res.headers_mut().insert(
        actix_web::http::header::CACHE_CONTROL,
        actix_web::http::header::HeaderValue::from_static("no-store"),
    );
    Ok(res)
}

pub async fn logout(
    store: web::Data<Store>,
    accounts: web::Data<Accounts>,
    control: web::Data<ControlState>,
    who: Principal,
) -> Result<HttpResponse, ApiError> {
    let user = who.session()?.clone();
    let actor = who.actor();
    store
        .write(move |tx| {
            store::sessions::delete(tx, &user.token_hash)?;
            store::audit::record(tx, &actor, "session.delete", Some(&user.id), None, None)?;
            Ok::<_, store::StoreError>(())
        })
        .await?;
    control.access_changed();
    let mut res = no_content();
    let mut gone = accounts.session_cookie("", 0);
    gone.make_removal();
    res.add_cookie(&gone)
        .map_err(|e| ApiError::Internal(e.into()))?;
    Ok(res)
}

pub async fn current(who: Principal) -> Result<HttpResponse, ApiError> {
    let u = who.session()?;
    Ok(data(
        StatusCode::OK,
        json!({
            "user": {
                "id": u.id, "email": u.email, "role": u.role,
                "createdAt": domain::rfc3339(u.created_at), "updatedAt": domain::rfc3339(u.updated_at),
            },
            "expiresAt": time(Some(u.expires_at)),
        }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InviteBody {
    token: Option<Secret>,
    password: Option<Secret>,
}

/// `POST /v1/auth/invite {token, password}`: sets the password of a user an admin created
/// without one; or, with the token of a project invitation an instance admin sent, creates the
/// account of its email (which no account has yet) and joins the project. Anyone else's
/// invitation is refused `403`, alike whether or not its email has an account.
pub async fn accept_invite(
    store: web::Data<Store>,
    req: HttpRequest,
    body: web::Json<InviteBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let token = body
        .token
        .ok_or_else(|| ApiError::validation("token", "required"))?;
    let pw = body
        .password
        .ok_or_else(|| ApiError::validation("password", "required"))?;
    check_password_rules(&pw)?;
    let token_hash = crypto::token_hash(token.expose());
    let now = domain::now();
    // A made-up token, or an invitation that may not make an account, must not cost a
    // password hash (19 MiB and tens of ms each).
    let th = token_hash.clone();
    if !store
        .run(move |c| {
            Ok::<_, ApiError>(
                store::users::invite_exists(c, &th, now)?
                    || super::membership::may_create_account(c, &th, now)?,
            )
        })
        .await?
    {
        return Err(invite_not_found());
    }
    let hash = web::block(move || password::hash(&pw))
        .await
        .map_err(|e| ApiError::Internal(e.into()))?
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("{e}")))?;
    let address = req.peer_addr().map(|a| a.ip().to_string());
    let user = store
        .write(move |tx| {
            let Some(user_id) = store::users::take_invite(tx, &token_hash, now)? else {
                return super::membership::join_as_new_account(
                    tx,
                    &token_hash,
                    &hash,
                    now,
                    address,
                );
            };
            store::users::set_password(tx, &user_id, &hash, now)?;
            let actor = Actor {
                id: user_id.clone(),
                address,
            };
            store::audit::record(tx, &actor, "user.accept_invite", Some(&user_id), None, None)?;
            let user = store::users::by_id(tx, &user_id)?
                .ok_or_else(|| ApiError::NotFound("user not found".into()))?;
            Ok::<_, ApiError>(user)
        })
        .await?;
    Ok(data(StatusCode::OK, user_json(&user)))
}

fn invite_not_found() -> ApiError {
    ApiError::NotFound("invite not found or expired".into())
}

pub fn check_password_rules(pw: &Secret) -> Result<(), ApiError> {
    let n = pw.expose().chars().count();
    if n < password::MIN_LENGTH {
        return Err(ApiError::validation(
            "password",
            format!("must be at least {} characters", password::MIN_LENGTH),
        ));
    }
    if pw.expose().len() > password::MAX_LENGTH {
        return Err(ApiError::validation(
            "password",
            format!("must be at most {} bytes", password::MAX_LENGTH),
        ));
    }
    Ok(())
}
