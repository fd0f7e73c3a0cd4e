//! `grant_type=client_credentials`: machine agents with a client secret, for one resource.
//! No user, no refresh token; `sub` is the client.

use std::sync::Arc;

use crate::oauth::clients::Client;
use crate::oauth::issuer::Issuer;
use crate::oauth::params::Params;
use crate::oauth::{OAuthError, tokens};

use super::{GrantExchange, Issued, sign_error};

pub async fn exchange(
    grants: &GrantExchange,
    client: &Arc<Client>,
    params: &Params,
    issuer: &Issuer,
) -> Result<Issued, OAuthError> {
    if !client.is_confidential() {
        return Err(OAuthError::unauthorized_client(
            "client_credentials is for confidential clients",
        ));
    }
    let server = issuer.target(&grants.gateway, &params.all("resource"))?;
    // A machine identity is given by the server's project (`POST /v1/servers/:id/clients`),
    // never taken by anonymous registration: no user consents to this grant.
    match &client.server_id {
        Some(id) if id == &server.id => {}
        Some(_) => {
            return Err(OAuthError::invalid_target(
                "this client is registered for another server",
            ));
        }
        None => {
            return Err(OAuthError::unauthorized_client(
                "client_credentials is for clients registered for the server in the control API",
            ));
        }
    }
    let allowed: &[String] = client.scopes.as_deref().unwrap_or(&server.scopes_supported);
    let scopes: Vec<String> = match params.get("scope") {
        Some(s) => {
            let v: Vec<String> = s.split_whitespace().map(str::to_owned).collect();
            if let Some(bad) = v.iter().find(|x| {
                !allowed.contains(x)
                    || !server.scopes_supported.contains(x)
                    || *x == "offline_access"
            }) {
                return Err(OAuthError::invalid_scope(format!(
                    "the scope {bad} is not available to this client"
                )));
            }
            v
        }
        None => allowed
            .iter()
            .filter(|s| server.scopes_supported.contains(s) && *s != "offline_access")
            .cloned()
            .collect(),
    };
    let scope = scopes.join(" ");
    let (access_token, expires_in) = tokens::access_token(
        &grants.config,
        &grants.keys,
        &tokens::AccessToken {
            iss: &issuer.url,
            sub: &client.client_id,
            client_id: &client.client_id,
            resource: &server.resource,
            scope: &scope,
            grant_id: None,
        },
    )
    .map_err(sign_error)?;
    Ok(Issued {
        access_token,
        expires_in,
        scope,
        refresh_token: None,
        id_token: None,
    })
}
