//! `GET/POST /oauth/authorize`: validate the request, sign the user in, ask for consent, and
//! redirect back with a code. Errors about the client or its redirect URI are shown as a page
//! and never redirect; other errors redirect with `error`, `state` and `iss` (RFC 9207).
//! The flow is stateless: our pages carry the original request in a hidden field, and every
//! submission is validated again from scratch.

use std::sync::Arc;

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use minijinja::context;
use url::Url;

use super::clients::{self, Client, ClientError};
use super::pages;
use super::params::Params;
use super::pkce;
use crate::app::AppState;
use crate::control::auth::SESSION_COOKIE;
use crate::control::sessions::{LoginError, start_session, verify_login};
use crate::crypto;
use crate::domain::{self, Secret, validate};
use crate::gateway::registry::{ServerAuth, ServerEntry};
use crate::store::{self, grants::CodeRow, users::UserRow};

const HOST_SESSION_COOKIE: &str = "__Host-ezf_session";

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
}

pub async fn get(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let raw = req.query_string().to_owned();
    begin(&req, &state, raw).await
}

pub async fn post(
    req: HttpRequest,
    state: web::Data<AppState>,
    super::Body(body): super::Body,
) -> HttpResponse {
    let params = match Params::parse(&body) {
        Ok(p) => p,
        Err(e) => return pages::error(StatusCode::BAD_REQUEST, "Invalid request", &e.description),
    };
    // Not one of our forms: an authorization request sent as a form body.
    if params.get("csrf").is_none() && params.get("request").is_none() {
        let raw = String::from_utf8_lossy(&body).into_owned();
        return begin(&req, &state, raw).await;
    }
    let (cookie_token, _) = csrf_token(&req, &state);
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
    let flow = match validate(&state, &raw).await {
        Ok(f) => f,
        Err(page) => return page,
    };
    if let Some(email) = params.get("email") {
        let password = Secret::new(params.get("password").unwrap_or(""));
        let address = req.peer_addr().map(|a| a.ip().to_string());
        let user = match verify_login(&state, email, password, address.as_deref()).await {
            Ok(u) => u,
            Err(LoginError::Invalid) => {
                return login_page(
                    &req,
                    &state,
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
                    &state,
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
        let (token, _) = match start_session(&state, &user, address).await {
            Ok(t) => t,
            Err(_) => return unavailable(),
        };
        let mut res = after_login(&req, &state, &flow, &user).await;
        let _ = res.add_cookie(&session_cookie(&state, token.expose()));
        return res;
    }
    let Some(user) = signed_in(&req, &state).await else {
        return login_page(&req, &state, &flow, "", None, StatusCode::OK);
    };
    match params.get("decision") {
        Some("approve") => {
            if may_use(&state, &user, &flow.server).await.is_none() {
                return not_a_member(&flow);
            }
            let (uid, cid, res_uri, scopes) = (
                user.id.clone(),
                flow.client.client_id.clone(),
                flow.server.resource.clone(),
                flow.scopes.join(" "),
            );
            let until = domain::now() + state.config.auth.consent_ttl.as_secs();
            if state
                .store
                .run(move |c| {
                    store::grants::remember_consent(c, &uid, &cid, &res_uri, &scopes, until)
                })
                .await
                .is_err()
            {
                return unavailable();
            }
            issue_code(&state, &flow, &user, StatusCode::SEE_OTHER).await
        }
        Some("deny") => redirect_error(
            &state,
            &flow.redirect_uri,
            "access_denied",
            "the user denied access",
            flow.state.as_deref(),
            StatusCode::SEE_OTHER,
        ),
        _ => consent_page(&req, &state, &flow, &user),
    }
}

async fn begin(req: &HttpRequest, state: &web::Data<AppState>, raw: String) -> HttpResponse {
    let flow = match validate(state, &raw).await {
        Ok(f) => f,
        Err(page) => return page,
    };
    match signed_in(req, state).await {
        None => login_page(req, state, &flow, "", None, StatusCode::OK),
        Some(user) => after_login(req, state, &flow, &user).await,
    }
}

/// Signed in: check membership, then skip consent (trusted client, or remembered) or ask. An
/// admin at a server of a project they are not a member of is always asked: what the project
/// set up (a trusted client) must not act as an admin unseen.
async fn after_login(
    req: &HttpRequest,
    state: &web::Data<AppState>,
    flow: &Flow,
    user: &UserRow,
) -> HttpResponse {
    let member = match may_use(state, user, &flow.server).await {
        Some(member) => member,
        None => return not_a_member(flow),
    };
    if !member {
        return consent_page(req, state, flow, user);
    }
    if flow.client.trusted {
        return issue_code(state, flow, user, StatusCode::SEE_OTHER).await;
    }
    let (uid, cid, res_uri, now) = (
        user.id.clone(),
        flow.client.client_id.clone(),
        flow.server.resource.clone(),
        domain::now(),
    );
    let remembered = state
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
            issue_code(state, flow, user, StatusCode::SEE_OTHER).await
        }
        Ok(_) => consent_page(req, state, flow, user),
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
async fn may_use(
    state: &web::Data<AppState>,
    user: &UserRow,
    server: &ServerEntry,
) -> Option<bool> {
    let (pid, uid) = (server.project_id.clone(), user.id.clone());
    let member = matches!(
        state
            .store
            .run(move |c| store::projects::member_role(c, &pid, &uid))
            .await,
        Ok(Some(_))
    );
    (member || user.role == "admin").then_some(member)
}

/// The user of a session cookie (`ezf_session` from the control API, or ours).
async fn signed_in(req: &HttpRequest, state: &web::Data<AppState>) -> Option<UserRow> {
    let token = req
        .cookie(HOST_SESSION_COOKIE)
        .or_else(|| req.cookie(SESSION_COOKIE))
        .map(|c| c.value().to_owned())?;
    let hash = crypto::token_hash(&token);
    let now = domain::now();
    state
        .store
        .run(move |c| store::sessions::lookup(c, &hash, now))
        .await
        .ok()
        .flatten()
        .map(|(u, _)| u)
}

fn secure(state: &AppState) -> bool {
    state.public_url.starts_with("https://")
}

fn session_cookie<'a>(state: &AppState, token: &'a str) -> Cookie<'a> {
    let name = if secure(state) {
        HOST_SESSION_COOKIE
    } else {
        SESSION_COOKIE
    };
    Cookie::build(name, token)
        .path("/")
        .http_only(true)
        .secure(secure(state))
        .same_site(SameSite::Lax)
        .max_age(actix_web::cookie::time::Duration::seconds(
            state.config.auth.session_ttl.as_secs(),
        ))
        .finish()
}

fn csrf_cookie_name(state: &AppState) -> &'static str {
    if secure(state) {
        "__Host-ezf_csrf"
    } else {
        "ezf_csrf"
    }
}

/// The browser's CSRF token (double-submit cookie), and a new one to set if it has none.
fn csrf_token(req: &HttpRequest, state: &AppState) -> (Option<String>, String) {
    match req.cookie(csrf_cookie_name(state)) {
        Some(c) if c.value().len() >= 32 => (Some(c.value().to_owned()), c.value().to_owned()),
        _ => (None, URL_SAFE_NO_PAD.encode(crypto::random_bytes::<32>())),
    }
}

fn with_csrf_cookie(
    req: &HttpRequest,
    state: &AppState,
    mut res: HttpResponse,
    token: &str,
) -> HttpResponse {
    if req
        .cookie(csrf_cookie_name(state))
        .is_some_and(|c| c.value() == token)
    {
        return res;
    }
    let cookie = Cookie::build(csrf_cookie_name(state), token.to_owned())
        .path("/")
        .http_only(true)
        .secure(secure(state))
        .same_site(SameSite::Strict)
        .finish();
    let _ = res.add_cookie(&cookie);
    res
}

fn form_action(state: &AppState) -> String {
    format!("{}/oauth/authorize", state.public_url)
}

fn login_page(
    req: &HttpRequest,
    state: &AppState,
    flow: &Flow,
    email: &str,
    error: Option<&str>,
    status: StatusCode,
) -> HttpResponse {
    let (_, csrf) = csrf_token(req, state);
    // What was typed is shown again, unless it cannot be an address at all.
    let email = if email.len() <= 254 { email } else { "" };
    let res = pages::render(
        status,
        "login.html",
        context! {
            action => form_action(state), csrf => &csrf, request => &flow.raw, email, error,
            client_name => &flow.client.name, server_name => &flow.server.name,
        },
    );
    with_csrf_cookie(req, state, res, &csrf)
}

fn consent_page(req: &HttpRequest, state: &AppState, flow: &Flow, user: &UserRow) -> HttpResponse {
    let (_, csrf) = csrf_token(req, state);
    let scopes: Vec<minijinja::Value> = flow
        .scopes
        .iter()
        .map(|s| context! { name => s, text => pages::describe_scope(s) })
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
            action => form_action(state), csrf => &csrf, request => &flow.raw,
            client_name => &flow.client.name, server_name => &flow.server.name, server_uri => &flow.server.resource,
            redirect_host, scopes, user_email => &user.email, client_origin,
        },
    );
    with_csrf_cookie(req, state, res, &csrf)
}

/// Redirects to the client with `pairs` added to its redirect URI's query, plus `iss`.
fn redirect_with(
    state: &AppState,
    redirect_uri: &str,
    pairs: &[(&str, &str)],
    status: StatusCode,
) -> HttpResponse {
    let Ok(mut url) = Url::parse(redirect_uri) else {
        return pages::error(
            StatusCode::BAD_REQUEST,
            "Invalid redirect",
            "The application's redirect address is not valid.",
        );
    };
    {
        let mut q = url.query_pairs_mut();
        for (k, v) in pairs {
            q.append_pair(k, v);
        }
        q.append_pair("iss", &state.public_url);
    }
    HttpResponse::build(status)
        .insert_header((header::LOCATION, url.as_str()))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .finish()
}

fn redirect_error(
    state: &AppState,
    redirect_uri: &str,
    code: &str,
    desc: &str,
    st: Option<&str>,
    status: StatusCode,
) -> HttpResponse {
    let mut pairs = vec![("error", code), ("error_description", desc)];
    if let Some(s) = st {
        pairs.push(("state", s));
    }
    redirect_with(state, redirect_uri, &pairs, status)
}

async fn issue_code(
    state: &web::Data<AppState>,
    flow: &Flow,
    user: &UserRow,
    status: StatusCode,
) -> HttpResponse {
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
        expires_at: now + state.config.auth.auth_code_ttl.as_secs(),
        used_at: None,
        grant_id: None,
    };
    if state
        .store
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
    redirect_with(state, &flow.redirect_uri, &pairs, status)
}

/// Validates an authorization request; the `Err` is the page or redirect to answer with.
async fn validate(state: &web::Data<AppState>, raw: &str) -> Result<Flow, HttpResponse> {
    let bad_page = |msg: &str| pages::error(StatusCode::BAD_REQUEST, "Invalid request", msg);
    let params = Params::parse(raw.as_bytes()).map_err(|e| bad_page(&e.description))?;
    let client_id = params
        .get("client_id")
        .ok_or_else(|| bad_page("The request names no client (client_id is missing)."))?;
    let mut client = clients::resolve(state, client_id)
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
    // From here on, errors go back to the client — if a project registered it. Anyone can
    // register a client (or publish a metadata document) naming any redirect URI, so for those
    // an automatic redirect would make this server an open redirector (RFC 9700 §4.11.2): the
    // error is shown here instead, before the user has done anything.
    let st = params.get("state").map(str::to_owned);
    let redirect_trusted = std::cell::Cell::new(client.server_id.is_some());
    let fail = |code: &str, desc: &str| {
        if !redirect_trusted.get() {
            return pages::error(
                StatusCode::BAD_REQUEST,
                "Invalid request",
                &format!("The application's request cannot be served ({code}): {desc}."),
            );
        }
        redirect_error(
            state,
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
    let resources = params.all("resource");
    let server = match resources.as_slice() {
        [one] => state.gateway.registry.by_resource(one),
        _ => None,
    }
    .filter(|s| matches!(s.auth, ServerAuth::Managed))
    .ok_or_else(|| {
        fail(
            "invalid_target",
            "resource must be the URI of one MCP server protected by this authorization server",
        )
    })?;
    if client.server_id.as_ref().is_some_and(|id| id != &server.id) {
        if !clients::is_metadata_url(&client.client_id) {
            return Err(fail(
                "invalid_target",
                "this client is registered for another server",
            ));
        }
        // A metadata-document client that another server pre-registered: anyone may name its
        // document, so here it is an ordinary one (no trust, the server's scopes, no error
        // redirects).
        redirect_trusted.set(false);
        client = Arc::new(clients::Client {
            scopes: None,
            trusted: false,
            server_id: None,
            stored: false,
            ..(*client).clone()
        });
    }
    let allowed: &[String] = client.scopes.as_deref().unwrap_or(&server.scopes_supported);
    let scopes: Vec<String> = match params.get("scope") {
        Some(s) => {
            let mut v: Vec<String> = Vec::new();
            for token in s.split(' ').filter(|t| !t.is_empty()) {
                validate::scope_token(token).map_err(|e| fail("invalid_scope", &e))?;
                if !server.scopes_supported.iter().any(|x| x == token)
                    || !allowed.iter().any(|x| x == token)
                {
                    return Err(fail(
                        "invalid_scope",
                        &format!("the scope {token} is not available to this client"),
                    ));
                }
                if !v.iter().any(|x| x == token) {
                    v.push(token.to_owned());
                }
            }
            v
        }
        None => match &client.scopes {
            Some(own) => own
                .iter()
                .filter(|s| server.scopes_supported.contains(s))
                .cloned()
                .collect(),
            None => vec![server.base_scope().to_owned()],
        },
    };
    if scopes.is_empty() {
        return Err(fail("invalid_scope", "no scope requested"));
    }
    Ok(Flow {
        raw: raw.to_owned(),
        redirect_uri_given: params.get("redirect_uri").is_some(),
        client,
        redirect_uri,
        state: st,
        challenge: challenge.to_owned(),
        server,
        scopes,
    })
}
