//! The authorization server's rules, each with its failing case: PKCE, codes, redirect URIs,
//! resources, scopes, refresh tokens, CSRF, login throttling, page headers, escaping, BYOA, and
//! bad input.

use serde_json::json;

use crate::helpers::ApiResponse;
use crate::helpers::{ADMIN_EMAIL, ADMIN_PASSWORD, TestApp};
use crate::oauth::browser::*;

mod bad_input;
mod codes_redirects;
mod refresh_pages;

fn public(id: &str) -> ClientAuth {
    ClientAuth::Public(id.to_owned())
}

async fn raw_token(app: &TestApp, content_type: Option<&str>, body: Vec<u8>) -> ApiResponse {
    let mut req = bare_client().post(app.url("/oauth/token")).body(body);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    ApiResponse::read(req.send().await.expect("request")).await
}

const FORM: &str = "application/x-www-form-urlencoded";
