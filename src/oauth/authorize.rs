//! `GET/POST /oauth/authorize`: validate the request, sign the user in, ask for consent, and
//! redirect back with a code. Errors about the client or its redirect URI are shown as a page
//! and never redirect; other errors redirect with `error`, `state` and `iss` (RFC 9207) to a
//! project's client or to the user's own machine, and are a page for anyone else's.
//! The flow is stateless: our pages carry the original request in a hidden field, and every
//! submission is validated again from scratch.

use std::sync::Arc;

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, HttpResponse, web};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use minijinja::context;
use url::Url;

use super::clients::{self, Client, ClientError};
use super::issuer::Issuer;
use super::oidc;
use super::pages;
use super::params::Params;
use super::pkce;
use super::{OAuthError, OAuthState};
use crate::config::Config;
use crate::crypto;
use crate::domain::{self, Secret, validate};
use crate::outbound::Outbound;
use crate::services::accounts::{Accounts, LoginError, SignedIn};
use crate::services::gateway::Gateway;
use crate::services::gateway::registry::ServerEntry;
use crate::store::{self, Store, grants::CodeRow, users::UserRow};

/// What answers authorization requests (an extractor for both handlers): the gateway (the
/// issuer and the servers a request names), the client lookup (store, metadata-document cache,
/// outbound client), accounts (sign-in, sessions, cookies) and the config (lifetimes).
pub struct Authorizer {
    gateway: web::Data<Gateway>,
    store: web::Data<Store>,
    oauth: web::Data<OAuthState>,
    outbound: web::Data<Outbound>,
    accounts: web::Data<Accounts>,
    config: web::Data<Config>,
}

impl FromRequest for Authorizer {
    type Error = OAuthError;
    type Future = std::future::Ready<Result<Self, OAuthError>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        use super::service;
        std::future::ready((|| {
            Ok(Authorizer {
                gateway: service(req)?,
                store: service(req)?,
                oauth: service(req)?,
                outbound: service(req)?,
                accounts: service(req)?,
                config: service(req)?,
            })
        })())
    }
}

/// A validated authorization request.
struct Flow {
    raw: String,
    client: Arc<Client>,
    redirect_uri: String,
    /// Whether the request named it (else it is the client's only one): the token request
    /// must repeat it only then (RFC 6749 §4.1.3).
    redirect_uri_given: bool,
    state: Option<String>,
    challenge: String,
    server: Arc<ServerEntry>,
    scopes: Vec<String>,
    /// The authorization server the request came to (RFC 9207 `iss` of every redirect).
    issuer: Issuer,
    /// OpenID Connect's `nonce`, for the ID token.
    nonce: Option<String>,
}

pub async fn get(req: HttpRequest, az: Authorizer) -> HttpResponse {
    let raw = req.query_string().to_owned();
    begin(&req, &az, raw).await
}

/// The page for an authorization server that does not exist.
fn no_such_issuer() -> HttpResponse {
    pages::error(
        StatusCode::NOT_FOUND,
        "No such server",
        "This authorization server does not exist (the MCP server may have been removed or renamed).",
    )
}

pub async fn post(
    req: HttpRequest,
    az: Authorizer,
    super::Body(body): super::Body,
) -> HttpResponse {
    let params = match Params::parse(&body) {
        Ok(p) => p,
        Err(e) => return pages::error(StatusCode::BAD_REQUEST, "Invalid request", &e.description),
    };
    // Not one of our forms: an authorization request sent as a form body.
    if params.get("csrf").is_none() && params.get("request").is_none() {
        let raw = String::from_utf8_lossy(&body).into_owned();
        return begin(&req, &az, raw).await;
    }
    if let Some(why) = super::cross_site::refused(&req, az.gateway.urls.public_url()) {
        tracing::info!(
            why,
            "a sign-in or consent form posted from another site was refused"
        );
        return pages::error(
            StatusCode::FORBIDDEN,
            "Request refused",
            "This form was sent from another site. Go back to the application and start again.",
        );
    }
    let (cookie_token, _) = csrf_token(&req, &az.accounts);
    let sent = params.get("csrf").unwrap_or("");
    if cookie_token.is_none()
        || !crypto::ct_eq(
            cookie_token.as_deref().unwrap_or("").as_bytes(),
            sent.as_bytes(),
        )
    {
        return pages::error(
            StatusCode::FORBIDDEN,
            "Form expired",
            "This form expired or did not come from this site. Go back to the application and start again.",
        );
    }
    let raw = params.get("request").unwrap_or("").to_owned();
    let Ok(issuer) = Issuer::of(&req, &az.gateway) else {
        return no_such_issuer();
    };
    let flow = match validate(&az, &raw, issuer).await {
        Ok(f) => f,
        Err(page) => return page,
    };
    if let Some(email) = params.get("email") {
        let password = Secret::new(params.get("password").unwrap_or(""));
        let address = req.peer_addr().map(|a| a.ip().to_string());
        let user = match az
            .accounts
            .verify_login(email, password, address.as_deref())
            .await
        {
            Ok(u) => u,
            Err(LoginError::Invalid) => {
                return login_page(
                    &req,
                    &az.accounts,
                    &flow,
                    email,
                    Some("Wrong email or password."),
                    StatusCode::UNAUTHORIZED,
                );
            }
            Err(LoginError::Throttled(wait)) => {
                let msg = format!(
                    "Too many attempts. Try again in {} minutes.",
                    wait.div_ceil(60)
                );
                let mut res = login_page(
                    &req,
                    &az.accounts,
                    &flow,
                    email,
                    Some(&msg),
                    StatusCode::TOO_MANY_REQUESTS,
                );
                res.headers_mut().insert(header::RETRY_AFTER, wait.into());
                return res;
            }
            Err(LoginError::Store(_)) => return unavailable(),
        };
        let (token, _) = match az.accounts.start_session(&user, address).await {
            Ok(t) => t,
            Err(_) => return unavailable(),
        };
        let who = SignedIn {
            user,
            auth_time: domain::now(),
        };
        let mut res = after_login(&req, &az, &flow, &who).await;
        let ttl = az.accounts.session_ttl_secs();
        let _ = res.add_cookie(&az.accounts.session_cookie(token.expose(), ttl));
        return res;
    }
    let Some(who) = az.accounts.signed_in(&req).await else {
        return login_page(&req, &az.accounts, &flow, "", None, StatusCode::OK);
    };
    let user = &who.user;
    match params.get("decision") {
        Some("approve") => {
            if may_use(&az.store, user, &flow.server).await.is_none() {
                return not_a_member(&flow);
            }
            let (uid, cid, res_uri, scopes) = (
                user.id.clone(),
                flow.client.client_id.clone(),
                flow.server.resource.clone(),
                flow.scopes.join(" "),
            );
            let until = domain::now() + az.config.auth.consent_ttl.as_secs();
            if az
                .store
                .run(move |c| {
                    store::grants::remember_consent(c, &uid, &cid, &res_uri, &scopes, until)
                })
                .await
                .is_err()
            {
                return unavailable();
            }
            issue_code(&az.store, &az.config, &flow, &who, StatusCode::SEE_OTHER).await
        }
        Some("deny") => redirect_error(
            &flow.issuer,
            &flow.redirect_uri,
            "access_denied",
            "the user denied access",
            flow.state.as_deref(),
            StatusCode::SEE_OTHER,
        ),
        _ => consent_page(&req, &az.accounts, &flow, user),
    }
}

async fn begin(req: &HttpRequest, az: &Authorizer, raw: String) -> HttpResponse {
    let Ok(issuer) = Issuer::of(req, &az.gateway) else {
        return no_such_issuer();
    };
    let flow = match validate(az, &raw, issuer).await {
        Ok(f) => f,
        Err(page) => return page,
    };
    match az.accounts.signed_in(req).await {
        None => login_page(req, &az.accounts, &flow, "", None, StatusCode::OK),
        Some(who) => after_login(req, az, &flow, &who).await,
    }
}

/// Signed in: check membership, then skip consent (trusted client, or remembered) or ask. An
/// admin at a server of a project they are not a member of is always asked: what the project
/// set up (a trusted client) must not act as an admin unseen.
async fn after_login(
    req: &HttpRequest,
    az: &Authorizer,
    flow: &Flow,
    who: &SignedIn,
) -> HttpResponse {
    let user = &who.user;
    let member = match may_use(&az.store, user, &flow.server).await {
        Some(member) => member,
        None => return not_a_member(flow),
    };
    if !member {
        return consent_page(req, &az.accounts, flow, user);
    }
    if flow.client.trusted {
        return issue_code(&az.store, &az.config, flow, who, StatusCode::SEE_OTHER).await;
    }
    let (uid, cid, res_uri, now) = (
        user.id.clone(),
        flow.client.client_id.clone(),
        flow.server.resource.clone(),
        domain::now(),
    );
    let remembered = az
        .store
        .run(move |c| store::grants::consent(c, &uid, &cid, &res_uri, now))
        .await;
    match remembered {
        Ok(Some(scopes))
            if flow
                .scopes
                .iter()
                .all(|s| scopes.split_whitespace().any(|r| r == s)) =>
        {
            issue_code(&az.store, &az.config, flow, who, StatusCode::SEE_OTHER).await
        }
        Ok(_) => consent_page(req, &az.accounts, flow, user),
        Err(_) => unavailable(),
    }
}

fn unavailable() -> HttpResponse {
    pages::error(
        StatusCode::SERVICE_UNAVAILABLE,
        "Try again",
        "The server is busy. Try again in a moment.",
    )
}

fn not_a_member(flow: &Flow) -> HttpResponse {
    pages::error(
        StatusCode::FORBIDDEN,
        "No access to this server",
        &format!(
            "Your account is not a member of the project that runs {}. Ask one of its owners to add you, then try again.",
            flow.server.name
        ),
    )
}

/// Admins may use every server; others those of the projects they belong to. `Some(member)`
/// when the user may: whether they are a member of the server's project.
async fn may_use(store: &Store, user: &UserRow, server: &ServerEntry) -> Option<bool> {
    let (pid, uid) = (server.project_id.clone(), user.id.clone());
    let member = matches!(
        store
            .run(move |c| store::projects::member_role(c, &pid, &uid))
            .await,
        Ok(Some(_))
    );
    (member || user.role == "admin").then_some(member)
}

fn csrf_cookie_name(accounts: &Accounts) -> &'static str {
    if accounts.secure() {
        "__Host-ezf_csrf"
    } else {
        "ezf_csrf"
    }
}

/// The browser's CSRF token (double-submit cookie), and a new one to set if it has none.
fn csrf_token(req: &HttpRequest, accounts: &Accounts) -> (Option<String>, String) {
    match req.cookie(csrf_cookie_name(accounts)) {
        Some(c) if c.value().len() >= 32 => (Some(c.value().to_owned()), c.value().to_owned()),
        _ => (None, URL_SAFE_NO_PAD.encode(domain::random_bytes::<32>())),
    }
}

fn with_csrf_cookie(
    req: &HttpRequest,
    accounts: &Accounts,
    mut res: HttpResponse,
    token: &str,
) -> HttpResponse {
    if req
        .cookie(csrf_cookie_name(accounts))
        .is_some_and(|c| c.value() == token)
    {
        return res;
    }
    let cookie = Cookie::build(csrf_cookie_name(accounts), token.to_owned())
        .path("/")
        .http_only(true)
        .secure(accounts.secure())
        .same_site(SameSite::Strict)
        .finish();
    let _ = res.add_cookie(&cookie);
    res
}

fn form_action(flow: &Flow) -> String {
    flow.issuer.endpoint("authorize")
}

fn login_page(
    req: &HttpRequest,
    accounts: &Accounts,
    flow: &Flow,
    email: &str,
    error: Option<&str>,
    status: StatusCode,
) -> HttpResponse {
    let (_, csrf) = csrf_token(req, accounts);
    // What was typed is shown again, unless it cannot be an address at all.
    let email = if email.len() <= 254 { email } else { "" };
    let res = pages::render(
        status,
        "login.html",
        context! {
            action => form_action(flow), csrf => &csrf, request => &flow.raw, email, error,
            client_name => &flow.client.name, server_name => &flow.server.name,
        },
    );
    with_csrf_cookie(req, accounts, res, &csrf)
}

fn consent_page(
    req: &HttpRequest,
    accounts: &Accounts,
    flow: &Flow,
    user: &UserRow,
) -> HttpResponse {
    let (_, csrf) = csrf_token(req, accounts);
    // What the MCP server's token allows, and apart from it what the client learns about you.
    let (identity, access): (Vec<&String>, Vec<&String>) =
        flow.scopes.iter().partition(|s| oidc::is_oidc_scope(s));
    let scopes: Vec<minijinja::Value> = access
        .iter()
        .map(|s| context! { name => s, text => pages::describe_scope(s) })
        .collect();
    let shared: Vec<minijinja::Value> = identity
        .iter()
        .filter_map(|s| oidc::describe(s, &user.email).map(|text| context! { name => s, text }))
        .collect();
    let redirect_host = Url::parse(&flow.redirect_uri)
        .ok()
        .and_then(|u| {
            u.host_str()
                .map(str::to_owned)
                .or_else(|| Some(u.scheme().to_owned()))
        })
        .unwrap_or_default();
    // A metadata-document client names itself; its URL's host is what vouches for it.
    let client_origin = clients::is_metadata_url(&flow.client.client_id)
        .then(|| {
            Url::parse(&flow.client.client_id)
                .ok()
                .and_then(|u| u.host_str().map(str::to_owned))
        })
        .flatten();
    let res = pages::render(
        StatusCode::OK,
        "consent.html",
        context! {
            action => form_action(flow), csrf => &csrf, request => &flow.raw,
            client_name => &flow.client.name, server_name => &flow.server.name, server_uri => &flow.server.resource,
            redirect_host, scopes, shared, user_email => &user.email, client_origin,
        },
    );
    with_csrf_cookie(req, accounts, res, &csrf)
}

/// `redirect_uri` with `pairs` added to its query, plus `iss`.
fn answer_url(issuer: &Issuer, redirect_uri: &str, pairs: &[(&str, &str)]) -> Option<Url> {
    let mut url = Url::parse(redirect_uri).ok()?;
    {
        let mut q = url.query_pairs_mut();
        for (k, v) in pairs {
            q.append_pair(k, v);
        }
        q.append_pair("iss", &issuer.url);
    }
    Some(url)
}

/// The pairs of an error answer (RFC 6749 §4.1.2.1).
fn error_pairs<'a>(code: &'a str, desc: &'a str, st: Option<&'a str>) -> Vec<(&'a str, &'a str)> {
    let mut pairs = vec![("error", code), ("error_description", desc)];
    if let Some(s) = st {
        pairs.push(("state", s));
    }
    pairs
}

/// Redirects to the client with `pairs` added to its redirect URI's query, plus `iss`.
fn redirect_with(
    issuer: &Issuer,
    redirect_uri: &str,
    pairs: &[(&str, &str)],
    status: StatusCode,
) -> HttpResponse {
    let Some(url) = answer_url(issuer, redirect_uri, pairs) else {
        return pages::error(
            StatusCode::BAD_REQUEST,
            "Invalid redirect",
            "The application's redirect address is not valid.",
        );
    };
    HttpResponse::build(status)
        .insert_header((header::LOCATION, url.as_str()))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .finish()
}

fn redirect_error(
    issuer: &Issuer,
    redirect_uri: &str,
    code: &str,
    desc: &str,
    st: Option<&str>,
    status: StatusCode,
) -> HttpResponse {
    redirect_with(issuer, redirect_uri, &error_pairs(code, desc, st), status)
}

/// An error that is not redirected automatically (see `validate`): a page. An app waiting on a
/// private-use scheme gets a link to its error answer, which the user may follow.
fn error_page(
    issuer: &Issuer,
    redirect_uri: &str,
    code: &str,
    desc: &str,
    st: Option<&str>,
) -> HttpResponse {
    let message = format!("The application's request cannot be served ({code}): {desc}.");
    let app_url = answer_url(issuer, redirect_uri, &error_pairs(code, desc, st))
        .filter(|u| !matches!(u.scheme(), "http" | "https"));
    match app_url {
        Some(url) => pages::error_with_link(
            StatusCode::BAD_REQUEST,
            "Invalid request",
            &message,
            url.as_str(),
            &format!("{}:", url.scheme()),
        ),
        None => pages::error(StatusCode::BAD_REQUEST, "Invalid request", &message),
    }
}

async fn issue_code(
    store: &Store,
    config: &Config,
    flow: &Flow,
    who: &SignedIn,
    status: StatusCode,
) -> HttpResponse {
    let user = &who.user;
    let code = crypto::new_token("");
    let now = domain::now();
    let row = CodeRow {
        code_hash: crypto::token_hash(code.expose()),
        client_id: flow.client.client_id.clone(),
        client_name: flow.client.name.clone(),
        user_id: user.id.clone(),
        server_id: flow.server.id.clone(),
        resource: flow.server.resource.clone(),
        // Empty: the request named none, so the token request need not either.
        redirect_uri: if flow.redirect_uri_given {
            flow.redirect_uri.clone()
        } else {
            String::new()
        },
        code_challenge: flow.challenge.clone(),
        scopes: flow.scopes.join(" "),
        created_at: now,
        expires_at: now + config.auth.auth_code_ttl.as_secs(),
        used_at: None,
        grant_id: None,
        nonce: flow.nonce.clone(),
        auth_time: Some(who.auth_time),
    };
    if store
        .run(move |c| store::grants::insert_code(c, &row))
        .await
        .is_err()
    {
        return unavailable();
    }
    let mut pairs = vec![("code", code.expose())];
    if let Some(s) = &flow.state {
        pairs.push(("state", s));
    }
    redirect_with(&flow.issuer, &flow.redirect_uri, &pairs, status)
}

/// Validates an authorization request; the `Err` is the page or redirect to answer with.
async fn validate(az: &Authorizer, raw: &str, issuer: Issuer) -> Result<Flow, HttpResponse> {
    let bad_page = |msg: &str| pages::error(StatusCode::BAD_REQUEST, "Invalid request", msg);
    let params = Params::parse(raw.as_bytes()).map_err(|e| bad_page(&e.description))?;
    let client_id = params
        .get("client_id")
        .ok_or_else(|| bad_page("The request names no client (client_id is missing)."))?;
    let mut client = clients::resolve(&az.store, &az.oauth, &az.outbound, client_id)
        .await
        .map_err(|e| match e {
            ClientError::Store(_) => unavailable(),
            ClientError::Unknown(_) => {
                bad_page("The application is not registered with this server.")
            }
            ClientError::Metadata(m) => bad_page(&format!(
                "The application's metadata document cannot be used: {m}."
            )),
        })?;
    let redirect_uri = match params.get("redirect_uri") {
        Some(r) if clients::redirect_matches(&client.redirect_uris, r) => r.to_owned(),
        Some(_) => {
            return Err(bad_page(
                "The redirect address does not match any the application registered.",
            ));
        }
        None if client.redirect_uris.len() == 1 => client.redirect_uris[0].clone(),
        None => {
            return Err(bad_page(
                "The request names no redirect address (redirect_uri is missing).",
            ));
        }
    };
    // Registered before its scheme was refused (one that hands a web address to a browser):
    // never redirected to.
    if Url::parse(&redirect_uri).is_ok_and(|u| !matches!(u.scheme(), "http" | "https"))
        && clients::native_or_web_redirect(&redirect_uri).is_err()
    {
        return Err(bad_page(
            "The application's redirect address uses a scheme this server does not redirect to.",
        ));
    }
    // From here on, errors go back to the client — if a project registered it, or if it waits
    // on a loopback or on an app's own scheme (reverse-domain, or a known MCP client's: the
    // user's own machine, no open redirect there). Anyone can register a client (or publish a
    // metadata document) naming any web redirect URI, or a scheme that opens a browser, so for
    // those an automatic redirect would make this server an open redirector (RFC 9700
    // §4.11.2): the error is shown here instead, before the user has done anything.
    let st = params.get("state").map(str::to_owned);
    let own_machine = clients::error_redirect_allowed(&redirect_uri);
    let redirect_trusted = std::cell::Cell::new(client.server_id.is_some() || own_machine);
    let fail = |code: &str, desc: &str| {
        if !redirect_trusted.get() {
            return error_page(&issuer, &redirect_uri, code, desc, st.as_deref());
        }
        redirect_error(
            &issuer,
            &redirect_uri,
            code,
            desc,
            st.as_deref(),
            StatusCode::FOUND,
        )
    };
    match params.get("response_type") {
        Some("code") => {}
        None => return Err(fail("invalid_request", "response_type is required")),
        Some(_) => {
            return Err(fail(
                "unsupported_response_type",
                "only response_type=code is supported",
            ));
        }
    }
    let challenge = params.get("code_challenge").ok_or_else(|| {
        fail(
            "invalid_request",
            "PKCE is required: code_challenge is missing",
        )
    })?;
    if params.get("code_challenge_method") != Some("S256") {
        return Err(fail(
            "invalid_request",
            "code_challenge_method must be S256",
        ));
    }
    if !pkce::well_formed(challenge) {
        return Err(fail("invalid_request", "code_challenge is malformed"));
    }
    let server = issuer
        .target(&az.gateway, &params.all("resource"))
        .map_err(|e| fail(e.code, &e.description))?;
    if client.server_id.as_ref().is_some_and(|id| id != &server.id) {
        if !clients::is_metadata_url(&client.client_id) {
            return Err(fail(
                "invalid_target",
                "this client is registered for another server",
            ));
        }
        // A metadata-document client that another server pre-registered: anyone may name its
        // document, so here it is an ordinary one (no trust, the server's scopes, no error
        // redirects but to the user's own machine).
        redirect_trusted.set(own_machine);
        client = Arc::new(clients::Client {
            scopes: None,
            trusted: false,
            server_id: None,
            stored: false,
            ..(*client).clone()
        });
    }
    let scopes = requested_scopes(&client, &server, params.get("scope"))
        .map_err(|e| fail("invalid_scope", &e))?;
    let nonce = match params.get("nonce") {
        Some(n) if !oidc::valid_nonce(n) => {
            return Err(fail(
                "invalid_request",
                "nonce must be printable ASCII of at most 512 characters",
            ));
        }
        n => n.map(str::to_owned),
    };
    Ok(Flow {
        raw: raw.to_owned(),
        redirect_uri_given: params.get("redirect_uri").is_some(),
        client,
        redirect_uri,
        state: st,
        challenge: challenge.to_owned(),
        server,
        scopes,
        issuer,
        nonce,
    })
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
