//! `POST /oauth/token`: authenticates the client, dispatches on `grant_type`, answers with
//! `Cache-Control: no-store` and RFC 6749 §5.2 errors.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse};
use serde_json::json;

use super::OAuthError;
use super::client_auth::{self, ClientAuth};
use super::grant_types::{self, GrantExchange};
use super::issuer::Issuer;
use super::params;

pub async fn token(
    req: HttpRequest,
    clients: ClientAuth,
    grants: GrantExchange,
    super::Body(body): super::Body,
) -> Result<HttpResponse, OAuthError> {
    let issuer = Issuer::of(&req, &grants.gateway)?;
    let params = params::form(&req, &body)?;
    let grant_type = params.require("grant_type")?.to_owned();
    let client = client_auth::authenticate(&clients, &req, &params, &issuer, "token").await?;
    // refresh_token: checked against the grant (offline_access gives one to any client).
    if !client.may_use_grant(&grant_type)
        && matches!(
            grant_type.as_str(),
            "authorization_code" | "client_credentials"
        )
    {
        return Err(OAuthError::unauthorized_client(format!(
            "this client may not use the {grant_type} grant"
        )));
    }
    let issued = match grant_type.as_str() {
        "authorization_code" => {
            grant_types::authorization_code::exchange(&grants, &client, &params, &issuer).await?
        }
        "refresh_token" => {
            grant_types::refresh_token::exchange(&grants, &client, &params, &issuer).await?
        }
        "client_credentials" => {
            grant_types::client_credentials::exchange(&grants, &client, &params, &issuer).await?
        }
        other => {
            return Err(OAuthError::new(
                actix_web::http::StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                format!("grant_type {other:?} is not supported"),
            ));
        }
    };
    let mut body = json!({
        "access_token": issued.access_token,
        "token_type": "Bearer",
        "expires_in": issued.expires_in,
        "scope": issued.scope,
    });
    if let Some(rt) = issued.refresh_token {
        body["refresh_token"] = json!(rt);
    }
    if let Some(id) = issued.id_token {
        body["id_token"] = json!(id);
    }
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::PRAGMA, "no-cache"))
        .json(body))
}
