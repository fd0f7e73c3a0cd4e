//! OpenID Connect on top of the authorization server: a request with the `openid` scope gets
//! an ID token for the client (`iss sub aud nonce auth_time`, and `email`/`name` when those
//! scopes were granted), and the access token reads the user's claims at `userinfo`. What the
//! MCP server's token allows is unchanged: these scopes say who the user is, nothing more.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use jsonwebtoken::{Algorithm, Header};
use serde::Serialize;
use serde_json::json;

use super::params::Params;
use super::{OAuthError, tokens};
use crate::config::Config;
use crate::domain;
use crate::services::gateway::Gateway;
use crate::services::keys::Keyring;
use crate::services::revocations::RevokedGrants;
use crate::store::{self, Store};

pub const OPENID: &str = "openid";
pub const OIDC_SCOPES: [&str; 3] = [OPENID, "profile", "email"];
pub const CLAIMS_SUPPORTED: [&str; 11] = [
    "iss",
    "sub",
    "aud",
    "exp",
    "iat",
    "auth_time",
    "nonce",
    "email",
    "email_verified",
    "name",
    "preferred_username",
];

/// Is `scope` one of OpenID Connect's (which describe the user, not the MCP server)?
pub fn is_oidc_scope(scope: &str) -> bool {
    OIDC_SCOPES.contains(&scope)
}

fn has(scopes: &str, wanted: &str) -> bool {
    scopes.split_whitespace().any(|s| s == wanted)
}

/// The user's claims that `scopes` release. Accounts have an email and no other name.
fn user_claims(scopes: &str, email: &str) -> serde_json::Map<String, serde_json::Value> {
    let mut claims = serde_json::Map::new();
    if has(scopes, "email") {
        claims.insert("email".into(), json!(email));
        // An administrator set it, or the user accepted an invitation sent to it; it is not
        // verified by mail.
        claims.insert("email_verified".into(), json!(false));
    }
    if has(scopes, "profile") {
        claims.insert("name".into(), json!(email));
        claims.insert("preferred_username".into(), json!(email));
    }
    claims
}

#[derive(Serialize)]
struct IdClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    exp: i64,
    iat: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    auth_time: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<&'a str>,
    #[serde(flatten)]
    user: serde_json::Map<String, serde_json::Value>,
}

/// What an ID token says about its user.
pub struct IdToken<'a> {
    pub iss: &'a str,
    pub client_id: &'a str,
    pub user_id: &'a str,
    pub email: &'a str,
    pub scopes: &'a str,
    pub nonce: Option<&'a str>,
    pub auth_time: Option<i64>,
}

/// An ES256 ID token, valid as long as an access token, when `openid` was granted.
pub fn id_token(
    config: &Config,
    keyring: &Keyring,
    t: &IdToken<'_>,
) -> Result<Option<String>, OAuthError> {
    if !has(t.scopes, OPENID) {
        return Ok(None);
    }
    let now = domain::now();
    let keys = keyring.current();
    let mut header = Header::new(Algorithm::ES256);
    header.typ = Some("JWT".into());
    header.kid = Some(keys.active.kid.clone());
    let claims = IdClaims {
        iss: t.iss,
        sub: t.user_id,
        aud: t.client_id,
        exp: now + config.auth.access_token_ttl.as_secs(),
        iat: now,
        auth_time: t.auth_time,
        nonce: t.nonce,
        user: user_claims(t.scopes, t.email),
    };
    jsonwebtoken::encode(&header, &claims, &keys.active.encoding)
        .map(Some)
        .map_err(OAuthError::server_error)
}

/// A `nonce` as an authorization request may carry it: printable, at most 512 characters.
pub fn valid_nonce(nonce: &str) -> bool {
    nonce.len() <= 512 && nonce.chars().all(|c| (' '..='~').contains(&c))
}

fn bearer_error(status: StatusCode, code: &str, desc: &str) -> HttpResponse {
    let challenge = format!("Bearer error=\"{code}\", error_description=\"{desc}\"");
    let mut res = HttpResponse::build(status);
    res.insert_header((header::CACHE_CONTROL, "no-store"));
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        res.insert_header((header::WWW_AUTHENTICATE, v));
    }
    res.json(json!({ "error": code, "error_description": desc }))
}

/// `GET/POST …/userinfo` (OpenID Connect Core §5.3): the claims of the access token's user,
/// as its scopes allow. The token comes in the `Authorization` header (or, RFC 6750 §2.2, as
/// `access_token` in a form body).
pub async fn userinfo(
    req: HttpRequest,
    keys: web::Data<Keyring>,
    gateway: web::Data<Gateway>,
    revoked: web::Data<RevokedGrants>,
    store: web::Data<Store>,
    super::Body(body): super::Body,
) -> HttpResponse {
    let from_header = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim().to_owned());
    let from_body = (req.method() == actix_web::http::Method::POST && !body.is_empty())
        .then(|| Params::parse(&body).ok())
        .flatten()
        .and_then(|p| p.get("access_token").map(str::to_owned));
    let token = match (from_header, from_body) {
        (Some(t), None) | (None, Some(t)) => t,
        (Some(_), Some(_)) => {
            return bearer_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "send the access token once",
            );
        }
        (None, None) => {
            return HttpResponse::Unauthorized()
                .insert_header((header::WWW_AUTHENTICATE, "Bearer"))
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .json(json!({ "error": "invalid_request", "error_description": "an access token is required" }));
        }
    };
    let invalid = || {
        bearer_error(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "the access token is invalid, expired or revoked",
        )
    };
    let Some(claims) = tokens::verify_ours(&keys, &gateway.urls, &token, true) else {
        return invalid();
    };
    let (Some(scope), Some(sub)) = (
        claims.get("scope").and_then(|s| s.as_str()),
        claims.get("sub").and_then(|s| s.as_str()),
    ) else {
        return invalid();
    };
    match claims.get("gid").and_then(|g| g.as_str()) {
        Some(gid) if !revoked.is_revoked(gid) => {}
        // No grant: a machine's token (client_credentials), which has no user.
        _ => return invalid(),
    }
    if !has(scope, OPENID) {
        return bearer_error(
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            "the access token was not granted the openid scope",
        );
    }
    let (uid, scope) = (sub.to_owned(), scope.to_owned());
    let user = store.run(move |c| store::users::by_id(c, &uid)).await;
    match user {
        Ok(Some(u)) => {
            let mut out = user_claims(&scope, &u.email);
            out.insert("sub".into(), json!(u.id));
            HttpResponse::Ok()
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .json(out)
        }
        Ok(None) => invalid(),
        Err(e) => actix_web::ResponseError::error_response(&OAuthError::from(e)),
    }
}

/// The consent page's words for what an OpenID scope shares.
pub fn describe(scope: &str, email: &str) -> Option<String> {
    Some(match scope {
        OPENID => "Know who you are: your account's identifier on this server".to_owned(),
        "email" => format!("See your email address ({email})"),
        "profile" => format!("See your name (here, your email address {email})"),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_follow_the_scopes() {
        assert!(user_claims("openid", "a@b.c").is_empty());
        let c = user_claims("openid email", "a@b.c");
        assert_eq!(c["email"], "a@b.c");
        assert!(c.get("name").is_none());
        let c = user_claims("openid profile", "a@b.c");
        assert_eq!(c["name"], "a@b.c");
        assert!(c.get("email").is_none());
        assert!(valid_nonce("n-0S6_WzA2Mj"));
        assert!(!valid_nonce("a\nb"));
        assert!(!valid_nonce(&"n".repeat(513)));
    }
}
