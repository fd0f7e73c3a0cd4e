//! The front door's HTTP/1.1 client for upstream MCP servers.
//!
//! One per actix worker, on hyper's connection API. The upstream's address is worked out once
//! per registry entry ([`Endpoint`]), so a request costs no URL parsing and no connector
//! machinery; idle connections are kept per worker. A connection goes back to the pool when its
//! response body has been read to the end (an abandoned body closes it), and a request that
//! finds its pooled connection closed before anything was written is sent on another one.
//!
//! Every new connection to an upstream URL is checked against the destination policy
//! ([`Destinations`]), with the address the name resolved to this time (DNS rebinding): a
//! check per connection, none per request. The supervised processes' own endpoints are ours
//! and exempt.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::Stream;
use http_body_util::Full;
use hyper::body::{Body, Incoming};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::domain::destinations::Refusal;
use crate::domain::endpoint::{Addr, Endpoint};
use crate::shared::destinations::Destinations;

/// Idle connections are closed after this long (upstreams commonly keep them longer; Node's
/// default is 5 s, which the retry below covers).
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
const MAX_IDLE_PER_HOST: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// No connection could be made: the request was not delivered.
    #[error("could not connect: {0}")]
    Connect(String),
    /// The connection (TCP and TLS) was not made within the connect timeout.
    #[error("connecting timed out")]
    ConnectTimedOut,
    /// The destination policy refused the address (nothing was sent).
    #[error("the upstream's address is refused: {0}")]
    Refused(Refusal),
    #[error("{0}")]
    Failed(String),
}

trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

type Sender = SendRequest<Full<Bytes>>;

struct Idle {
    sender: Sender,
    since: Instant,
}

/// Idle connections by origin, oldest first.
#[derive(Default)]
struct Pool {
    idle: HashMap<String, Vec<Idle>>,
    /// When every origin's list is next swept of expired connections (so that connections to
    /// an upstream no longer routed to are closed too).
    next_sweep: Option<Instant>,
}

impl Pool {
    fn sweep_if_due(&mut self) {
        let now = Instant::now();
        if self.next_sweep.is_some_and(|t| now < t) {
            return;
        }
        self.next_sweep = Some(now + SWEEP_EVERY);
        self.idle.retain(|_, list| {
            expire(list);
            list.retain(|i| !i.sender.is_closed());
            !list.is_empty()
        });
    }
}

type IdleMap = Mutex<Pool>;

const SWEEP_EVERY: Duration = Duration::from_secs(30);

/// See the module documentation.
pub struct UpstreamClient {
    tls: tokio_rustls::TlsConnector,
    connect_timeout: Duration,
    idle: Arc<IdleMap>,
    destinations: Arc<Destinations>,
}

/// The client's TLS settings: the system's roots, HTTP/1.1.
pub fn tls_config() -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for cert in found.certs {
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        tracing::warn!("no system CA certificates found: HTTPS upstreams cannot be verified");
    }
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

impl UpstreamClient {
    pub fn new(
        tls: Arc<rustls::ClientConfig>,
        connect_timeout: Duration,
        destinations: Arc<Destinations>,
    ) -> Self {
        Self {
            tls: tokio_rustls::TlsConnector::from(tls),
            connect_timeout,
            idle: Arc::default(),
            destinations,
        }
    }

    /// Sends `req` (origin-form URI, `Host` set) to `ep`. With `reuse`, over a pooled
    /// connection when there is one, and the connection is pooled again afterwards; without,
    /// over a new connection used once, so that [`SendError::Connect`] always means "not
    /// delivered".
    pub async fn send(
        &self,
        ep: &Endpoint,
        mut req: http::Request<Full<Bytes>>,
        reuse: bool,
    ) -> Result<http::Response<PooledBody>, SendError> {
        if reuse {
            while let Some(mut sender) = self.checkout(&ep.key) {
                if sender.ready().await.is_err() {
                    continue;
                }
                match sender.try_send_request(req).await {
                    Ok(res) => return Ok(self.wrap(res, ep, sender, true)),
                    Err(mut e) => match e.take_message() {
                        // Closed before the request was written: another connection.
                        Some(r) => req = r,
                        None => return Err(SendError::Failed(e.into_error().to_string())),
                    },
                }
            }
        }
        let mut sender = self.connect(ep).await?;
        let res = sender
            .send_request(req)
            .await
            .map_err(|e| SendError::Failed(e.to_string()))?;
        Ok(self.wrap(res, ep, sender, reuse))
    }

    fn wrap(
        &self,
        res: http::Response<Incoming>,
        ep: &Endpoint,
        sender: Sender,
        reuse: bool,
    ) -> http::Response<PooledBody> {
        // Without reuse the sender is still held until the body is done: the connection is
        // closed only after the answer (dropping it with the body closes it).
        let (release, hold) = if reuse {
            let release = Release {
                idle: self.idle.clone(),
                key: ep.key.clone(),
                sender,
            };
            (Some(release), None)
        } else {
            (None, Some(sender))
        };
        let (parts, inner) = res.into_parts();
        let mut body = PooledBody {
            inner,
            release,
            _hold: hold,
        };
        body.release_if_done();
        http::Response::from_parts(parts, body)
    }

    fn checkout(&self, key: &str) -> Option<Sender> {
        let mut pool = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        pool.sweep_if_due();
        let list = pool.idle.get_mut(key)?;
        expire(list);
        while let Some(i) = list.pop() {
            if !i.sender.is_closed() {
                return Some(i.sender);
            }
        }
        None
    }

    /// Whether a connection (TCP, and TLS for https) to `ep` can be made now; nothing is sent.
    pub async fn probe(&self, ep: &Endpoint) -> Result<(), SendError> {
        self.connect(ep).await.map(drop)
    }

    async fn connect(&self, ep: &Endpoint) -> Result<Sender, SendError> {
        let connect = async {
            let tcp = self.open(ep).await?;
            let _ = tcp.set_nodelay(true);
            let io: Box<dyn Io> = match &ep.tls {
                None => Box::new(tcp),
                Some(name) => Box::new(
                    self.tls
                        .connect(name.clone(), tcp)
                        .await
                        .map_err(|e| SendError::Connect(format!("TLS: {e}")))?,
                ),
            };
            Ok::<_, SendError>(io)
        };
        let io = tokio::time::timeout(self.connect_timeout, connect)
            .await
            .map_err(|_| SendError::ConnectTimedOut)??;
        let (sender, conn) = http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| SendError::Connect(e.to_string()))?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "upstream connection ended");
            }
        });
        Ok(sender)
    }

    /// A TCP connection to an address of `ep` the destination policy allows: a name is
    /// resolved now, and each address it gives is checked before it is tried.
    async fn open(&self, ep: &Endpoint) -> Result<TcpStream, SendError> {
        let policy = &self.destinations;
        match &ep.addr {
            Addr::Ip(a) => {
                if ep.guarded {
                    policy.check_addr(None, *a).map_err(SendError::Refused)?;
                }
                TcpStream::connect(a)
                    .await
                    .map_err(|e| SendError::Connect(format!("{a}: {e}")))
            }
            Addr::Name(host, port) => {
                if ep.guarded {
                    policy.check_name(host).map_err(SendError::Refused)?;
                }
                let addrs = policy
                    .resolver()
                    .lookup(host, *port)
                    .await
                    .map_err(|e| SendError::Connect(format!("cannot resolve {host}: {e}")))?;
                let (mut refused, mut failed) = (None, None);
                for a in addrs {
                    if ep.guarded
                        && let Err(r) = policy.check_addr(Some(host), a)
                    {
                        refused.get_or_insert(r);
                        continue;
                    }
                    match TcpStream::connect(a).await {
                        Ok(tcp) => return Ok(tcp),
                        Err(e) => failed = Some((a, e)),
                    }
                }
                Err(match (failed, refused) {
                    (Some((a, e)), _) => SendError::Connect(format!("{a}: {e}")),
                    (None, Some(r)) => SendError::Refused(r),
                    (None, None) => SendError::Connect(format!("{host} resolves to no address")),
                })
            }
        }
    }
}

/// Drops connections idle for longer than [`IDLE_TIMEOUT`] (the oldest are first).
fn expire(list: &mut Vec<Idle>) {
    let stale = list
        .iter()
        .take_while(|i| i.since.elapsed() > IDLE_TIMEOUT)
        .count();
    list.drain(..stale);
}

struct Release {
    idle: Arc<IdleMap>,
    key: String,
    sender: Sender,
}

impl Release {
    fn give_back(self) {
        let mut pool = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        pool.sweep_if_due();
        let list = pool.idle.entry(self.key).or_default();
        expire(list);
        if list.len() < MAX_IDLE_PER_HOST {
            list.push(Idle {
                sender: self.sender,
                since: Instant::now(),
            });
        }
    }
}

/// An upstream response body: its data as a stream of chunks. Read to the end, its connection
/// goes back to the pool.
pub struct PooledBody {
    inner: Incoming,
    release: Option<Release>,
    _hold: Option<Sender>,
}

impl PooledBody {
    /// The body's length when known in advance.
    pub fn exact_len(&self) -> Option<u64> {
        self.inner.size_hint().exact()
    }

    fn release_if_done(&mut self) {
        if self.inner.is_end_stream()
            && let Some(r) = self.release.take()
        {
            r.give_back();
        }
    }
}

impl Stream for PooledBody {
    type Item = Result<Bytes, hyper::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    // Trailers carry nothing a client of the front door needs.
                    if let Ok(data) = frame.into_data() {
                        this.release_if_done();
                        return Poll::Ready(Some(Ok(data)));
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    this.release = None;
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(None) => {
                    if let Some(r) = this.release.take() {
                        r.give_back();
                    }
                    return Poll::Ready(None);
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use url::Url;

    use super::*;

    /// An HTTPS server answering `ok` to every request, counting its connections; and a client
    /// configuration trusting its certificate.
    async fn tls_upstream() -> (String, Arc<AtomicUsize>, Arc<rustls::ClientConfig>) {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("cert");
        let cert = ck.cert.der().clone();
        let key = rustls_pki_types::PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into());
        let server = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key)
            .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert).expect("root");
        let client = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut seen = Vec::new();
                    let mut buf = [0u8; 4096];
                    loop {
                        while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                            match tls.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => seen.extend_from_slice(&buf[..n]),
                            }
                        }
                        seen.clear();
                        let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        if tls.write_all(reply).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (
            format!("https://localhost:{port}/mcp"),
            accepted,
            Arc::new(client),
        )
    }

    fn open_policy() -> Arc<Destinations> {
        let resolver = Arc::new(crate::shared::destinations::SystemResolver);
        Arc::new(Destinations::new(Default::default(), Vec::new(), resolver))
    }

    async fn get(client: &UpstreamClient, ep: &Endpoint) -> Result<String, SendError> {
        let mut req = http::Request::new(Full::new(Bytes::new()));
        *req.uri_mut() = http::Uri::from_static("/mcp");
        req.headers_mut()
            .insert(http::header::HOST, ep.host_header().clone());
        let res = client.send(ep, req, true).await?;
        let mut body = res.into_body();
        let mut text = Vec::new();
        while let Some(chunk) = futures_util::StreamExt::next(&mut body).await {
            text.extend_from_slice(&chunk.map_err(|e| SendError::Failed(e.to_string()))?);
        }
        Ok(String::from_utf8_lossy(&text).into_owned())
    }

    #[tokio::test]
    async fn https_upstreams_are_verified_and_their_connections_reused() {
        let (url, accepted, trusting) = tls_upstream().await;
        let ep = Endpoint::new(Url::parse(&url).expect("url")).expect("endpoint");
        assert_eq!(
            ep.host_header(),
            &format!("localhost:{}", ep.url().port().unwrap_or(0))
        );

        let client = UpstreamClient::new(trusting, Duration::from_secs(5), open_policy());
        for _ in 0..3 {
            assert_eq!(get(&client, &ep).await.expect("answer"), "ok");
        }
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1,
            "one TLS connection, reused"
        );

        // A client that does not trust the certificate refuses to connect.
        let strict = rustls::ClientConfig::builder()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        let client = UpstreamClient::new(Arc::new(strict), Duration::from_secs(5), open_policy());
        assert!(matches!(
            get(&client, &ep).await,
            Err(SendError::Connect(_))
        ));
    }

    #[test]
    fn endpoints_take_urls_apart_once() {
        let ep = Endpoint::new(Url::parse("http://[::1]:8080/a/mcp/").expect("url")).expect("ep");
        assert_eq!(ep.base_path(), "/a/mcp");
        assert_eq!(ep.host_header(), "[::1]:8080");
        assert!(matches!(ep.addr, Addr::Ip(a) if a.port() == 8080 && a.ip().is_loopback()));
        let ep = Endpoint::new(Url::parse("https://mcp.example.com/").expect("url")).expect("ep");
        assert_eq!(ep.base_path(), "");
        assert_eq!(ep.host_header(), "mcp.example.com");
        assert_eq!(ep.key, "https://mcp.example.com:443");
        assert!(Endpoint::new(Url::parse("ftp://example.com/").expect("url")).is_none());
    }
}
