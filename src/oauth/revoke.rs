//! Token revocation (RFC 7009). Revoking a refresh token or an access token ends its whole
//! grant: refresh tokens stop working and access tokens fail at the front door at once.

use actix_web::{HttpRequest, HttpResponse, web};

use super::params;
use super::{OAuthError, client_auth};
use crate::app::AppState;
use crate::crypto;
use crate::store;

/// The grant an access token of ours belongs to, if its signature checks out.
pub fn access_token_grant(state: &AppState, token: &str) -> Option<(String, String)> {
    let claims = super::tokens::verify_ours(&state.keys, &state.gateway.urls, token, false)?;
    let gid = claims.get("gid")?.as_str()?.to_owned();
    let client = claims.get("client_id")?.as_str()?.to_owned();
    Some((gid, client))
}

pub async fn revoke(
    req: HttpRequest,
    state: web::Data<AppState>,
    super::Body(body): super::Body,
) -> Result<HttpResponse, OAuthError> {
    let params = params::form(&req, &body)?;
    let token = params.require("token")?.to_owned();
    let issuer = super::issuer::Issuer::of(&req, &state.gateway)?;
    let client = client_auth::authenticate(
        &client_auth::ClientAuth {
            store: &state.store,
            oauth: &state.oauth,
            outbound: &state.outbound,
            urls: &state.gateway.urls,
        },
        &req,
        &params,
        &issuer,
        "revoke",
    )
    .await?;
    let client_id = client.client_id.clone();
    let access_grant = access_token_grant(&state, &token);
    let st = state.clone();
    state
        .store
        .write(move |tx| {
            let grant = match access_grant {
                Some((gid, owner)) if owner == client_id => Some(gid),
                Some(_) => None,
                None => store::grants::refresh(tx, &crypto::token_hash(&token))?
                    .filter(|r| r.client_id == client_id)
                    .map(|r| r.grant_id),
            };
            if let Some(gid) = grant {
                super::grant_types::revoke_now(&st, tx, &gid)?;
            }
            Ok::<_, store::StoreError>(())
        })
        .await?;
    // RFC 7009 §2.2: 200 whether or not the token was valid.
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .finish())
}
