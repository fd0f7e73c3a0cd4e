//! Dynamic client registration (RFC 7591) and its management protocol (RFC 7592) with the
//! registration access token. Open by default, or gated by an initial access token.

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::{Value, json};

use super::OAuthError;
use super::clients;
use crate::config::{Config, RegistrationMode};
use crate::crypto;
use crate::domain::{self, Secret, validate};
use crate::services::gateway::Gateway;
use crate::services::gateway::urls::ServerUrls;
use crate::services::revocations::RevokedGrants;
use crate::store::{self, Store, clients::ClientRow};

/// Registration answers use RFC 7591's error codes.
fn invalid(code: &'static str, d: impl Into<String>) -> OAuthError {
    OAuthError::new(StatusCode::BAD_REQUEST, code, d)
}

#[derive(Deserialize)]
struct Metadata {
    redirect_uris: Option<Vec<String>>,
    client_name: Option<String>,
    token_endpoint_auth_method: Option<String>,
    grant_types: Option<Vec<String>>,
    response_types: Option<Vec<String>>,
    scope: Option<String>,
    application_type: Option<String>,
    client_uri: Option<String>,
    logo_uri: Option<String>,
    software_id: Option<String>,
    software_version: Option<String>,
    contacts: Option<Vec<String>>,
    jwks: Option<Value>,
    jwks_uri: Option<String>,
}

/// Whether a client of `auth_method` gets a secret.
fn uses_secret(auth_method: &str) -> bool {
    matches!(auth_method, "client_secret_basic" | "client_secret_post")
}

/// Validated metadata, ready to store.
struct Registration {
    name: String,
    redirect_uris: Vec<String>,
    auth_method: String,
    grant_types: Vec<String>,
    scope: Option<String>,
    application_type: String,
    document: Value,
}

fn validate_metadata(body: &[u8]) -> Result<Registration, OAuthError> {
    let (raw, m) = parse(body)?;
    let auth_method = auth_method_of(&m)?;
    let grant_types = grant_types_of(&m)?;
    let (redirect_uris, application_type) = redirects_of(&m, &grant_types)?;
    let name = described(&m)?;
    Ok(Registration {
        name,
        redirect_uris,
        auth_method,
        grant_types,
        scope: m.scope,
        application_type,
        document: raw,
    })
}

/// The registration document: a JSON object, and what it says.
fn parse(body: &[u8]) -> Result<(Value, Metadata), OAuthError> {
    let raw: Value = serde_json::from_slice(body).map_err(|e| {
        invalid(
            "invalid_client_metadata",
            format!("the body is not JSON: {e}"),
        )
    })?;
    if !raw.is_object() {
        return Err(invalid(
            "invalid_client_metadata",
            "the body must be a JSON object",
        ));
    }
    let m: Metadata = serde_json::from_value(raw.clone())
        .map_err(|e| invalid("invalid_client_metadata", e.to_string()))?;
    Ok((raw, m))
}

/// The client authentication method (`none` by default), and for `private_key_jwt` its keys.
fn auth_method_of(m: &Metadata) -> Result<String, OAuthError> {
    let auth_method = m
        .token_endpoint_auth_method
        .clone()
        .unwrap_or_else(|| "none".into());
    if !matches!(
        auth_method.as_str(),
        "none" | "client_secret_basic" | "client_secret_post" | clients::PRIVATE_KEY_JWT
    ) {
        return Err(invalid(
            "invalid_client_metadata",
            format!("token_endpoint_auth_method {auth_method:?} is not supported"),
        ));
    }
    if auth_method == clients::PRIVATE_KEY_JWT {
        clients::client_keys(m.jwks.clone(), m.jwks_uri.clone())
            .map_err(|e| invalid("invalid_client_metadata", e))?;
    } else if m.jwks.is_some() || m.jwks_uri.is_some() {
        return Err(invalid(
            "invalid_client_metadata",
            "jwks and jwks_uri are for token_endpoint_auth_method \"private_key_jwt\"",
        ));
    }
    Ok(auth_method)
}

/// The grant types (the code and refresh token grants by default); the code response type only.
fn grant_types_of(m: &Metadata) -> Result<Vec<String>, OAuthError> {
    let grant_types = m
        .grant_types
        .clone()
        .unwrap_or_else(|| vec!["authorization_code".into(), "refresh_token".into()]);
    for g in &grant_types {
        match g.as_str() {
            "authorization_code" | "refresh_token" => {}
            other => {
                return Err(invalid(
                    "invalid_client_metadata",
                    format!("grant type {other:?} is not supported for this client"),
                ));
            }
        }
    }
    if m.response_types
        .as_ref()
        .is_some_and(|r| r.iter().any(|t| t != "code"))
    {
        return Err(invalid(
            "invalid_client_metadata",
            "only the response type \"code\" is supported",
        ));
    }
    Ok(grant_types)
}

/// The redirect URIs and the application type they must suit.
fn redirects_of(m: &Metadata, grant_types: &[String]) -> Result<(Vec<String>, String), OAuthError> {
    let redirect_uris = m.redirect_uris.clone().unwrap_or_default();
    // Without application_type, a client naming an app's scheme or a loopback is a native app
    // (as Cursor, Claude Code and others register), else a web one.
    let application_type = m.application_type.clone().unwrap_or_else(|| {
        if redirect_uris.iter().any(|u| clients::is_native_redirect(u)) {
            "native".into()
        } else {
            "web".into()
        }
    });
    if !matches!(application_type.as_str(), "web" | "native") {
        return Err(invalid(
            "invalid_client_metadata",
            "application_type must be \"web\" or \"native\"",
        ));
    }
    if grant_types.iter().any(|g| g == "authorization_code") && redirect_uris.is_empty() {
        return Err(invalid("invalid_redirect_uri", "redirect_uris is required"));
    }
    if redirect_uris.len() > 20 {
        return Err(invalid("invalid_redirect_uri", "at most 20 redirect URIs"));
    }
    for uri in &redirect_uris {
        clients::native_or_web_redirect(uri)
            .map_err(|e| invalid("invalid_redirect_uri", format!("{uri:?} {e}")))?;
        if application_type == "web" && !uri.starts_with("https://") && !uri.starts_with("http://")
        {
            return Err(invalid(
                "invalid_redirect_uri",
                format!("{uri:?}: web clients use https (or http on loopback)"),
            ));
        }
    }
    Ok((redirect_uris, application_type))
}

/// What describes the client: its scope's tokens, its web pages, and its name (returned).
fn described(m: &Metadata) -> Result<String, OAuthError> {
    if let Some(scope) = &m.scope {
        for s in scope.split_whitespace() {
            validate::scope_token(s).map_err(|e| invalid("invalid_client_metadata", e))?;
        }
    }
    for (field, value) in [("client_uri", &m.client_uri), ("logo_uri", &m.logo_uri)] {
        if let Some(v) = value {
            validate::https_url(v)
                .map_err(|e| invalid("invalid_client_metadata", format!("{field} {e}")))?;
        }
    }
    let _ = (&m.software_id, &m.software_version, &m.contacts);
    match &m.client_name {
        Some(n) => validate::name(n, 255)
            .map_err(|e| invalid("invalid_client_metadata", format!("client_name {e}"))),
        None => Ok("Unnamed client".into()),
    }
}

fn bearer(req: &HttpRequest) -> Option<String> {
    let v = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

fn unauthorized(d: &str) -> OAuthError {
    OAuthError::new(StatusCode::UNAUTHORIZED, "invalid_token", d)
}

fn response(
    urls: &ServerUrls,
    row: &ClientRow,
    secret: Option<&str>,
    registration_token: Option<&str>,
) -> Value {
    let mut doc: Value = row
        .metadata
        .as_deref()
        .and_then(|m| serde_json::from_str(m).ok())
        .unwrap_or_else(|| json!({}));
    let redirect_uris: Value =
        serde_json::from_str(&row.redirect_uris).unwrap_or_else(|_| json!([]));
    let fields = json!({
        "client_id": row.client_id,
        "client_id_issued_at": row.created_at,
        "client_name": row.name,
        "redirect_uris": redirect_uris,
        "token_endpoint_auth_method": row.auth_method,
        "grant_types": row.grant_types.split_whitespace().collect::<Vec<_>>(),
        "response_types": ["code"],
        "application_type": row.application_type,
        "registration_client_uri": format!("{}/oauth/register/{}", urls.public_url(), row.client_id),
    });
    if let (Some(d), Some(f)) = (doc.as_object_mut(), fields.as_object()) {
        d.extend(f.clone());
        if let Some(s) = secret {
            d.insert("client_secret".into(), json!(s));
            d.insert("client_secret_expires_at".into(), json!(0));
        }
        if let Some(t) = registration_token {
            d.insert("registration_access_token".into(), json!(t));
        }
        if !row.scopes.is_empty() {
            d.insert("scope".into(), json!(row.scopes));
        }
    }
    doc
}

fn json_response(status: StatusCode, body: Value) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::PRAGMA, "no-cache"))
        .json(body)
}

pub async fn register(
    req: HttpRequest,
    config: web::Data<Config>,
    store: web::Data<Store>,
    gateway: web::Data<Gateway>,
    super::Body(body): super::Body,
) -> Result<HttpResponse, OAuthError> {
    may_register(&req, &config)?;
    let r = validate_metadata(&body)?;
    let secret = uses_secret(&r.auth_method).then(|| crypto::new_token("ezf_cs_"));
    let registration_token = crypto::new_token("ezf_rat_");
    let row = new_client(r, secret.as_ref(), &registration_token)?;
    let stored = row.clone();
    store
        .write(move |tx| {
            store::clients::insert(tx, &stored)?;
            let actor = store::audit::Actor::system("registration");
            store::audit::record(
                tx,
                &actor,
                "client.register",
                Some(&stored.id),
                None,
                Some(&json!({ "clientId": stored.client_id, "name": stored.name })),
            )?;
            Ok::<_, store::StoreError>(())
        })
        .await?;
    Ok(json_response(
        StatusCode::CREATED,
        response(
            &gateway.urls,
            &row,
            secret.as_ref().map(|s| s.expose()),
            Some(registration_token.expose()),
        ),
    ))
}

/// Is registration open to this request (`auth.registration.mode`: off, open, or with the
/// initial access token)?
fn may_register(req: &HttpRequest, config: &Config) -> Result<(), OAuthError> {
    let reg = &config.auth.registration;
    match reg.mode {
        RegistrationMode::Off => Err(OAuthError::new(
            StatusCode::FORBIDDEN,
            "access_denied",
            "dynamic registration is disabled",
        )),
        RegistrationMode::Token => {
            let expected = reg
                .initial_access_token
                .as_ref()
                .map(|t| t.expose().as_bytes().to_vec())
                .unwrap_or_default();
            let given = bearer(req).unwrap_or_default();
            if expected.is_empty() || !crypto::ct_eq(given.as_bytes(), &expected) {
                return Err(unauthorized(
                    "registration requires a valid initial access token",
                ));
            }
            Ok(())
        }
        RegistrationMode::Open => Ok(()),
    }
}

/// The stored row of a new dynamic client (its secret and registration token hashed).
fn new_client(
    r: Registration,
    secret: Option<&Secret>,
    registration_token: &Secret,
) -> Result<ClientRow, OAuthError> {
    let now = domain::now();
    Ok(ClientRow {
        id: domain::new_id("oac_"),
        client_id: format!("client_{}", domain::base32(&domain::random_bytes::<15>())),
        server_id: None,
        name: r.name,
        redirect_uris: serde_json::to_string(&r.redirect_uris).map_err(OAuthError::server_error)?,
        scopes: r.scope.unwrap_or_default(),
        trusted: false,
        is_dynamic: true,
        secret_hash: secret.map(|s| crypto::token_hash(s.expose())),
        metadata_url: None,
        created_at: now,
        updated_at: now,
        last_used_at: None,
        registration_token_hash: Some(crypto::token_hash(registration_token.expose())),
        auth_method: r.auth_method,
        grant_types: r.grant_types.join(" "),
        application_type: r.application_type,
        metadata: Some(r.document.to_string()),
        created_by: None,
    })
}

/// The dynamic client a registration access token manages.
async fn managed_client(
    req: &HttpRequest,
    store: &Store,
    client_id: &str,
) -> Result<ClientRow, OAuthError> {
    let token =
        bearer(req).ok_or_else(|| unauthorized("the registration access token is required"))?;
    let id = client_id.to_owned();
    let row = store.run(move |c| store::clients::find(c, &id)).await?;
    match row {
        Some(r)
            if r.client_id == client_id
                && r.registration_token_hash.as_deref().is_some_and(|h| {
                    crypto::ct_eq(h.as_bytes(), crypto::token_hash(&token).as_bytes())
                }) =>
        {
            Ok(r)
        }
        _ => Err(unauthorized(
            "the registration access token is not valid for this client",
        )),
    }
}

pub async fn read(
    req: HttpRequest,
    store: web::Data<Store>,
    gateway: web::Data<Gateway>,
    path: web::Path<String>,
) -> Result<HttpResponse, OAuthError> {
    let row = managed_client(&req, &store, &path).await?;
    Ok(json_response(
        StatusCode::OK,
        response(&gateway.urls, &row, None, None),
    ))
}

pub async fn update(
    req: HttpRequest,
    store: web::Data<Store>,
    gateway: web::Data<Gateway>,
    path: web::Path<String>,
    super::Body(body): super::Body,
) -> Result<HttpResponse, OAuthError> {
    let mut row = managed_client(&req, &store, &path).await?;
    let r = validate_metadata(&body)?;
    let kind = |m: &str| (uses_secret(m), m == clients::PRIVATE_KEY_JWT);
    if kind(&r.auth_method) != kind(&row.auth_method) {
        return Err(invalid(
            "invalid_client_metadata",
            "token_endpoint_auth_method cannot change between none, a client secret and private_key_jwt",
        ));
    }
    row.name = r.name;
    row.redirect_uris =
        serde_json::to_string(&r.redirect_uris).map_err(OAuthError::server_error)?;
    row.scopes = r.scope.unwrap_or_default();
    row.auth_method = r.auth_method;
    row.grant_types = r.grant_types.join(" ");
    row.application_type = r.application_type;
    row.metadata = Some(r.document.to_string());
    row.updated_at = domain::now();
    let stored = row.clone();
    store
        .run(move |c| store::clients::update_registration(c, &stored))
        .await?;
    Ok(json_response(
        StatusCode::OK,
        response(&gateway.urls, &row, None, None),
    ))
}

pub async fn delete(
    req: HttpRequest,
    store: web::Data<Store>,
    revoked: web::Data<RevokedGrants>,
    path: web::Path<String>,
) -> Result<HttpResponse, OAuthError> {
    let row = managed_client(&req, &store, &path).await?;
    store
        .write(move |tx| {
            for gid in store::grants::live_grant_ids(tx, None, Some(&row.client_id))? {
                super::grant_types::revoke_now(&revoked, tx, &gid)?;
            }
            store::clients::delete(tx, &row.id)?;
            Ok::<_, store::StoreError>(())
        })
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
