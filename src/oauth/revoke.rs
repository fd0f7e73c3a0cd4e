//! Token revocation (RFC 7009). Revoking a refresh token or an access token ends its whole
//! grant: refresh tokens stop working and access tokens fail at the front door at once.

use actix_web::{HttpRequest, HttpResponse, web};

use super::client_auth::{self, ClientAuth};
use super::{OAuthError, params};
use crate::crypto;
use crate::services::gateway::Gateway;
use crate::services::gateway::urls::ServerUrls;
use crate::services::keys::Keyring;
use crate::services::revocations::RevokedGrants;
use crate::store::{self, Store};

/// The grant an access token of ours belongs to, if its signature checks out.
pub fn access_token_grant(
    keys: &Keyring,
    urls: &ServerUrls,
    token: &str,
) -> Option<(String, String)> {
    let claims = super::tokens::verify_ours(keys, urls, token, false)?;
    let gid = claims.get("gid")?.as_str()?.to_owned();
    let client = claims.get("client_id")?.as_str()?.to_owned();
    Some((gid, client))
}

pub async fn revoke(
    req: HttpRequest,
    clients: ClientAuth,
    store: web::Data<Store>,
    gateway: web::Data<Gateway>,
    keys: web::Data<Keyring>,
    revoked: web::Data<RevokedGrants>,
    super::Body(body): super::Body,
) -> Result<HttpResponse, OAuthError> {
    let params = params::form(&req, &body)?;
    let token = params.require("token")?.to_owned();
    let issuer = super::issuer::Issuer::of(&req, &gateway)?;
    let client = client_auth::authenticate(&clients, &req, &params, &issuer, "revoke").await?;
    let client_id = client.client_id.clone();
    let access_grant = access_token_grant(&keys, &gateway.urls, &token);
    store
        .write(move |tx| {
            let grant = match access_grant {
                Some((gid, owner)) if owner == client_id => Some(gid),
                Some(_) => None,
                None => store::grants::refresh(tx, &crypto::token_hash(&token))?
                    .filter(|r| r.client_id == client_id)
                    .map(|r| r.grant_id),
            };
            if let Some(gid) = grant {
                super::grant_types::revoke_now(&revoked, tx, &gid)?;
            }
            Ok::<_, store::StoreError>(())
        })
        .await?;
    // RFC 7009 §2.2: 200 whether or not the token was valid.
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .finish())
}
