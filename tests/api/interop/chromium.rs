//! A person in a real browser signs in and consents: headless Chromium (Debian's `chromium`,
//! which `.ci/run` installs when it is missing), driven by puppeteer-core from
//! `tests/interop/chromium_sign_in.mjs`, types the admin's email and password into the sign-in
//! page, clicks "Allow" on the consent page, and follows the redirect to the client's callback
//! (a real listener here); the code it carries is exchanged and the token calls the front door.
//!
//! What a browser sends is what the refusals of other sites' posts must let through: the
//! form posts carry the page's own `Origin` (the pages say `Referrer-Policy: same-origin`; with
//! `no-referrer` Chromium sends `Origin: null`) and `Sec-Fetch-Site: same-origin`.
//!
//! Without a Chromium (a developer's machine) the test says `SKIPPED … no chromium` and passes;
//! with `EZFORGE_SKIP_INTEROP=1` it says that it is skipped for that reason.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use crate::fakes::FakeCallback;
use crate::helpers::{ADMIN_EMAIL, ADMIN_PASSWORD};
use crate::interop::sdk::{node, run, skipped, toolchain};
use crate::oauth::browser::{ClientAuth, exchange, tools_list, world};

/// Debian's Chromium, or a `chromium` on PATH.
fn chromium() -> Option<PathBuf> {
    let debian = PathBuf::from("/usr/bin/chromium");
    if debian.is_file() {
        return Some(debian);
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join("chromium"))
        .find(|p| p.is_file())
}

/// The requests of the run that went to `url_prefix` with `method`.
fn requests<'a>(result: &'a Value, method: &str, url_prefix: &str) -> Vec<&'a Value> {
    result["requests"]
        .as_array()
        .expect("requests")
        .iter()
        .filter(|r| {
            r["method"] == method && r["url"].as_str().is_some_and(|u| u.starts_with(url_prefix))
        })
        .collect()
}

#[tokio::test]
async fn headless_chromium_signs_in_consents_and_the_code_reaches_the_client() {
    let Some(chromium) = chromium() else {
        skipped("no chromium (Debian: apt-get install chromium; .ci/run installs it)");
        return;
    };
    let Some(tc) = toolchain().await else {
        return;
    };
    let w = world().await;
    let client = w.public_client().await;
    // A loopback redirect URI matches the registered one on any port: the callback's.
    let callback = FakeCallback::start().await;
    let req = w.request(&client).set("redirect_uri", &callback.url);
    let profile = tempfile::tempdir().expect("profile dir");

    let mut cmd = node(tc, "chromium_sign_in.mjs");
    cmd.arg(req.url(w.issuer()))
        .args([ADMIN_EMAIL, ADMIN_PASSWORD])
        .arg(&chromium)
        .arg(profile.path());
    let out = run(cmd, Duration::from_secs(180)).await;
    out.assert_success();
    let result = out.result();
    let describe = || format!("{result:#}\n{}", out.describe());
    assert!(result.get("error").is_none(), "{}", describe());

    // The pages: sign-in, consent, then the client's callback.
    let pages = result["pages"].as_array().expect("pages");
    assert_eq!(pages.len(), 3, "{}", describe());
    for p in &pages[..2] {
        assert_eq!(p["status"], 200, "{}", describe());
        assert_eq!(p["referrerPolicy"], "same-origin", "{}", describe());
    }
    assert!(
        pages[1]["text"]
            .as_str()
            .is_some_and(|t| t.contains("Allow")),
        "the consent page: {}",
        describe()
    );
    assert!(
        pages[2]["url"]
            .as_str()
            .is_some_and(|u| u.starts_with(&callback.url)),
        "{}",
        describe()
    );

    // Both form posts carried our own origin, as a browser sends it from our own pages.
    let posts = requests(&result, "POST", &format!("{}/oauth/", w.issuer()));
    assert_eq!(posts.len(), 2, "sign-in and consent: {}", describe());
    for p in &posts {
        assert_eq!(p["wireHeadersSeen"], true, "{}", describe());
        assert_eq!(p["origin"], w.issuer(), "{}", describe());
        assert_eq!(p["secFetchSite"], "same-origin", "{}", describe());
    }

    // The code reached the client, with the state and the issuer, and nothing about the
    // authorization request leaked in a Referer.
    let (arrived, headers) = callback
        .next(Duration::from_secs(30))
        .await
        .unwrap_or_else(|| panic!("nothing reached the callback: {}", describe()));
    let query = |k: &str| {
        arrived
            .query_pairs()
            .find(|(name, _)| name == k)
            .map(|(_, v)| v.into_owned())
    };
    assert_eq!(query("state").as_deref(), Some(req.state()), "{arrived}");
    assert_eq!(query("iss").as_deref(), Some(w.issuer()), "{arrived}");
    assert!(
        headers.iter().all(|(k, _)| k != "referer"),
        "no Referer to the client: {headers:?}"
    );
    let code = query("code").unwrap_or_else(|| panic!("no code: {arrived}"));

    // The code is good: a token, and the front door takes it.
    let reply = exchange(&w.app, &ClientAuth::Public(client.clone()), &req, &code).await;
    reply.assert_ok();
    let (status, body) = tools_list(&w.resource, &reply.access_token()).await;
    assert_eq!(status, 200, "{body}");
}
