//! People's accounts as both sign-in surfaces use them (the control API's `POST /v1/auth/login`
//! and the authorization server's login page): the password check with its failed-login
//! throttle, sessions, and the session cookie — built here, and only here.

use std::sync::Arc;
use std::time::Duration;

use actix_web::cookie::{Cookie, SameSite};
use actix_web::{HttpRequest, web};

use crate::crypto;
use crate::domain::{self, Secret, password};
use crate::shared::rate_limit::{Limiter, LoginThrottle};
use crate::store::{self, Store, StoreError, audit::Actor, users::UserRow};

/// The session cookie over plain HTTP.
pub const SESSION_COOKIE: &str = "ezf_session";
/// The session cookie over HTTPS: `__Host-` binds it to this origin (Secure, `Path=/`, no
/// `Domain`), so no sibling host can set or shadow it.
pub const HOST_SESSION_COOKIE: &str = "__Host-ezf_session";
/// What every session token starts with.
pub const SESSION_PREFIX: &str = "ezf_sess_";

pub struct Accounts {
    store: Store,
    throttle: LoginThrottle,
    /// The control API's limiter: a new session gets a bucket of its own at once.
    api_limiter: Arc<Limiter>,
    session_ttl: Duration,
    /// `public_url` is https: cookies are Secure and `__Host-`.
    secure: bool,
}

pub enum LoginError {
    Invalid,
    Throttled(u64),
    Store(StoreError),
}

/// Someone signed in with a session cookie.
pub struct SignedIn {
    pub user: UserRow,
    /// When the session began (OpenID Connect's `auth_time`).
    pub auth_time: i64,
}

impl Accounts {
    pub fn new(
        store: Store,
        throttle: LoginThrottle,
        api_limiter: Arc<Limiter>,
        session_ttl: Duration,
        public_url: &str,
    ) -> Self {
        Self {
            store,
            throttle,
            api_limiter,
            session_ttl,
            secure: public_url.starts_with("https://"),
        }
    }

    pub fn session_ttl_secs(&self) -> i64 {
        self.session_ttl.as_secs() as i64
    }

    /// Checks an email and password (argon2 on the blocking pool) with throttling per account
    /// and per address.
    pub async fn verify_login(
        &self,
        email: &str,
        pw: Secret,
        address: Option<&str>,
    ) -> Result<UserRow, LoginError> {
        // Longer than any address or password we accept: wrong, and not worth a throttle entry
        // (whose key would be the email) or a hash.
        if email.len() > 254 || pw.expose().len() > password::MAX_LENGTH {
            return Err(LoginError::Invalid);
        }
        let account_key = format!("acct:{}", email.to_lowercase());
        let address_key = format!("addr:{}", address.unwrap_or("-"));
        if let Err(wait) = self.throttle.check(&[&account_key, &address_key]) {
            return Err(LoginError::Throttled(wait));
        }
        let email_owned = email.to_owned();
        let user = self
            .store
            .run(move |c| {
                let user = store::users::by_email(c, &email_owned)?;
                let hash = user.as_ref().and_then(|u| u.password_hash.as_deref());
                let ok = password::verify(&pw, hash);
                Ok::<_, StoreError>(user.filter(|_| ok))
            })
            .await
            .map_err(LoginError::Store)?;
        match user {
            Some(u) => {
                self.throttle.succeeded(&account_key);
                Ok(u)
            }
            None => {
                self.throttle.failed(&[&account_key, &address_key]);
                Err(LoginError::Invalid)
            }
        }
    }

    /// Creates a session for `user`; returns the token (shown once) and its expiry.
    pub async fn start_session(
        &self,
        user: &UserRow,
        address: Option<String>,
    ) -> Result<(Secret, i64), StoreError> {
        let token = crypto::new_token(SESSION_PREFIX);
        let hash = crypto::token_hash(token.expose());
        // A new session is limited on its own bucket from its first request.
        self.api_limiter.verified(&hash);
        let now = domain::now();
        let expires_at = now + self.session_ttl_secs();
        let user_id = user.id.clone();
        self.store
            .write(move |tx| {
                store::sessions::create(tx, &hash, &user_id, now, expires_at)?;
                let actor = Actor {
                    id: user_id.clone(),
                    address,
                };
                store::audit::record(tx, &actor, "session.create", Some(&user_id), None, None)?;
                Ok::<_, StoreError>(())
            })
            .await?;
        Ok((token, expires_at))
    }

    /// The user of the request's session cookie, if the session is live.
    pub async fn signed_in(&self, req: &HttpRequest) -> Option<SignedIn> {
        let token = session_cookie_value(req)?;
        let hash = crypto::token_hash(&token);
        let now = domain::now();
        self.store
            .run(move |c| {
                let Some((user, _)) = store::sessions::lookup(c, &hash, now)? else {
                    return Ok(None);
                };
                let auth_time = store::sessions::started_at(c, &hash)?.unwrap_or(now);
                Ok::<_, StoreError>(Some(SignedIn { user, auth_time }))
            })
            .await
            .ok()
            .flatten()
    }

    /// The session cookie: HttpOnly, SameSite=Lax, `Path=/`; over https Secure and
    /// `__Host-ezf_session`. `max_age` 0 with [`Cookie::make_removal`] ends it.
    pub fn session_cookie<'a>(&self, value: &'a str, max_age: i64) -> Cookie<'a> {
        let name = if self.secure {
            HOST_SESSION_COOKIE
        } else {
            SESSION_COOKIE
        };
        Cookie::build(name, value)
            .path("/")
            .http_only(true)
            .secure(self.secure)
            .same_site(SameSite::Lax)
            .max_age(actix_web::cookie::time::Duration::seconds(max_age))
            .finish()
    }

    pub fn secure(&self) -> bool {
        self.secure
    }
}

/// The session token a request's cookie carries: over https only `__Host-ezf_session` (a plain
/// `ezf_session` there may have been set by a sibling host, to sign the browser in as someone
/// else), over http `ezf_session`. Without the accounts service, https is assumed.
pub fn session_cookie_value(req: &HttpRequest) -> Option<String> {
    let secure = req
        .app_data::<web::Data<Accounts>>()
        .is_none_or(|a| a.secure);
    let name = if secure {
        HOST_SESSION_COOKIE
    } else {
        SESSION_COOKIE
    };
    req.cookie(name).map(|c| c.value().to_owned())
}
