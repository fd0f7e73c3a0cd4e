//! Validating an authorization request, from scratch on every submission: the client, its
//! redirect URI, PKCE, the server and the scopes. Errors about the client or its redirect URI
//! are a page; the rest go back to the client where that is safe (see `validate`).

use std::sync::Arc;

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use url::Url;

use super::answers::{error_page, redirect_error, unavailable};
use super::authorizer::Authorizer;
use crate::domain::validate;
use crate::oauth::clients::{self, Client, ClientError};
use crate::oauth::issuer::Issuer;
use crate::oauth::params::Params;
use crate::oauth::{OAuthError, oidc, pages, pkce};
use crate::services::gateway::registry::ServerEntry;

/// A validated authorization request.
pub struct Flow {
    pub raw: String,
    pub client: Arc<Client>,
    pub redirect_uri: String,
    /// Whether the request named it (else it is the client's only one): the token request
    /// must repeat it only then (RFC 6749 §4.1.3).
    pub redirect_uri_given: bool,
    pub state: Option<String>,
    pub challenge: String,
    pub server: Arc<ServerEntry>,
    pub scopes: Vec<String>,
    /// The authorization server the request came to (RFC 9207 `iss` of every redirect).
    pub issuer: Issuer,
    /// OpenID Connect's `nonce`, for the ID token.
    pub nonce: Option<String>,
}

/// Validates an authorization request; the `Err` is the page or redirect to answer with.
pub async fn validate(az: &Authorizer, raw: &str, issuer: Issuer) -> Result<Flow, HttpResponse> {
    let params = Params::parse(raw.as_bytes()).map_err(|e| bad_page(&e.description))?;
    let client = client_of(az, &params).await?;
    let redirect_uri = redirect_uri_of(&client, &params).map_err(bad_page)?;
    // From here on, errors go back to the client — if a project registered it, or if it waits
    // on a loopback or on an app's own scheme (reverse-domain, or a known MCP client's: the
    // user's own machine, no open redirect there). Anyone can register a client (or publish a
    // metadata document) naming any web redirect URI, or a scheme that opens a browser, so for
    // those an automatic redirect would make this server an open redirector (RFC 9700
    // §4.11.2): the error is shown here instead, before the user has done anything.
    let st = params.get("state").map(str::to_owned);
    let own_machine = clients::error_redirect_allowed(&redirect_uri);
    let mut fail = Failure {
        issuer: &issuer,
        redirect_uri: &redirect_uri,
        state: st.as_deref(),
        redirect: client.server_id.is_some() || own_machine,
    };
    let challenge = code_challenge(&params).map_err(|e| fail.answer(&e))?;
    let server = issuer
        .target(&az.gateway, &params.all("resource"))
        .map_err(|e| fail.answer(&e))?;
    let client = match for_server(&client, &server) {
        Ok(None) => client,
        Ok(Some(ordinary)) => {
            fail.redirect = own_machine;
            ordinary
        }
        Err(e) => return Err(fail.answer(&e)),
    };
    let scopes = requested_scopes(&client, &server, params.get("scope"))
        .map_err(|e| fail.answer(&OAuthError::invalid_scope(e)))?;
    let nonce = nonce_of(&params).map_err(|e| fail.answer(&e))?;
    Ok(Flow {
        raw: raw.to_owned(),
        redirect_uri_given: params.get("redirect_uri").is_some(),
        client,
        redirect_uri,
        state: st,
        challenge,
        server,
        scopes,
        issuer,
        nonce,
    })
}

fn bad_page(msg: &str) -> HttpResponse {
    pages::error(StatusCode::BAD_REQUEST, "Invalid request", msg)
}

/// The client the request names; a page if there is none to serve.
async fn client_of(az: &Authorizer, params: &Params) -> Result<Arc<Client>, HttpResponse> {
    let client_id = params
        .get("client_id")
        .ok_or_else(|| bad_page("The request names no client (client_id is missing)."))?;
    clients::resolve(&az.store, &az.oauth, &az.outbound, client_id)
        .await
        .map_err(|e| match e {
            ClientError::Store(_) => unavailable(),
            ClientError::Unknown(_) => {
                bad_page("The application is not registered with this server.")
            }
            ClientError::Metadata(m) => bad_page(&format!(
                "The application's metadata document cannot be used: {m}."
            )),
        })
}

/// The redirect URI to answer at: the one named, if the client registered it, else the
/// client's only one. Why not (for a page) if there is none it may be sent to.
fn redirect_uri_of(client: &Client, params: &Params) -> Result<String, &'static str> {
    let redirect_uri = match params.get("redirect_uri") {
        Some(r) if clients::redirect_matches(&client.redirect_uris, r) => r.to_owned(),
        Some(_) => {
            return Err("The redirect address does not match any the application registered.");
        }
        None if client.redirect_uris.len() == 1 => client.redirect_uris[0].clone(),
        None => {
            return Err("The request names no redirect address (redirect_uri is missing).");
        }
    };
    // Registered before its scheme was refused (one that hands a web address to a browser):
    // never redirected to.
    if Url::parse(&redirect_uri).is_ok_and(|u| !matches!(u.scheme(), "http" | "https"))
        && clients::native_or_web_redirect(&redirect_uri).is_err()
    {
        return Err(
            "The application's redirect address uses a scheme this server does not redirect to.",
        );
    }
    Ok(redirect_uri)
}

/// How an error found once the redirect URI is known is answered (see `validate`).
struct Failure<'a> {
    issuer: &'a Issuer,
    redirect_uri: &'a str,
    state: Option<&'a str>,
    /// Redirected back to the client; else shown as a page.
    redirect: bool,
}

impl Failure<'_> {
    fn answer(&self, e: &OAuthError) -> HttpResponse {
        let (code, desc) = (e.code, e.description.as_str());
        if !self.redirect {
            return error_page(self.issuer, self.redirect_uri, code, desc, self.state);
        }
        redirect_error(
            self.issuer,
            self.redirect_uri,
            code,
            desc,
            self.state,
            StatusCode::FOUND,
        )
    }
}

/// The code flow with PKCE S256: `response_type=code` and a well-formed `code_challenge`.
fn code_challenge(params: &Params) -> Result<String, OAuthError> {
    match params.get("response_type") {
        Some("code") => {}
        None => return Err(OAuthError::invalid_request("response_type is required")),
        Some(_) => {
            return Err(OAuthError::new(
                StatusCode::BAD_REQUEST,
                "unsupported_response_type",
                "only response_type=code is supported",
            ));
        }
    }
    let challenge = params.get("code_challenge").ok_or_else(|| {
        OAuthError::invalid_request("PKCE is required: code_challenge is missing")
    })?;
    if params.get("code_challenge_method") != Some("S256") {
        return Err(OAuthError::invalid_request(
            "code_challenge_method must be S256",
        ));
    }
    if !pkce::well_formed(challenge) {
        return Err(OAuthError::invalid_request("code_challenge is malformed"));
    }
    Ok(challenge.to_owned())
}

/// A client pre-registered for another server than `server`: refused, unless it is a metadata
/// document, which is then served as an ordinary one (`Some`).
fn for_server(client: &Client, server: &ServerEntry) -> Result<Option<Arc<Client>>, OAuthError> {
    if client.server_id.as_ref().is_none_or(|id| id == &server.id) {
        return Ok(None);
    }
    if !clients::is_metadata_url(&client.client_id) {
        return Err(OAuthError::invalid_target(
            "this client is registered for another server",
        ));
    }
    // A metadata-document client that another server pre-registered: anyone may name its
    // document, so here it is an ordinary one (no trust, the server's scopes, no error
    // redirects but to the user's own machine).
    Ok(Some(Arc::new(Client {
        scopes: None,
        trusted: false,
        server_id: None,
        stored: false,
        ..client.clone()
    })))
}

/// OpenID Connect's `nonce`, if sent.
fn nonce_of(params: &Params) -> Result<Option<String>, OAuthError> {
    match params.get("nonce") {
        Some(n) if !oidc::valid_nonce(n) => Err(OAuthError::invalid_request(
            "nonce must be printable ASCII of at most 512 characters",
        )),
        n => Ok(n.map(str::to_owned)),
    }
}

/// The scopes a request asks for, each available to this client at this server: the MCP
/// scopes the server offers (and the client may ask for) and OpenID Connect's, which describe
/// the user. Without any MCP scope (no `scope`, or `openid email profile` alone) the request
/// gets the client's own scopes, or the server's base scope.
///
/// An OpenID scope is only ever that: any client may ask for one, so it never counts as an MCP
/// scope, whatever the server's list says (tool scopes cannot take those names either).
fn requested_scopes(
    client: &Client,
    server: &ServerEntry,
    scope: Option<&str>,
) -> Result<Vec<String>, String> {
    let allowed: &[String] = client.scopes.as_deref().unwrap_or(&server.scopes_supported);
    let mut v: Vec<String> = Vec::new();
    for token in scope.unwrap_or("").split(' ').filter(|t| !t.is_empty()) {
        validate::scope_token(token)?;
        let identity = oidc::is_oidc_scope(token);
        let mcp = !identity
            && server.scopes_supported.iter().any(|x| x == token)
            && allowed.iter().any(|x| x == token);
        if !mcp && !identity {
            return Err(format!("the scope {token} is not available to this client"));
        }
        if !v.iter().any(|x| x == token) {
            v.push(token.to_owned());
        }
    }
    if v.iter().all(|s| oidc::is_oidc_scope(s)) {
        let base: Vec<String> = match &client.scopes {
            Some(own) => own
                .iter()
                .filter(|s| server.scopes_supported.contains(s))
                .cloned()
                .collect(),
            None => vec![server.base_scope().to_owned()],
        };
        if base.is_empty() {
            return Err("no scope requested".into());
        }
        // MCP scopes first, as the token's scope lists them.
        v.splice(0..0, base);
    }
    Ok(v)
}
