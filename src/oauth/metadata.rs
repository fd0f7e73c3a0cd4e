//! RFC 8414 authorization server metadata (also served as OpenID discovery) and the JWKS: for
//! the root issuer, and for each managed server's own issuer.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

use super::client_auth::AUTH_METHODS;
use super::clients::ASSERTION_ALGORITHMS;
use super::issuer::Issuer;
use super::oidc::{CLAIMS_SUPPORTED, OIDC_SCOPES};
use crate::domain::scopes::MCP_SCOPES;
use crate::services::gateway::Gateway;
use crate::services::gateway::urls::ServerUrls;
use crate::services::keys::Keyring;

fn document(urls: &ServerUrls, issuer: &Issuer) -> serde_json::Value {
    let iss = &issuer.url;
    let scopes: Vec<&str> = MCP_SCOPES
        .iter()
        .chain(OIDC_SCOPES.iter())
        .copied()
        .collect();
    json!({
        "issuer": iss,
        "authorization_endpoint": issuer.endpoint("authorize"),
        "token_endpoint": issuer.endpoint("token"),
        "registration_endpoint": issuer.endpoint("register"),
        "revocation_endpoint": issuer.endpoint("revoke"),
        "introspection_endpoint": issuer.endpoint("introspect"),
        "userinfo_endpoint": issuer.endpoint("userinfo"),
        "jwks_uri": format!("{}/oauth/jwks.json", urls.public_url()),
        "scopes_supported": scopes,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": AUTH_METHODS,
        "token_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGORITHMS,
        "revocation_endpoint_auth_methods_supported": AUTH_METHODS,
        "revocation_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGORITHMS,
        "introspection_endpoint_auth_methods_supported": &AUTH_METHODS[1..],
        "introspection_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGORITHMS,
        "client_id_metadata_document_supported": true,
        "authorization_response_iss_parameter_supported": true,
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "claims_supported": CLAIMS_SUPPORTED,
        "claims_parameter_supported": false,
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
    })
}

fn respond(body: serde_json::Value) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"))
        .json(body)
}

/// The metadata of the root issuer, or of the managed server the path names (RFC 8414 §3's
/// path-inserted form, and the OpenID form appended to the issuer). One document serves both
/// names: OAuth and OpenID discovery say the same.
pub async fn authorization_server(req: HttpRequest, gateway: web::Data<Gateway>) -> HttpResponse {
    match Issuer::of(&req, &gateway) {
        Ok(issuer) => respond(document(&gateway.urls, &issuer)),
        Err(e) => actix_web::ResponseError::error_response(&e),
    }
}

pub async fn jwks(keys: web::Data<Keyring>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "application/json"))
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"))
        .body(keys.current().jwks.clone())
}
