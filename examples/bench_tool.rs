//! Tools for `bench/`: a fast upstream MCP server, token minting (managed and BYOA), a minimal
//! https JWKS issuer, and a fixed-rate load generator. Run with `cargo run --release --example
//! bench_tool -- <command>`. Loopback only.

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use actix_web::{HttpResponse, web};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use clap::{Parser, Subcommand};
use serde_json::{Value, json};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// A fast upstream MCP server answering tools/list and tools/call (and SSE on GET).
    Upstream {
        #[arg(long)]
        port: u16,
        #[arg(long, default_value_t = 1)]
        workers: usize,
    },
    /// A bare reverse proxy to `upstream` on actix-web and the front door's upstream client,
    /// with none of the front door's own work (no token, policy, rate limit or log): the floor
    /// any actix-based front door stands on.
    Proxy {
        #[arg(long)]
        port: u16,
        #[arg(long)]
        upstream: String,
        #[arg(long, default_value_t = 2)]
        workers: usize,
        /// `actix` (the front door's stack) or `hyper` (hyper's own HTTP/1 server instead).
        #[arg(long, default_value = "actix")]
        server: String,
    },
    /// Mint `count` managed access tokens for `resource` with the data dir's active key.
    ManagedTokens {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long)]
        issuer: String,
        #[arg(long)]
        resource: String,
        #[arg(long, default_value_t = 1)]
        count: usize,
        #[arg(long, default_value = "mcp:execute")]
        scope: String,
    },
    /// Serve a JWKS over https (self-signed, CA written to DIR/ca.pem) and write `count`
    /// tokens for `resource` to DIR/tokens.txt; runs until killed.
    Issuer {
        #[arg(long)]
        port: u16,
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        resource: String,
        #[arg(long, default_value_t = 1)]
        count: usize,
    },
    /// Seed `count` authorization codes (kind=codes) or refresh tokens (kind=refresh) for a
    /// client, the admin user and the server at `resource`; print one per line.
    Seed {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long)]
        kind: String,
        #[arg(long)]
        client_id: String,
        #[arg(long)]
        resource: String,
        #[arg(long)]
        slug: String,
        #[arg(long, default_value_t = 100_000)]
        count: usize,
    },
    /// Grow a (stopped) server's store: `servers` servers, `clients` dynamic clients, and
    /// `refresh` refresh tokens (each with its grant), in one transaction per kind.
    Grow {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long, default_value_t = 10_000)]
        servers: usize,
        #[arg(long, default_value_t = 100_000)]
        clients: usize,
        #[arg(long, default_value_t = 1_000_000)]
        refresh: usize,
    },
    /// Hold `count` SSE streams (GET with a bearer token) open for `seconds`, then close them.
    Streams {
        #[arg(long)]
        url: String,
        #[arg(long)]
        tokens: PathBuf,
        #[arg(long, default_value_t = 1000)]
        count: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// Open-loop load at a fixed rate; prints p50/p90/p99/max latency in ms.
    Load {
        #[arg(long)]
        url: String,
        #[arg(long, default_value_t = 2000)]
        rate: u64,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// File with one bearer token per line (used round-robin); none = no Authorization.
        #[arg(long)]
        tokens: Option<PathBuf>,
        #[arg(
            long,
            default_value = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}}"#
        )]
        body: String,
        #[arg(long, default_value_t = 64)]
        connections: usize,
    },
}

fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    match Cli::parse().command {
        Command::Upstream { port, workers } => {
            actix_web::rt::System::new().block_on(upstream(port, workers))
        }
        Command::Proxy {
            port,
            upstream,
            workers,
            server,
        } => match server.as_str() {
            "actix" => actix_web::rt::System::new().block_on(proxy(port, &upstream, workers)),
            "hyper" => tokio::runtime::Builder::new_multi_thread()
                .worker_threads(workers)
                .enable_all()
                .build()?
                .block_on(hyper_proxy(port, &upstream)),
            other => anyhow::bail!("unknown server {other}: actix or hyper"),
        },
        Command::ManagedTokens {
            data_dir,
            issuer,
            resource,
            count,
            scope,
        } => managed_tokens(&data_dir, &issuer, &resource, count, &scope),
        Command::Issuer {
            port,
            dir,
            resource,
            count,
        } => actix_web::rt::System::new().block_on(issuer(port, &dir, &resource, count)),
        Command::Seed {
            data_dir,
            kind,
            client_id,
            resource,
            slug,
            count,
        } => seed(&data_dir, &kind, &client_id, &resource, &slug, count),
        Command::Grow {
            data_dir,
            servers,
            clients,
            refresh,
        } => grow(&data_dir, servers, clients, refresh),
        Command::Streams {
            url,
            tokens,
            count,
            seconds,
        } => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?
            .block_on(streams(url, tokens, count, seconds)),
        Command::Load {
            url,
            rate,
            seconds,
            tokens,
            body,
            connections,
        } => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?
            .block_on(load(url, rate, seconds, tokens, body, connections)),
    }
}

async fn mcp(body: web::Bytes) -> HttpResponse {
    let msg: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let id = msg.get("id").cloned().unwrap_or(Value::Null);
    let result = match msg.get("method").and_then(Value::as_str) {
        Some("initialize") => {
            json!({"protocolVersion":"2025-06-18","capabilities":{"tools":{}},"serverInfo":{"name":"bench","version":"1"}})
        }
        Some("tools/list") => {
            json!({"tools":[{"name":"echo","inputSchema":{"type":"object"},"annotations":{"readOnlyHint":true}}]})
        }
        Some("tools/call") => json!({"content":[{"type":"text","text":"hi"}]}),
        _ => json!({}),
    };
    HttpResponse::Ok().json(json!({"jsonrpc":"2.0","id":id,"result":result}))
}

async fn sse() -> HttpResponse {
    // An idle stream: one comment now, then nothing until the client goes away.
    let stream = futures_util::stream::once(async {
        Ok::<_, actix_web::Error>(web::Bytes::from_static(b": open\n\n"))
    })
    .chain(futures_util::stream::pending());
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .streaming(stream)
}

use futures_util::StreamExt;

async fn upstream(port: u16, workers: usize) -> anyhow::Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", port))?;
    println!("upstream listening on 127.0.0.1:{port}");
    actix_web::HttpServer::new(|| {
        actix_web::App::new()
            .route("/mcp", web::post().to(mcp))
            .route("/mcp", web::get().to(sse))
    })
    .workers(workers)
    .listen(listener)?
    .run()
    .await?;
    Ok(())
}

/// The front door's default destination policy (checked once per upstream connection).
fn default_destinations() -> Arc<ezforge::shared::destinations::Destinations> {
    use ezforge::shared::destinations::{Destinations, SystemResolver};
    Arc::new(Destinations::new(
        Default::default(),
        Vec::new(),
        Arc::new(SystemResolver),
    ))
}

async fn proxy(port: u16, upstream: &str, workers: usize) -> anyhow::Result<()> {
    use ezforge::domain::endpoint::Endpoint;
    use ezforge::shared::upstream::{UpstreamClient, tls_config};
    let endpoint = Arc::new(
        Endpoint::new(upstream.parse()?).ok_or_else(|| anyhow::anyhow!("bad upstream URL"))?,
    );
    let tls = tls_config();
    let listener = TcpListener::bind(("127.0.0.1", port))?;
    println!("proxy listening on 127.0.0.1:{port}");
    actix_web::HttpServer::new(move || {
        let client = web::Data::new(UpstreamClient::new(
            tls.clone(),
            Duration::from_secs(5),
            default_destinations(),
        ));
        let endpoint = endpoint.clone();
        actix_web::App::new()
            .app_data(client)
            .default_service(web::to(
                move |req: actix_web::HttpRequest,
                      body: web::Bytes,
                      client: web::Data<UpstreamClient>| {
                    let endpoint = endpoint.clone();
                    async move {
                        let mut r = http::Request::new(http_body_util::Full::new(body));
                        *r.method_mut() = http::Method::POST;
                        *r.uri_mut() = http::Uri::from_static("/mcp");
                        let h = r.headers_mut();
                        h.insert(http::header::HOST, endpoint.host_header().clone());
                        for name in ["content-type", "accept"] {
                            if let Some(v) = req.headers().get(name)
                                && let Ok(v) = http::HeaderValue::from_bytes(v.as_bytes())
                            {
                                h.insert(name, v);
                            }
                        }
                        let Ok(res) = client.send(&endpoint, r, true).await else {
                            return HttpResponse::BadGateway().finish();
                        };
                        let (parts, mut body) = res.into_parts();
                        let mut out = bytes::BytesMut::new();
                        while let Some(Ok(chunk)) = body.next().await {
                            out.extend_from_slice(&chunk);
                        }
                        let mut res = HttpResponse::build(
                            actix_web::http::StatusCode::from_u16(parts.status.as_u16())
                                .unwrap_or(actix_web::http::StatusCode::BAD_GATEWAY),
                        );
                        if let Some(ct) = parts.headers.get(http::header::CONTENT_TYPE) {
                            res.insert_header(("content-type", ct.as_bytes()));
                        }
                        res.body(out.freeze())
                    }
                },
            ))
    })
    .workers(workers)
    .listen(listener)?
    .run()
    .await?;
    Ok(())
}

/// The same bare proxy on hyper's HTTP/1 server (one task per connection).
async fn hyper_proxy(port: u16, upstream: &str) -> anyhow::Result<()> {
    use ezforge::domain::endpoint::Endpoint;
    use ezforge::shared::upstream::{UpstreamClient, tls_config};
    use http_body_util::BodyExt;
    let endpoint = Arc::new(
        Endpoint::new(upstream.parse()?).ok_or_else(|| anyhow::anyhow!("bad upstream URL"))?,
    );
    let client = Arc::new(UpstreamClient::new(
        tls_config(),
        Duration::from_secs(5),
        default_destinations(),
    ));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("proxy listening on 127.0.0.1:{port}");
    loop {
        let (tcp, _) = listener.accept().await?;
        let _ = tcp.set_nodelay(true);
        let (endpoint, client) = (endpoint.clone(), client.clone());
        let service =
            hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let (endpoint, client) = (endpoint.clone(), client.clone());
                async move {
                    let (head, body) = req.into_parts();
                    let body = body.collect().await?.to_bytes();
                    let mut r = http::Request::new(http_body_util::Full::new(body));
                    *r.method_mut() = http::Method::POST;
                    *r.uri_mut() = http::Uri::from_static("/mcp");
                    let h = r.headers_mut();
                    h.insert(http::header::HOST, endpoint.host_header().clone());
                    for name in [http::header::CONTENT_TYPE, http::header::ACCEPT] {
                        if let Some(v) = head.headers.get(&name) {
                            h.insert(name, v.clone());
                        }
                    }
                    let mut out =
                        http::Response::new(http_body_util::Full::new(bytes::Bytes::new()));
                    let Ok(res) = client.send(&endpoint, r, true).await else {
                        *out.status_mut() = http::StatusCode::BAD_GATEWAY;
                        return Ok::<_, hyper::Error>(out);
                    };
                    let (parts, mut body) = res.into_parts();
                    let mut buf = bytes::BytesMut::new();
                    while let Some(Ok(chunk)) = body.next().await {
                        buf.extend_from_slice(&chunk);
                    }
                    *out.status_mut() = parts.status;
                    if let Some(ct) = parts.headers.get(http::header::CONTENT_TYPE) {
                        out.headers_mut()
                            .insert(http::header::CONTENT_TYPE, ct.clone());
                    }
                    *out.body_mut() = http_body_util::Full::new(buf.freeze());
                    Ok(out)
                }
            });
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                .await;
        });
    }
}

fn managed_tokens(
    data_dir: &std::path::Path,
    issuer: &str,
    resource: &str,
    count: usize,
    scope: &str,
) -> anyhow::Result<()> {
    let store = ezforge::store::Store::open(&data_dir.join("ezforge.db"))?;
    let master = ezforge::crypto::MasterKey::load_or_create(None, data_dir)?;
    let now = ezforge::domain::now();
    let keys = store.run_blocking(|c| ezforge::services::keys::load(c, &master, now))?;
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some(keys.active.kid.clone());
    header.typ = Some("at+jwt".into());
    for i in 0..count {
        let claims = json!({"iss": issuer, "sub": format!("usr_bench{i}"), "aud": resource, "client_id": format!("client_bench{i}"),
            "scope": scope, "iat": now, "exp": now + 3600, "jti": format!("j{i}")});
        println!(
            "{}",
            jsonwebtoken::encode(&header, &claims, &keys.active.encoding)?
        );
    }
    Ok(())
}

async fn issuer(
    port: u16,
    dir: &std::path::Path,
    resource: &str,
    count: usize,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])?;
    std::fs::write(dir.join("ca.pem"), ck.cert.pem())?;
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let raw = pair.public_key_raw();
    let jwks = json!({"keys":[{"kty":"EC","crv":"P-256","kid":"bench","alg":"ES256","use":"sig",
        "x": URL_SAFE_NO_PAD.encode(&raw[1..33]), "y": URL_SAFE_NO_PAD.encode(&raw[33..65])}]});
    let key = jsonwebtoken::EncodingKey::from_ec_der(&pair.serialize_der());
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some("bench".into());
    let iss = format!("https://127.0.0.1:{port}");
    let now = ezforge::domain::now();
    let mut tokens = String::new();
    for i in 0..count {
        let claims = json!({"iss": iss, "sub": format!("ext{i}"), "aud": resource, "scope": "mcp:execute", "exp": now + 3600, "azp": "bench"});
        tokens.push_str(&jsonwebtoken::encode(&header, &claims, &key)?);
        tokens.push('\n');
    }
    std::fs::write(dir.join("tokens.txt"), tokens)?;
    let tls = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(
            vec![rustls_pki_types::CertificateDer::from(
                ck.cert.der().to_vec(),
            )],
            rustls_pki_types::PrivateKeyDer::try_from(ck.signing_key.serialize_der())
                .map_err(|e| anyhow::anyhow!(e))?,
        )?;
    let body = jwks.to_string();
    let listener = TcpListener::bind(("127.0.0.1", port))?;
    println!("issuer {iss} ready");
    actix_web::HttpServer::new(move || {
        let body = body.clone();
        actix_web::App::new().route(
            "/jwks.json",
            web::get().to(move || {
                let body = body.clone();
                async move {
                    HttpResponse::Ok()
                        .insert_header(("Cache-Control", "max-age=3600"))
                        .content_type("application/json")
                        .body(body)
                }
            }),
        )
    })
    .workers(1)
    .listen_rustls_0_23(listener, tls)?
    .run()
    .await?;
    Ok(())
}

async fn load(
    url: String,
    rate: u64,
    seconds: u64,
    tokens: Option<PathBuf>,
    body: String,
    connections: usize,
) -> anyhow::Result<()> {
    let tokens: Arc<Vec<String>> = Arc::new(match tokens {
        Some(p) => std::fs::read_to_string(p)?
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect(),
        None => Vec::new(),
    });
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .build()?;
    let total = (rate * seconds) as usize;
    let interval = Duration::from_nanos(1_000_000_000 / rate.max(1));
    let start = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let inflight = Arc::new(tokio::sync::Semaphore::new(connections * 4));
    // (latency from sending, lag of the send behind its schedule, success)
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Duration, Duration, bool)>();
    for i in 0..total {
        // Open loop: request i is due at start + i * interval, whatever happened before.
        let due = start + interval * i as u32;
        tokio::time::sleep_until(due.into()).await;
        let Ok(permit) = inflight.clone().acquire_owned().await else {
            break;
        };
        let (client, url, body, tokens, tx, next) = (
            client.clone(),
            url.clone(),
            body.clone(),
            tokens.clone(),
            tx.clone(),
            next.clone(),
        );
        tokio::spawn(async move {
            let sent = Instant::now();
            let mut req = client
                .post(&url)
                .header("content-type", "application/json")
                .header("accept", "application/json, text/event-stream")
                .body(body);
            if !tokens.is_empty() {
                let t = &tokens[next.fetch_add(1, Ordering::Relaxed) % tokens.len()];
                req = req.bearer_auth(t);
            }
            let ok = match req.send().await {
                Ok(r) => {
                    let ok = r.status().is_success();
                    let _ = r.bytes().await;
                    ok
                }
                Err(_) => false,
            };
            // Latency from sending. The generator never waits for answers (open loop), so its
            // lag behind the schedule is its own (tokio's timer has 1 ms granularity), and is
            // reported separately rather than added to the system's latency.
            let _ = tx.send((sent.elapsed(), sent.saturating_duration_since(due), ok));
            drop(permit);
        });
    }
    drop(tx);
    let mut lat = Vec::with_capacity(total);
    let mut lags = Vec::with_capacity(total);
    let mut errors = 0usize;
    while let Some((d, lag, ok)) = rx.recv().await {
        lat.push(d);
        lags.push(lag);
        if !ok {
            errors += 1;
        }
    }
    lat.sort();
    lags.sort();
    let lag_p99 = lags
        .get(lags.len() * 99 / 100)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0);
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    println!(
        "requests={} errors={} rate={}/s p50={:.3}ms p90={:.3}ms p99={:.3}ms max={:.3}ms schedule_lag_p99={lag_p99:.3}ms",
        lat.len(),
        errors,
        rate,
        pct(0.50),
        pct(0.90),
        pct(0.99),
        lat.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    );
    Ok(())
}

async fn streams(url: String, tokens: PathBuf, count: usize, seconds: u64) -> anyhow::Result<()> {
    let tokens: Vec<String> = std::fs::read_to_string(tokens)?
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()?;
    let opened = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::with_capacity(count);
    for i in 0..count {
        let (client, url, token, opened) = (
            client.clone(),
            url.clone(),
            tokens[i % tokens.len()].clone(),
            opened.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let Ok(mut res) = client
                .get(&url)
                .bearer_auth(token)
                .header("accept", "text/event-stream")
                .send()
                .await
            else {
                return;
            };
            if res.status().is_success() && res.chunk().await.ok().flatten().is_some() {
                opened.fetch_add(1, Ordering::Relaxed);
                // Hold the stream open until the task is aborted.
                while let Ok(Some(_)) = res.chunk().await {}
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while opened.load(Ordering::Relaxed) < count && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("streams open: {}", opened.load(Ordering::Relaxed));
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    for t in tasks {
        t.abort();
    }
    Ok(())
}

/// The PKCE verifier every seeded code was issued for.
const VERIFIER: &str = "bench-verifier-bench-verifier-bench-verifier-0123456789";

fn seed(
    data_dir: &std::path::Path,
    kind: &str,
    client_id: &str,
    resource: &str,
    slug: &str,
    count: usize,
) -> anyhow::Result<()> {
    use ezforge::store::{self, grants};
    let db = store::Store::open(&data_dir.join("ezforge.db"))?;
    let now = ezforge::domain::now();
    let challenge = URL_SAFE_NO_PAD.encode(ezforge::crypto::sha256(VERIFIER.as_bytes()));
    let mut out = String::with_capacity(count * 50);
    db.run_blocking(|c| {
        let server = store::servers::find(c, slug)?
            .ok_or_else(|| store::StoreError::corrupt("no such server"))?;
        let admin: String = c.query_row(
            "SELECT id FROM users WHERE role = 'admin' LIMIT 1",
            [],
            |r| r.get(0),
        )?;
        let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        for _ in 0..count {
            let token = ezforge::crypto::new_token("");
            let hash = ezforge::crypto::token_hash(token.expose());
            if kind == "codes" {
                grants::insert_code(
                    &tx,
                    &grants::CodeRow {
                        code_hash: hash,
                        client_id: client_id.into(),
                        client_name: "bench".into(),
                        user_id: admin.clone(),
                        server_id: server.id.clone(),
                        resource: resource.into(),
                        redirect_uri: "https://bench.example/cb".into(),
                        code_challenge: challenge.clone(),
                        scopes: "mcp:read offline_access".into(),
                        created_at: now,
                        expires_at: now + 3600,
                        used_at: None,
                        grant_id: None,
                        nonce: None,
                        auth_time: None,
                    },
                )?;
            } else {
                let gid = ezforge::domain::new_id("grt_");
                grants::insert_grant(
                    &tx,
                    &grants::GrantRow {
                        id: gid.clone(),
                        user_id: Some(admin.clone()),
                        client_id: client_id.into(),
                        client_name: "bench".into(),
                        server_id: server.id.clone(),
                        resource: resource.into(),
                        scopes: "mcp:read offline_access".into(),
                        created_at: now,
                        last_used_at: None,
                        revoked_at: None,
                        auth_method: Some("none".into()),
                    },
                )?;
                grants::insert_refresh(
                    &tx,
                    &grants::RefreshRow {
                        token_hash: hash,
                        grant_id: gid,
                        client_id: client_id.into(),
                        scopes: "mcp:read offline_access".into(),
                        created_at: now,
                        expires_at: now + 86_400,
                        rotated_at: None,
                    },
                )?;
            }
            out.push_str(token.expose());
            out.push('\n');
        }
        tx.commit()?;
        Ok::<_, store::StoreError>(())
    })?;
    print!("{out}");
    Ok(())
}

fn grow(
    data_dir: &std::path::Path,
    servers: usize,
    clients: usize,
    refresh: usize,
) -> anyhow::Result<()> {
    use ezforge::store::{self, grants};
    let db = store::Store::open(&data_dir.join("ezforge.db"))?;
    let now = ezforge::domain::now();
    db.run_blocking(|c| {
        let admin: String = c.query_row(
            "SELECT id FROM users WHERE role = 'admin' LIMIT 1",
            [],
            |r| r.get(0),
        )?;
        let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let project = store::projects::ProjectRow {
            id: "proj_scale".into(),
            name: "scale".into(),
            slug: "scale".into(),
            managed_by: "api".into(),
            created_at: now,
            updated_at: now,
        };
        store::projects::insert(&tx, &project)?;
        for i in 0..servers {
            store::servers::insert(
                &tx,
                &store::servers::ServerRow {
                    id: format!("srv_scale{i:06}"),
                    project_id: project.id.clone(),
                    name: format!("scale {i}"),
                    slug: format!("scale-{i}"),
                    status: ezforge::domain::kinds::ServerStatus::Running,
                    upstream_url: Some("http://127.0.0.1:9/mcp".into()),
                    health_check_path: None,
                    rollback_on_failure: true,
                    retention_count: 10,
                    auto_stop_seconds: None,
                    tool_scopes: "{}".into(),
                    auth_mode: ezforge::domain::kinds::ServerAuthMode::Managed,
                    byoa_config: None,
                    managed_by: "api".into(),
                    rate_limit: None,
                    created_at: now,
                    updated_at: now,
                },
            )?;
        }
        for i in 0..clients {
            store::clients::insert(
                &tx,
                &store::clients::ClientRow {
                    id: format!("oac_scale{i:07}"),
                    client_id: format!("client_scale{i:07}"),
                    server_id: None,
                    name: format!("client {i}"),
                    redirect_uris: r#"["http://127.0.0.1/cb"]"#.into(),
                    scopes: String::new(),
                    trusted: false,
                    is_dynamic: true,
                    secret_hash: None,
                    metadata_url: None,
                    created_at: now,
                    updated_at: now,
                    last_used_at: Some(now),
                    registration_token_hash: None,
                    auth_method: "none".into(),
                    grant_types: "authorization_code refresh_token".into(),
                    application_type: "web".into(),
                    metadata: None,
                    created_by: None,
                },
            )?;
        }
        tx.commit()?;
        let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        for i in 0..refresh {
            let gid = format!("grt_scale{i:07}");
            let server = format!("srv_scale{:06}", i % servers.max(1));
            grants::insert_grant(
                &tx,
                &grants::GrantRow {
                    id: gid.clone(),
                    user_id: Some(admin.clone()),
                    client_id: format!("client_scale{:07}", i % clients.max(1)),
                    client_name: "scale".into(),
                    server_id: server,
                    resource: "http://scale".into(),
                    scopes: "mcp:read offline_access".into(),
                    created_at: now,
                    last_used_at: None,
                    revoked_at: None,
                    auth_method: Some("none".into()),
                },
            )?;
            let hash = ezforge::crypto::token_hash(&format!("scale-refresh-{i}"));
            grants::insert_refresh(
                &tx,
                &grants::RefreshRow {
                    token_hash: hash,
                    grant_id: gid,
                    client_id: format!("client_scale{:07}", i % clients.max(1)),
                    scopes: "mcp:read offline_access".into(),
                    created_at: now,
                    expires_at: now + 86_400,
                    rotated_at: None,
                },
            )?;
        }
        tx.commit()?;
        Ok::<_, store::StoreError>(())
    })?;
    println!("grown: {servers} servers, {clients} clients, {refresh} refresh tokens");
    Ok(())
}
