//! `GET/POST /oauth/authorize`: validate the request, sign the user in, ask for consent, and
//! redirect back with a code. Errors about the client or its redirect URI are shown as a page
//! and never redirect; other errors redirect with `error`, `state` and `iss` (RFC 9207) to a
//! project's client or to the user's own machine, and are a page for anyone else's.
//! The flow is stateless: our pages carry the original request in a hidden field, and every
//! submission is validated again from scratch.

mod answers;
mod authorizer;
mod forms;
mod request;

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse};

use self::answers::{no_such_issuer, redirect_error, redirect_with, unavailable};
use self::authorizer::Authorizer;
use self::forms::{consent_page, csrf_token, login_page};
use self::request::{Flow, validate};
use super::issuer::Issuer;
use super::pages;
use super::params::Params;
use crate::config::Config;
use crate::crypto;
use crate::domain::kinds::UserRole;
use crate::domain::{self, Secret};
use crate::services::accounts::{LoginError, SignedIn};
use crate::services::gateway::registry::ServerEntry;
use crate::store::{self, Store, grants::CodeRow, users::UserRow};

pub async fn get(req: HttpRequest, az: Authorizer) -> HttpResponse {
    let raw = req.query_string().to_owned();
    begin(&req, &az, raw).await
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
    if let Some(page) = forged_form(&req, &az, params.get("csrf").unwrap_or("")) {
        return page;
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
        return sign_in(&req, &az, &flow, email, password).await;
    }
    let Some(who) = az.accounts.signed_in(&req).await else {
        return login_page(&req, &az.accounts, &flow, "", None, StatusCode::OK);
    };
    decide(&req, &az, &flow, &who, params.get("decision")).await
}

/// The page refusing a form post that did not come from our own pages (another site, or
/// without the browser's CSRF token), if it did not.
fn forged_form(req: &HttpRequest, az: &Authorizer, sent: &str) -> Option<HttpResponse> {
    if let Some(why) = super::cross_site::refused(req, az.gateway.urls.public_url()) {
        tracing::info!(
            why,
            "a sign-in or consent form posted from another site was refused"
        );
        return Some(pages::error(
            StatusCode::FORBIDDEN,
            "Request refused",
            "This form was sent from another site. Go back to the application and start again.",
        ));
    }
    let (cookie_token, _) = csrf_token(req, &az.accounts);
    if cookie_token.is_none()
        || !crypto::ct_eq(
            cookie_token.as_deref().unwrap_or("").as_bytes(),
            sent.as_bytes(),
        )
    {
        return Some(pages::error(
            StatusCode::FORBIDDEN,
            "Form expired",
            "This form expired or did not come from this site. Go back to the application and start again.",
        ));
    }
    None
}

/// The sign-in form: checks the password (throttled), starts a session (its cookie set on the
/// answer), and goes on as a signed-in user would.
async fn sign_in(
    req: &HttpRequest,
    az: &Authorizer,
    flow: &Flow,
    email: &str,
    password: Secret,
) -> HttpResponse {
    let address = req.peer_addr().map(|a| a.ip().to_string());
    let user = match az
        .accounts
        .verify_login(email, password, address.as_deref())
        .await
    {
        Ok(u) => u,
        Err(LoginError::Invalid) => {
            return login_page(
                req,
                &az.accounts,
                flow,
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
                req,
                &az.accounts,
                flow,
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
    let mut res = after_login(req, az, flow, &who).await;
    let ttl = az.accounts.session_ttl_secs();
    let _ = res.add_cookie(&az.accounts.session_cookie(token.expose(), ttl));
    res
}

/// The consent form's answer: approve (remembered, then a code), deny (`access_denied` back
/// to the client), or none (the form again).
async fn decide(
    req: &HttpRequest,
    az: &Authorizer,
    flow: &Flow,
    who: &SignedIn,
    decision: Option<&str>,
) -> HttpResponse {
    let user = &who.user;
    match decision {
        Some("approve") => {
            if may_use(&az.store, user, &flow.server).await.is_none() {
                return not_a_member(flow);
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
            issue_code(&az.store, &az.config, flow, who, StatusCode::SEE_OTHER).await
        }
        Some("deny") => redirect_error(
            &flow.issuer,
            &flow.redirect_uri,
            "access_denied",
            "the user denied access",
            flow.state.as_deref(),
            StatusCode::SEE_OTHER,
        ),
        _ => consent_page(req, &az.accounts, flow, user),
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
    (member || user.role == UserRole::Admin).then_some(member)
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
