//! How an authorization request is answered when it goes no further: a redirect back to the
//! client (with `error`, `state` and `iss`, RFC 9207), or one of our pages.

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use actix_web::http::header;
use url::Url;

use crate::oauth::issuer::Issuer;
use crate::oauth::pages;

/// The page for an authorization server that does not exist.
pub fn no_such_issuer() -> HttpResponse {
    pages::error(
        StatusCode::NOT_FOUND,
        "No such server",
        "This authorization server does not exist (the MCP server may have been removed or renamed).",
    )
}

pub fn unavailable() -> HttpResponse {
    pages::error(
        StatusCode::SERVICE_UNAVAILABLE,
        "Try again",
        "The server is busy. Try again in a moment.",
    )
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
pub fn redirect_with(
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

pub fn redirect_error(
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
pub fn error_page(
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
