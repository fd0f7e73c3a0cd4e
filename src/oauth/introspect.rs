//! Token introspection (RFC 7662), for authenticated confidential clients.

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

use super::client_auth::{self, ClientAuth};
use super::{OAuthError, clients, params};
use crate::crypto;
use crate::services::gateway::Gateway;
use crate::services::keys::Keyring;
use crate::services::revocations::RevokedGrants;
use crate::store::{self, Store};

pub async fn introspect(
    req: HttpRequest,
    clients: ClientAuth,
    store: web::Data<Store>,
    gateway: web::Data<Gateway>,
    keys: web::Data<Keyring>,
    revoked: web::Data<RevokedGrants>,
    super::Body(body): super::Body,
) -> Result<HttpResponse, OAuthError> {
    let params = params::form(&req, &body)?;
    let issuer = super::issuer::Issuer::of(&req, &gateway)?;
    let client = client_auth::authenticate(&clients, &req, &params, &issuer, "introspect").await?;
    if !client.is_confidential() {
        return Err(OAuthError::invalid_client(
            "introspection is for confidential clients",
        ));
    }
    let token = params.require("token")?.to_owned();
    let inactive = || {
        HttpResponse::Ok()
            .insert_header(("Cache-Control", "no-store"))
            .json(json!({ "active": false }))
    };
    // An access token of ours?
    if jsonwebtoken::decode_header(&token).is_ok() {
        let Some(c) = super::tokens::verify_ours(&keys, &gateway.urls, &token, true) else {
            return Ok(inactive());
        };
        // An ID token is not an access token.
        if c.get("scope").is_none() {
            return Ok(inactive());
        }
        let revoked = match c.get("gid").and_then(|g| g.as_str()) {
            Some(g) => revoked.is_revoked(g),
            None => c
                .get("client_id")
                .and_then(|id| id.as_str())
                .is_some_and(|id| revoked.is_client_revoked(id)),
        };
        let audiences: Vec<&str> = match &c["aud"] {
            serde_json::Value::String(a) => vec![a.as_str()],
            serde_json::Value::Array(a) => a.iter().filter_map(|a| a.as_str()).collect(),
            _ => Vec::new(),
        };
        if revoked || !may_see(&gateway, &client, c["client_id"].as_str(), &audiences) {
            return Ok(inactive());
        }
        return Ok(HttpResponse::Ok().insert_header(("Cache-Control", "no-store")).json(json!({
            "active": true, "token_type": "Bearer", "scope": c["scope"], "client_id": c["client_id"], "sub": c["sub"],
            "aud": c["aud"], "iss": c["iss"], "exp": c["exp"], "iat": c["iat"], "jti": c["jti"],
        })));
    }
    // A refresh token?
    let hash = crypto::token_hash(&token);
    let now = crate::domain::now();
    let found = store
        .run(move |c| {
            let Some(r) = store::grants::refresh(c, &hash)? else {
                return Ok(None);
            };
            let g = store::grants::grant(c, &r.grant_id)?;
            Ok::<_, store::StoreError>(g.map(|g| (r, g)))
        })
        .await?;
    match found {
        Some((r, g))
            if r.rotated_at.is_none()
                && r.expires_at > now
                && g.revoked_at.is_none()
                && may_see(&gateway, &client, Some(&r.client_id), &[g.resource.as_str()]) =>
        {
            Ok(HttpResponse::Ok().insert_header(("Cache-Control", "no-store")).json(json!({
                "active": true, "token_type": "refresh_token", "scope": r.scopes, "client_id": r.client_id,
                "sub": g.user_id, "aud": g.resource, "iss": gateway.urls.public_url(), "exp": r.expires_at, "iat": r.created_at,
            })))
        }
        _ => Ok(inactive()),
    }
}

/// RFC 7662 §2.1: a caller learns about a token only if it was issued to it, or if the caller
/// is registered for the server the token is for (a resource server checking its own tokens).
/// Any other token reads as inactive.
fn may_see(
    gateway: &Gateway,
    caller: &clients::Client,
    issued_to: Option<&str>,
    audiences: &[&str],
) -> bool {
    if issued_to == Some(caller.client_id.as_str()) {
        return true;
    }
    let Some(own) = &caller.server_id else {
        return false;
    };
    audiences.iter().any(|aud| {
        gateway
            .registry
            .by_resource(aud)
            .is_some_and(|s| &s.id == own)
    })
}
