//! Fakes for what is outside: an upstream MCP server and an external OpenID issuer. Both are
//! real HTTP servers on 127.0.0.1:0.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use actix_web::dev::ServerHandle;
use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use tokio::sync::Notify;

/// Request headers, per request, in order.
type Seen = Arc<Mutex<Vec<Vec<(String, String)>>>>;

/// A fake upstream MCP server (Streamable HTTP at `/mcp`).
pub struct FakeUpstream {
    pub url: String,
    pub port: u16,
    /// Headers of every request it received, in order.
    pub seen: Seen,
    /// Bodies it received.
    pub bodies: Arc<Mutex<Vec<Value>>>,
    /// The bytes of every POST body it received, as they came.
    pub raw: Arc<Mutex<Vec<web::Bytes>>>,
    /// Lets the SSE `stream` method send its second event.
    pub release: Arc<Notify>,
    handle: ServerHandle,
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        drop(self.handle.stop(false));
    }
}

#[derive(Clone)]
struct UpstreamState {
    seen: Seen,
    bodies: Arc<Mutex<Vec<Value>>>,
    raw: Arc<Mutex<Vec<web::Bytes>>>,
    release: Arc<Notify>,
}

pub fn tools_list() -> Value {
    json!({ "tools": [
        { "name": "get_weather", "inputSchema": {"type": "object"}, "annotations": { "readOnlyHint": true } },
        { "name": "delete_repo", "inputSchema": {"type": "object"}, "annotations": { "readOnlyHint": false, "destructiveHint": true } },
        { "name": "mystery", "inputSchema": {"type": "object"} },
    ]})
}

async fn upstream(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<UpstreamState>,
) -> HttpResponse {
    let mut headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    headers.push((":path".into(), req.uri().to_string()));
    state.seen.lock().expect("lock").push(headers);
    if let Some(legacy) = req.headers().get("x-test-legacy")
        && req.method() == actix_web::http::Method::GET
    {
        // The 2024 SSE transport: the first event says where to POST, as a path on this server,
        // with the session in the query (`x-test-legacy` names its parameter, else `sessionId`).
        let param = match legacy.to_str().unwrap_or("1") {
            "1" => "sessionId",
            other => other,
        };
        return HttpResponse::Ok()
            .content_type("text/event-stream")
            .body(format!(
                "event: endpoint\ndata: /mcp/messages?{param}=abc\n\n"
            ));
    }
    if req.method() == actix_web::http::Method::GET {
        return HttpResponse::Ok()
            .content_type("text/event-stream")
            .body("event: ping\ndata: {}\n\n");
    }
    if req.method() == actix_web::http::Method::DELETE {
        return HttpResponse::Ok().finish();
    }
    state.raw.lock().expect("lock").push(body.clone());
    let Ok(msg) = serde_json::from_slice::<Value>(&body) else {
        return HttpResponse::BadRequest().body("upstream: not json");
    };
    state.bodies.lock().expect("lock").push(msg.clone());
    if msg.is_array() {
        let answers: Vec<Value> = msg
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| json!({"jsonrpc":"2.0","id":m["id"].clone(),"result":{"echo":m["method"].clone()}}))
            .collect();
        return HttpResponse::Ok().json(answers);
    }
    let id = msg["id"].clone();
    if req.path().ends_with("/sse") && !id.is_null() {
        // Every answer as an SSE stream, after a notification, CRLF-framed.
        let result = match msg["method"].as_str() {
            Some("initialize") => {
                json!({"protocolVersion":"2025-06-18","capabilities":{},"serverInfo":{"name":"fake","version":"1"}})
            }
            _ => json!({}),
        };
        let note = json!({"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"hi"}});
        let answer = json!({"jsonrpc":"2.0","id":id,"result":result});
        return HttpResponse::Ok()
            .content_type("text/event-stream")
            .body(format!(
                "event: message\r\ndata: {note}\r\n\r\nevent: message\r\ndata: {answer}\r\n\r\n"
            ));
    }
    if req.path().ends_with("/bloated") {
        // An upstream whose every answer is 2 MiB of JSON.
        let padding = "x".repeat(2 << 20);
        return HttpResponse::Ok()
            .json(json!({"jsonrpc":"2.0","id":id,"result":{"padding":padding}}));
    }
    match msg["method"].as_str().unwrap_or("") {
        "initialize" => HttpResponse::Ok()
            .insert_header(("Mcp-Session-Id", "sess-123"))
            .json(json!({"jsonrpc":"2.0","id":id,"result":{"protocolVersion":"2025-06-18","capabilities":{"tools":{}},"serverInfo":{"name":"fake","version":"1"}}})),
        "tools/list" if req.headers().contains_key("x-test-sse") => HttpResponse::Ok()
            .content_type("text/event-stream")
            .body(format!("event: message\r\ndata: {}\r\n\r\n", json!({"jsonrpc":"2.0","id":id,"result":tools_list()}))),
        "tools/list" => HttpResponse::Ok().json(json!({"jsonrpc":"2.0","id":id,"result":tools_list()})),
        // An upstream with auth of its own.
        "unauthorized" => HttpResponse::Unauthorized()
            .insert_header(("WWW-Authenticate", "Bearer resource_metadata=\"https://evil.example/.well-known/oauth-protected-resource\""))
            .finish(),
        "forbidden" => HttpResponse::Forbidden()
            .insert_header(("WWW-Authenticate", "Bearer error=\"insufficient_scope\""))
            .json(json!({"jsonrpc":"2.0","id":id,"error":{"code":-32000,"message":"no"}})),
        // Events framed with LF, or CRLF (as Python's sse-starlette writes them).
        m @ ("stream" | "stream_crlf") => {
            let release = state.release.clone();
            let nl = if m == "stream" { "\n" } else { "\r\n" };
            let first = web::Bytes::from(format!("event: message{nl}data: {}{nl}{nl}", json!({"jsonrpc":"2.0","method":"notifications/progress","params":{"n":1}})));
            let second = web::Bytes::from(format!("event: message{nl}data: {}{nl}{nl}", json!({"jsonrpc":"2.0","id":id,"result":{"done":true}})));
            let stream = futures_util::stream::unfold(0u8, move |step| {
                let release = release.clone();
                let (first, second) = (first.clone(), second.clone());
                async move {
                    match step {
                        0 => Some((Ok::<_, actix_web::Error>(first), 1)),
                        1 => {
                            release.notified().await;
                            Some((Ok(second), 2))
                        }
                        _ => None,
                    }
                }
            });
            HttpResponse::Ok().content_type("text/event-stream").streaming(stream)
        }
        "hang" => {
            std::future::pending::<()>().await;
            HttpResponse::Ok().finish()
        }
        method => HttpResponse::Ok().json(json!({"jsonrpc":"2.0","id":id,"result":{"echo":method,"params":msg["params"].clone()}})),
    }
}

impl FakeUpstream {
    pub async fn start() -> FakeUpstream {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let state = UpstreamState {
            seen: Arc::default(),
            bodies: Arc::default(),
            raw: Arc::default(),
            release: Arc::new(Notify::new()),
        };
        let data = web::Data::new(state.clone());
        let server = actix_web::HttpServer::new(move || {
            actix_web::App::new()
                .app_data(data.clone())
                .default_service(web::to(upstream))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .expect("listen")
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        FakeUpstream {
            url: format!("http://127.0.0.1:{port}/mcp"),
            port,
            seen: state.seen,
            bodies: state.bodies,
            raw: state.raw,
            release: state.release,
            handle,
        }
    }

    pub fn last_headers(&self) -> Vec<(String, String)> {
        self.seen
            .lock()
            .expect("lock")
            .last()
            .cloned()
            .unwrap_or_default()
    }

    pub fn requests(&self) -> usize {
        self.seen.lock().expect("lock").len()
    }
}

/// An ES256 key pair for signing test tokens, with its public JWK.
pub struct SigningKey {
    pub kid: String,
    pub encoding: jsonwebtoken::EncodingKey,
    pub jwk: Value,
    /// The PKCS#8 DER, for building other key types from it.
    pub der: Vec<u8>,
}

impl SigningKey {
    pub fn generate(kid: &str) -> SigningKey {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let raw = pair.public_key_raw();
        let der = pair.serialize_der();
        SigningKey {
            kid: kid.to_owned(),
            encoding: jsonwebtoken::EncodingKey::from_ec_der(&der),
            jwk: json!({
                "kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
                "x": URL_SAFE_NO_PAD.encode(&raw[1..33]), "y": URL_SAFE_NO_PAD.encode(&raw[33..65]),
            }),
            der,
        }
    }

    pub fn sign(&self, claims: &Value) -> String {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        header.typ = Some("at+jwt".into());
        jsonwebtoken::encode(&header, claims, &self.encoding).expect("sign")
    }
}

/// A self-signed certificate for 127.0.0.1 and localhost: (its directory, the PEM file to trust
/// through `outbound.ca_files`, a server config presenting it).
pub fn self_signed_tls() -> (tempfile::TempDir, std::path::PathBuf, rustls::ServerConfig) {
    let dir = tempfile::tempdir().expect("tmp");
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("cert");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ck.cert.pem()).expect("write ca");
    let cert = rustls_pki_types::CertificateDer::from(ck.cert.der().to_vec());
    let key =
        rustls_pki_types::PrivateKeyDer::try_from(ck.signing_key.serialize_der()).expect("key");
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let tls = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .expect("tls");
    (dir, ca_file, tls)
}

/// An external OpenID issuer over https with a self-signed certificate: serves a JWKS whose
/// keys tests sign with; it can rotate keys and go down.
pub struct TestIssuer {
    pub issuer: String,
    pub jwks_uri: String,
    /// PEM of its certificate, to trust through `outbound.ca_files`.
    pub ca_file: std::path::PathBuf,
    pub keys: Arc<Mutex<Vec<SigningKey>>>,
    pub fetches: Arc<Mutex<usize>>,
    handle: ServerHandle,
    _dir: tempfile::TempDir,
}

impl Drop for TestIssuer {
    fn drop(&mut self) {
        drop(self.handle.stop(false));
    }
}

impl TestIssuer {
    pub async fn start() -> TestIssuer {
        Self::start_with(true).await
    }

    /// One that publishes its keys but no discovery document.
    pub async fn keys_only() -> TestIssuer {
        Self::start_with(false).await
    }

    async fn start_with(discovery_served: bool) -> TestIssuer {
        let (dir, ca_file, tls) = self_signed_tls();
        let keys = Arc::new(Mutex::new(vec![SigningKey::generate("key-1")]));
        let fetches = Arc::new(Mutex::new(0usize));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let (k, f) = (keys.clone(), fetches.clone());
        let origin = format!("https://127.0.0.1:{port}");
        let server = actix_web::HttpServer::new(move || {
            let (k, f) = (k.clone(), f.clone());
            let discovery = json!({
                "issuer": origin,
                "jwks_uri": format!("{origin}/jwks.json"),
                "authorization_endpoint": format!("{origin}/authorize"),
                "token_endpoint": format!("{origin}/token"),
            });
            actix_web::App::new()
                .route(
                    "/.well-known/openid-configuration",
                    web::get().to(move || {
                        let d = discovery.clone();
                        async move {
                            if discovery_served {
                                HttpResponse::Ok().json(d)
                            } else {
                                HttpResponse::NotFound().finish()
                            }
                        }
                    }),
                )
                .route(
                    "/jwks.json",
                    web::get().to(move || {
                        let (k, f) = (k.clone(), f.clone());
                        async move {
                            *f.lock().expect("lock") += 1;
                            let jwks: Vec<Value> = k
                                .lock()
                                .expect("lock")
                                .iter()
                                .map(|k| k.jwk.clone())
                                .collect();
                            HttpResponse::Ok()
                                .insert_header(("Cache-Control", "max-age=300"))
                                .json(json!({ "keys": jwks }))
                        }
                    }),
                )
        })
        .workers(1)
        .disable_signals()
        .listen_rustls_0_23(listener, tls)
        .expect("listen")
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        let issuer = format!("https://127.0.0.1:{port}");
        TestIssuer {
            jwks_uri: format!("{issuer}/jwks.json"),
            issuer,
            ca_file,
            keys,
            fetches,
            handle,
            _dir: dir,
        }
    }

    /// Signs `claims` with the current (first) key.
    pub fn sign(&self, claims: &Value) -> String {
        self.keys.lock().expect("lock")[0].sign(claims)
    }

    /// A new key becomes current; the old one is no longer published.
    pub fn rotate(&self, kid: &str) {
        *self.keys.lock().expect("lock") = vec![SigningKey::generate(kid)];
    }

    pub async fn stop(&self) {
        self.handle.stop(false).await;
    }

    pub fn byoa_config(&self) -> ezforge::config::ByoaConfig {
        ezforge::config::ByoaConfig {
            issuer: self.issuer.clone(),
            jwks_uri: self.jwks_uri.clone(),
            authorization_endpoint: format!("{}/authorize", self.issuer),
            token_endpoint: format!("{}/token", self.issuer),
        }
    }
}

/// An https server (self-signed, trusted through `outbound.ca_files`) serving JSON documents by
/// path — client metadata documents, a client's JWKS — and counting what it was asked for.
pub struct DocServer {
    /// `https://127.0.0.1:PORT`
    pub origin: String,
    pub ca_file: std::path::PathBuf,
    docs: Arc<Mutex<std::collections::HashMap<String, Value>>>,
    pub fetches: Arc<Mutex<Vec<String>>>,
    handle: ServerHandle,
    _dir: tempfile::TempDir,
}

impl Drop for DocServer {
    fn drop(&mut self) {
        drop(self.handle.stop(false));
    }
}

impl DocServer {
    pub async fn start() -> DocServer {
        let (dir, ca_file, tls) = self_signed_tls();
        let docs: Arc<Mutex<std::collections::HashMap<String, Value>>> = Arc::default();
        let fetches: Arc<Mutex<Vec<String>>> = Arc::default();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let (d, f) = (docs.clone(), fetches.clone());
        let server = actix_web::HttpServer::new(move || {
            let (d, f) = (d.clone(), f.clone());
            actix_web::App::new().default_service(web::to(move |req: HttpRequest| {
                let (d, f) = (d.clone(), f.clone());
                async move {
                    f.lock().expect("lock").push(req.path().to_owned());
                    match d.lock().expect("lock").get(req.path()) {
                        Some(doc) => HttpResponse::Ok()
                            .content_type("application/json")
                            .body(doc.to_string()),
                        None => HttpResponse::NotFound().finish(),
                    }
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
        DocServer {
            origin: format!("https://127.0.0.1:{port}"),
            ca_file,
            docs,
            fetches,
            handle,
            _dir: dir,
        }
    }

    /// Serves `doc` at `path`; returns its URL.
    pub fn set(&self, path: &str, doc: Value) -> String {
        self.docs.lock().expect("lock").insert(path.to_owned(), doc);
        format!("{}{path}", self.origin)
    }

    pub fn fetches_of(&self, path: &str) -> usize {
        self.fetches
            .lock()
            .expect("lock")
            .iter()
            .filter(|p| *p == path)
            .count()
    }
}

/// A client's key pair for `private_key_jwt`: RS256, PS256 (RSA), ES256 or EdDSA.
pub struct ClientKey {
    pub alg: jsonwebtoken::Algorithm,
    pub kid: String,
    pub encoding: jsonwebtoken::EncodingKey,
    /// The public JWK, with `kid`, `alg` and `use`.
    pub jwk: Value,
}

impl ClientKey {
    pub fn generate(alg: jsonwebtoken::Algorithm, kid: &str) -> ClientKey {
        use jsonwebtoken::{Algorithm, EncodingKey};
        let (sig, pem) = match alg {
            Algorithm::RS256 | Algorithm::PS256 => (&rcgen::PKCS_RSA_SHA256, "rsa"),
            Algorithm::ES256 => (&rcgen::PKCS_ECDSA_P256_SHA256, "ec"),
            Algorithm::EdDSA => (&rcgen::PKCS_ED25519, "ed"),
            other => panic!("no client keys for {other:?}"),
        };
        let pair = rcgen::KeyPair::generate_for(sig).expect("key");
        let pem_text = pair.serialize_pem();
        let encoding = match pem {
            "rsa" => EncodingKey::from_rsa_pem(pem_text.as_bytes()),
            "ec" => EncodingKey::from_ec_pem(pem_text.as_bytes()),
            _ => EncodingKey::from_ed_pem(pem_text.as_bytes()),
        }
        .expect("encoding key");
        let mut jwk = if pem == "ed" {
            // jsonwebtoken builds no Ed25519 JWK: the raw public key is `x`.
            json!({ "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "x": URL_SAFE_NO_PAD.encode(pair.public_key_raw()) })
        } else {
            serde_json::to_value(
                jsonwebtoken::jwk::Jwk::from_encoding_key(&encoding, alg).expect("jwk"),
            )
            .expect("jwk json")
        };
        jwk["kid"] = json!(kid);
        jwk["use"] = json!("sig");
        ClientKey {
            alg,
            kid: kid.to_owned(),
            encoding,
            jwk,
        }
    }

    pub fn jwks(&self) -> Value {
        json!({ "keys": [self.jwk.clone()] })
    }

    /// A client assertion: `iss` = `sub` = `client_id`, `aud`, a fresh `jti`, 60 s to live;
    /// `tweak` changes the claims before signing.
    pub fn assertion(&self, client_id: &str, aud: &str, tweak: impl FnOnce(&mut Value)) -> String {
        let now = ezforge::domain::now();
        let mut claims = json!({
            "iss": client_id, "sub": client_id, "aud": aud,
            "iat": now, "exp": now + 60,
            "jti": URL_SAFE_NO_PAD.encode(ezforge::domain::random_bytes::<16>()),
        });
        tweak(&mut claims);
        let mut header = jsonwebtoken::Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.encoding).expect("sign")
    }
}

/// A request to [`FakeCallback`]: its path and query, and its headers.
type Arrival = (String, Vec<(String, String)>);

/// A client's redirect URI that a real browser can reach: `http://127.0.0.1:PORT/callback`
/// answers every request with a small page and passes on the path, query and headers of each.
pub struct FakeCallback {
    /// `http://127.0.0.1:PORT/callback`
    pub url: String,
    arrivals: tokio::sync::Mutex<tokio::sync::mpsc::UnboundedReceiver<Arrival>>,
    handle: ServerHandle,
}

impl Drop for FakeCallback {
    fn drop(&mut self) {
        drop(self.handle.stop(false));
    }
}

impl FakeCallback {
    pub async fn start() -> FakeCallback {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let server = actix_web::HttpServer::new(move || {
            let tx = tx.clone();
            actix_web::App::new().default_service(web::to(move |req: HttpRequest| {
                let headers = req
                    .headers()
                    .iter()
                    .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
                    .collect();
                let target = req
                    .uri()
                    .path_and_query()
                    .map_or_else(String::new, |p| p.as_str().to_owned());
                let _ = tx.send((target, headers));
                async {
                    HttpResponse::Ok()
                        .content_type("text/html; charset=utf-8")
                        .body("<!doctype html><title>Done</title><p>Signed in.</p>")
                }
            }))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .expect("listen")
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        FakeCallback {
            url: format!("http://127.0.0.1:{port}/callback"),
            arrivals: tokio::sync::Mutex::new(rx),
            handle,
        }
    }

    /// The first request to `/callback` not yet taken: its URL (on this server) and headers.
    /// Waits at most `limit`.
    pub async fn next(
        &self,
        limit: std::time::Duration,
    ) -> Option<(url::Url, Vec<(String, String)>)> {
        let mut rx = self.arrivals.lock().await;
        tokio::time::timeout(limit, async {
            while let Some((target, headers)) = rx.recv().await {
                if target.starts_with("/callback") {
                    let url = url::Url::parse(&self.url).ok()?.join(&target).ok()?;
                    return Some((url, headers));
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
    }
}
