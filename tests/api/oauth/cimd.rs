//! Client ID Metadata Documents: a client_id that is an https URL, fetched from a local https
//! server with a self-signed certificate; and the SSRF guard in front of that fetch.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use actix_web::{HttpResponse, web};
use serde_json::{Value, json};

use crate::oauth::browser::*;

/// An https server serving whatever document is set, at any path, and counting fetches.
struct CimdServer {
    /// `https://127.0.0.1:PORT`
    origin: String,
    port: u16,
    ca_file: std::path::PathBuf,
    doc: Arc<Mutex<Value>>,
    fetches: Arc<Mutex<Vec<String>>>,
    handle: ServerHandle,
    _dir: tempfile::TempDir,
}

impl Drop for CimdServer {
    fn drop(&mut self) {
        drop(self.handle.stop(false));
    }
}

impl CimdServer {
    async fn start() -> CimdServer {
        let (dir, ca_file, tls) = crate::fakes::self_signed_tls();
        let doc = Arc::new(Mutex::new(Value::Null));
        let fetches = Arc::new(Mutex::new(Vec::new()));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let (d, f) = (doc.clone(), fetches.clone());
        let server = actix_web::HttpServer::new(move || {
            let (d, f) = (d.clone(), f.clone());
            actix_web::App::new().default_service(web::to(move |req: actix_web::HttpRequest| {
                let (d, f) = (d.clone(), f.clone());
                async move {
                    f.lock().expect("lock").push(req.path().to_owned());
                    // As an open redirect on a trusted host would answer.
                    if req.path().starts_with("/moved") {
                        return HttpResponse::Found()
                            .insert_header(("location", "/client.json"))
                            .finish();
                    }
                    let doc = d.lock().expect("lock").clone();
                    HttpResponse::Ok()
                        .content_type("application/json")
                        .body(doc.to_string())
                }
            }))
        })
        .workers(1)
        .disable_signals()
        .listen_rustls_0_23(listener, tls)
        .expect("listen")
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        CimdServer {
            origin: format!("https://127.0.0.1:{port}"),
            port,
            ca_file,
            doc,
            fetches,
            handle,
            _dir: dir,
        }
    }

    fn url(&self) -> String {
        format!("{}/client.json", self.origin)
    }

    fn set(&self, doc: Value) {
        *self.doc.lock().expect("lock") = doc;
    }

    fn fetches(&self) -> usize {
        self.fetches.lock().expect("lock").len()
    }

    /// A valid document for `url()`.
    fn good_doc(&self) -> Value {
        json!({
            "client_id": self.url(),
            "client_name": "CIMD App",
            "redirect_uris": [REDIRECT],
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
        })
    }

    async fn stop(&self) {
        self.handle.stop(false).await;
    }
}

/// A world whose outbound client trusts `cimd` and may reach loopback.
async fn cimd_world(cimd: &CimdServer) -> World {
    let ca = cimd.ca_file.clone();
    world_with(move |c| {
        c.outbound.allow_private_addresses = true;
        c.outbound.ca_files = vec![ca];
    })
    .await
}

#[tokio::test]
async fn good_metadata_document_runs_the_login_flow() {
    let cimd = CimdServer::start().await;
    cimd.set(cimd.good_doc());
    let w = cimd_world(&cimd).await;
    let client_id = cimd.url();
    let req = w.request(&client_id);
    let out = authorize(&w.browser(), &req).await;
    assert!(out.saw_login, "{}", out.describe());
    assert!(out.saw_consent, "{}", out.describe());
    let consent = out
        .pages
        .iter()
        .find(|p| p.consent_form().is_some())
        .expect("consent page");
    assert!(
        consent.body.contains("CIMD App"),
        "the consent page names the document's client_name"
    );
    let code = out.code();
    let reply = exchange(&w.app, &ClientAuth::Public(client_id.clone()), &req, &code).await;
    reply.assert_ok();
    let (_, claims) = jwt_parts(&reply.access_token());
    assert_eq!(claims["client_id"], client_id);
    assert_eq!(tools_list(&w.resource, &reply.access_token()).await.0, 200);
    assert!(cimd.fetches() >= 1);
}

#[tokio::test]
async fn client_id_mismatch_is_an_error_page() {
    let cimd = CimdServer::start().await;
    let mut doc = cimd.good_doc();
    doc["client_id"] = json!(format!("{}/someone-else.json", cimd.origin));
    cimd.set(doc);
    let w = cimd_world(&cimd).await;
    let out = authorize(&w.browser(), &w.request(&cimd.url())).await;
    out.assert_error_page(400);
    assert!(
        !out.saw_login,
        "refused before any login; {}",
        out.describe()
    );
}

#[tokio::test]
async fn a_document_is_never_taken_from_where_its_url_redirects() {
    // The document at the redirect's target names the URL asked for: followed, the consent
    // page would say the first host publishes it.
    let cimd = CimdServer::start().await;
    let moved = format!("{}/moved?to=client.json", cimd.origin);
    let mut doc = cimd.good_doc();
    doc["client_id"] = json!(moved);
    cimd.set(doc);
    let w = cimd_world(&cimd).await;
    let out = authorize(&w.browser(), &w.request(&moved)).await;
    out.assert_error_page(400);
    assert!(!out.saw_login, "{}", out.describe());
    assert!(
        out.pages.iter().any(|p| p.body.contains("302")),
        "the page says why: {}",
        out.describe()
    );
    assert_eq!(cimd.fetches(), 1, "the redirect is not followed");
}

#[tokio::test]
async fn redirect_uri_not_in_the_document_is_an_error_page() {
    let cimd = CimdServer::start().await;
    cimd.set(cimd.good_doc());
    let w = cimd_world(&cimd).await;
    let req = w
        .request(&cimd.url())
        .set("redirect_uri", "https://evil.example/callback");
    let out = authorize(&w.browser(), &req).await;
    out.assert_error_page(400);
    let req = w
        .request(&cimd.url())
        .set("redirect_uri", "http://127.0.0.1:43210/elsewhere");
    authorize(&w.browser(), &req).await.assert_error_page(400);
}

#[tokio::test]
async fn malformed_documents_are_error_pages() {
    let cimd = CimdServer::start().await;
    let w = cimd_world(&cimd).await;
    // Each at its own URL: a document that cannot be used is not fetched again for a while.
    let bad: [fn(&str) -> Value; 4] = [
        |_| json!("not an object"),
        |url| json!({ "client_id": url, "client_name": "No URIs" }),
        |url| json!({ "client_id": url, "client_name": "Bad", "redirect_uris": "http://127.0.0.1/callback" }),
        |url| json!({ "client_id": url, "client_name": "Secret", "redirect_uris": [REDIRECT], "client_secret": "s", "token_endpoint_auth_method": "client_secret_basic" }),
    ];
    for (i, make) in bad.iter().enumerate() {
        let url = format!("{}/client-{i}.json", cimd.origin);
        let doc = make(&url);
        cimd.set(doc.clone());
        let out = authorize(&w.browser(), &w.request(&url)).await;
        assert!(out.code.is_none(), "{doc}: {}", out.describe());
        assert!(
            out.redirect.is_none(),
            "{doc}: no redirect; {}",
            out.describe()
        );
        assert!(
            (400..500).contains(&out.status()),
            "{doc}: an error page; {}",
            out.describe()
        );
    }
    assert_eq!(cimd.fetches(), bad.len(), "one fetch per document");
}

#[tokio::test]
async fn a_document_that_cannot_be_used_is_not_fetched_again_at_once() {
    let cimd = CimdServer::start().await;
    let mut doc = cimd.good_doc();
    doc["redirect_uris"] = json!([]);
    cimd.set(doc);
    let w = cimd_world(&cimd).await;
    for _ in 0..3 {
        let out = authorize(&w.browser(), &w.request(&cimd.url())).await;
        out.assert_error_page(400);
        assert!(
            out.last().body.contains("lists no redirect_uris"),
            "the reason is shown each time; {}",
            out.describe()
        );
    }
    assert_eq!(cimd.fetches(), 1, "the failure is remembered");
}

#[tokio::test]
async fn a_pre_registration_applies_to_a_cached_document_at_once() {
    let cimd = CimdServer::start().await;
    cimd.set(cimd.good_doc());
    let w = cimd_world(&cimd).await;
    let req = w.request(&cimd.url());
    // The document is fetched and cached by a first visit.
    let browser = w.browser();
    let page = browser.get(&req.url(w.issuer())).await;
    assert!(page.login_form().is_some(), "{}", page.describe());
    assert_eq!(cimd.fetches(), 1);
    // Now the operator marks it trusted: no consent page, without fetching it again.
    let (status, body) = api(
        &w.app,
        "POST",
        &format!("/v1/servers/{}/clients", w.server_id),
        Some(&w.admin),
        Some(json!({ "clientMetadataUrl": cimd.url(), "trusted": true })),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let out = authorize(&w.browser(), &req).await;
    assert!(out.saw_login, "{}", out.describe());
    assert!(!out.saw_consent, "trusted: {}", out.describe());
    out.code();
    assert_eq!(cimd.fetches(), 1, "served from the cache");
}

#[tokio::test]
async fn a_pre_registration_for_one_server_does_not_lock_the_document_out_of_others() {
    let cimd = CimdServer::start().await;
    cimd.set(cimd.good_doc());
    let w = cimd_world(&cimd).await;
    let (status, body) = api(
        &w.app,
        "POST",
        &format!("/v1/servers/{}/clients", w.server_id),
        Some(&w.admin),
        Some(json!({ "clientMetadataUrl": cimd.url(), "trusted": true, "scopes": ["mcp:read"] })),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    // At the server that pre-registered it: trusted, no consent.
    let out = authorize(&w.browser(), &w.request(&cimd.url())).await;
    assert!(!out.saw_consent, "{}", out.describe());
    out.code();
    // At another server: an ordinary metadata-document client, asked for consent.
    let other = w.add_server("elsewhere").await;
    let resource = other["url"].as_str().expect("url");
    let req = w
        .request(&cimd.url())
        .set("resource", resource)
        .set("scope", "mcp:read mcp:execute");
    let out = authorize(&w.browser(), &req).await;
    assert!(out.saw_consent, "{}", out.describe());
    let code = out.code();
    let reply = exchange(&w.app, &ClientAuth::Public(cimd.url()), &req, &code).await;
    reply.assert_ok();
    let (_, claims) = jwt_parts(&reply.access_token());
    assert_eq!(claims["aud"], resource);
    assert_eq!(claims["scope"], "mcp:read mcp:execute");
}

#[tokio::test]
async fn document_server_down_fails_closed() {
    let cimd = CimdServer::start().await;
    cimd.set(cimd.good_doc());
    let w = cimd_world(&cimd).await;
    cimd.stop().await;
    let out = authorize(&w.browser(), &w.request(&cimd.url())).await;
    assert!(
        out.redirect.is_none() && out.code.is_none(),
        "{}",
        out.describe()
    );
    assert!(out.status() >= 400, "an error page; {}", out.describe());
    assert!(
        out.last().login_form().is_none() && out.last().consent_form().is_none(),
        "{}",
        out.describe()
    );
    assert!(out.last().header("location").is_none());
}

#[tokio::test]
async fn ssrf_guard_refuses_private_addresses_without_fetching() {
    let cimd = CimdServer::start().await;
    cimd.set(cimd.good_doc());
    let ca = cimd.ca_file.clone();
    // The CA is trusted, but private addresses are not allowed (the default).
    let w = world_with(move |c| c.outbound.ca_files = vec![ca]).await;
    assert!(!w.app.state.config.outbound.allow_private_addresses);
    for client_id in [
        cimd.url(),
        format!("https://localhost:{}/client.json", cimd.port),
        "https://169.254.169.254/x".to_owned(),
        "https://[::ffff:127.0.0.1]/x".to_owned(),
        format!("https://[::ffff:127.0.0.1]:{}/client.json", cimd.port),
        "https://[::1]/x".to_owned(),
        "https://localhost/x".to_owned(),
        "https://10.0.0.1/x".to_owned(),
        "https://0.0.0.0/x".to_owned(),
        "https://2130706433/x".to_owned(),
    ] {
        let started = Instant::now();
        let out = authorize(&w.browser(), &w.request(&client_id)).await;
        assert!(
            out.redirect.is_none() && out.code.is_none(),
            "{client_id}: {}",
            out.describe()
        );
        assert_eq!(
            out.status(),
            400,
            "{client_id}: an error page; {}",
            out.describe()
        );
        assert!(
            out.last().login_form().is_none(),
            "{client_id}: refused before login"
        );
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "{client_id}: refused without trying to connect ({:?})",
            started.elapsed()
        );
    }
    assert_eq!(cimd.fetches(), 0, "nothing was fetched");
}

#[tokio::test]
async fn plain_http_and_odd_client_id_urls_are_refused() {
    let cimd = CimdServer::start().await;
    cimd.set(cimd.good_doc());
    let w = cimd_world(&cimd).await;
    for client_id in [
        format!("http://127.0.0.1:{}/client.json", cimd.port),
        format!("{}/", cimd.origin),
        format!("{}/client.json#frag", cimd.origin),
        format!("https://user:pw@127.0.0.1:{}/client.json", cimd.port),
        format!("https://user@127.0.0.1:{}/client.json", cimd.port),
        // Another spelling of the same document would be another client identity.
        format!("{}/x/../client.json", cimd.origin),
        format!("{}/./client.json", cimd.origin),
        format!("{}/x/%2e%2e/client.json", cimd.origin),
        format!("https://127.0.0.1:{}/client.json", cimd.port).replace("https", "HTTPS"),
    ] {
        let out = authorize(&w.browser(), &w.request(&client_id)).await;
        assert!(out.code.is_none(), "{client_id}: {}", out.describe());
        out.assert_error_page(400);
    }
    assert_eq!(cimd.fetches(), 0, "refused before any fetch");
}

#[tokio::test]
async fn request_errors_of_an_unregistered_client_are_shown_not_redirected() {
    let cimd = CimdServer::start().await;
    // Anyone may publish a document naming any (web) redirect URI.
    let web = "https://app.cimd.example/cb";
    let mut doc = cimd.good_doc();
    doc["redirect_uris"] = json!([web, REDIRECT]);
    cimd.set(doc);
    let w = cimd_world(&cimd).await;
    let request = || w.request(&cimd.url()).set("redirect_uri", web);
    for req in [
        request().without("response_type"),
        request().set("scope", "admin:everything"),
        request().without("code_challenge"),
    ] {
        let out = authorize(&w.browser(), &req).await;
        assert!(
            out.redirect.is_none(),
            "no automatic redirect (an open redirector): {}",
            out.describe()
        );
        out.assert_error_page(400);
        assert!(!out.saw_login, "{}", out.describe());
    }
    // A client a project registered still gets its errors by redirect (RFC 6749 4.1.2.1).
    let client_id = w.public_client().await;
    let out = authorize(
        &w.browser(),
        &w.request(&client_id).without("response_type"),
    )
    .await;
    let to = out.redirect.as_ref().expect("redirect");
    assert!(to.as_str().contains("error=invalid_request"), "{to}");
    // So does one waiting on a loopback (or an app's own scheme): the user's own machine, where
    // the client would otherwise wait for its callback for ever.
    let req = w.request(&cimd.url()).without("code_challenge");
    authorize(&w.browser(), &req)
        .await
        .assert_redirect_error("invalid_request", &req, w.issuer());
}
