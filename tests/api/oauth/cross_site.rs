//! Issue 18: the sign-in and consent forms refuse posts from other sites (403, a page, nothing
//! written, no session), whatever the CSRF token says.

use crate::helpers::{ADMIN_EMAIL, ADMIN_PASSWORD};
use crate::oauth::browser::{Browser, Page, REDIRECT, World, rows_in_tables_like, world};

/// What a post leaves behind: sessions, audit entries, codes, consents, grants.
const WRITTEN: &[&str] = &["sessions", "audit_log", "auth_codes", "consents", "grants"];

/// Where another site's post might come from: its Origin, an opaque one the browser says is
/// from another site or a sibling host, or only the browser's Sec-Fetch-Site (some requests
/// carry no Origin).
const FOREIGN: &[&[(&str, &str)]] = &[
    &[("origin", "https://evil.example")],
    &[("origin", "http://127.0.0.1:1")],
    &[("origin", "null"), ("sec-fetch-site", "cross-site")],
    &[("origin", "null"), ("sec-fetch-site", "same-site")],
    &[("sec-fetch-site", "cross-site")],
    &[("sec-fetch-site", "same-site")],
];

async fn post_from(
    browser: &Browser,
    url: &str,
    headers: &[(&str, &str)],
    fields: &[(String, String)],
) -> Page {
    let mut req = browser
        .client
        .post(url)
        .header("accept", "text/html")
        .form(fields);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    Page::read(url, req.send().await.expect("post")).await
}

#[track_caller]
fn assert_refused(page: &Page, headers: &[(&str, &str)]) {
    assert_eq!(page.status, 403, "{headers:?}: {}", page.describe());
    assert!(page.is_html(), "a page: {}", page.describe());
    assert!(page.body.contains("another site"), "{}", page.describe());
    assert!(page.header("location").is_none(), "no redirect");
    assert!(
        page.header_all("set-cookie")
            .iter()
            .all(|c| !c.contains("session")),
        "no session cookie: {:?}",
        page.header_all("set-cookie")
    );
}

/// A world, a browser at its sign-in page, the page, where the form posts, and what the
/// admin would post there (the CSRF token included).
async fn at_sign_in() -> (World, Browser, Page, String, Vec<(String, String)>) {
    let w = world().await;
    let client = w.public_client().await;
    let browser = w.browser();
    let req = w.request(&client);
    let page = browser.get(&req.url(&browser.origin)).await;
    let form = page.login_form().expect("a login form");
    let url = page.action_url(&form);
    let login = form.fields(
        &[("email", ADMIN_EMAIL), ("password", ADMIN_PASSWORD)],
        None,
        false,
    );
    (w, browser, page, url, login)
}

#[tokio::test]
async fn sign_in_and_consent_posts_from_other_sites_are_refused() {
    let (w, browser, _, url, login) = at_sign_in().await;

    // The right password and the right CSRF token, from another site: nothing happens.
    let before = rows_in_tables_like(&w.app, WRITTEN).await;
    for headers in FOREIGN {
        assert_refused(&post_from(&browser, &url, headers, &login).await, headers);
    }
    assert_eq!(rows_in_tables_like(&w.app, WRITTEN).await, before);

    // From our own page (with or without the browser's Sec-Fetch-Site), it signs in.
    let consent = post_from(
        &browser,
        &url,
        &[
            ("origin", &browser.origin),
            ("sec-fetch-site", "same-origin"),
        ],
        &login,
    )
    .await;
    let form = consent
        .consent_form()
        .unwrap_or_else(|| panic!("{}", consent.describe()));
    let url = consent.action_url(&form);

    // Approving, or denying, from another site: refused, no code, no consent remembered.
    let before = rows_in_tables_like(&w.app, WRITTEN).await;
    for decision in ["approve", "deny"] {
        let fields = form.fields(&[], Some(("decision", decision)), true);
        for headers in FOREIGN {
            assert_refused(&post_from(&browser, &url, headers, &fields).await, headers);
        }
    }
    assert_eq!(rows_in_tables_like(&w.app, WRITTEN).await, before);

    // A post without Origin or Sec-Fetch-Site (an older browser) still needs the CSRF token.
    let no_token: Vec<(String, String)> = form
        .fields(&[], Some(("decision", "approve")), true)
        .into_iter()
        .filter(|(k, _)| k != "csrf")
        .collect();
    let page = post_from(&browser, &url, &[], &no_token).await;
    assert_eq!(page.status, 403, "{}", page.describe());
    assert!(page.header("location").is_none());

    // From our own page, the approval goes through.
    let fields = form.fields(&[], Some(("decision", "approve")), true);
    let done = post_from(&browser, &url, &[("origin", &browser.origin)], &fields).await;
    let location = done
        .location()
        .unwrap_or_else(|| panic!("{}", done.describe()));
    assert!(location.as_str().starts_with(REDIRECT), "{location}");
    assert!(location.query_pairs().any(|(k, _)| k == "code"));
}

/// `Origin: null` (a page whose referrer policy hides its origin, or a privacy tool) from a
/// post the browser calls `same-origin`, or with no Sec-Fetch-Site, tells nothing: the CSRF
/// token decides, and with it the sign-in and the approval go through. The pages themselves
/// say `Referrer-Policy: same-origin`, so that browsers send their real origin to us.
#[tokio::test]
async fn an_opaque_origin_is_left_to_the_csrf_token() {
    let (w, browser, page, url, login) = at_sign_in().await;
    assert_eq!(page.header("referrer-policy"), Some("same-origin"));
    let opaque: &[(&str, &str)] = &[("origin", "null"), ("sec-fetch-site", "same-origin")];

    // Without the CSRF token, an opaque origin gets nowhere.
    let before = rows_in_tables_like(&w.app, WRITTEN).await;
    let no_token: Vec<(String, String)> =
        login.iter().filter(|(k, _)| k != "csrf").cloned().collect();
    for headers in [opaque, &[("origin", "null")]] {
        let page = post_from(&browser, &url, headers, &no_token).await;
        assert_eq!(page.status, 403, "{headers:?}: {}", page.describe());
        assert!(page.body.contains("Form expired"), "{}", page.describe());
    }
    assert_eq!(rows_in_tables_like(&w.app, WRITTEN).await, before);

    // With it, the sign-in and the approval go through.
    let consent = post_from(&browser, &url, opaque, &login).await;
    assert_eq!(consent.header("referrer-policy"), Some("same-origin"));
    let form = consent
        .consent_form()
        .unwrap_or_else(|| panic!("{}", consent.describe()));
    let url = consent.action_url(&form);
    let fields = form.fields(&[], Some(("decision", "approve")), true);
    let done = post_from(&browser, &url, &[("origin", "null")], &fields).await;
    let location = done
        .location()
        .unwrap_or_else(|| panic!("{}", done.describe()));
    assert!(location.as_str().starts_with(REDIRECT), "{location}");
    assert!(location.query_pairs().any(|(k, _)| k == "code"));
}
