//! Our sign-in and consent pages, and the CSRF double-submit cookie that their forms carry.

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use minijinja::context;
use url::Url;

use super::request::Flow;
use crate::domain;
use crate::oauth::{clients, oidc, pages};
use crate::services::accounts::Accounts;
use crate::store::users::UserRow;

fn csrf_cookie_name(accounts: &Accounts) -> &'static str {
    if accounts.secure() {
        "__Host-ezf_csrf"
    } else {
        "ezf_csrf"
    }
}

/// The browser's CSRF token (double-submit cookie), and a new one to set if it has none.
pub fn csrf_token(req: &HttpRequest, accounts: &Accounts) -> (Option<String>, String) {
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

pub fn login_page(
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

pub fn consent_page(
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
    // Where the code goes: a web redirect's host; for an app's scheme the scheme alone, since
    // the rest of such a URI (`web+x://claude.ai/cb`) is whatever the client chose to show.
    let (redirect_host, redirect_app) = match Url::parse(&flow.redirect_uri) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => {
            (u.host_str().unwrap_or_default().to_owned(), None)
        }
        Ok(u) => (String::new(), Some(format!("{}:", u.scheme()))),
        Err(_) => (String::new(), None),
    };
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
            redirect_host, redirect_app, scopes, shared, user_email => &user.email, client_origin,
        },
    );
    with_csrf_cookie(req, accounts, res, &csrf)
}
