//! Building and running the server: `App::build(Config, TcpListener)` prepares the data dir,
//! store, keys and TLS, and returns an app that is bound but not yet serving. The route table
//! below is the table of contents of the HTTP surface.

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{Server, ServerHandle, Service, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::{HttpServer, web};

use crate::config::{AuthMode, Config};
use crate::crypto::MasterKey;
use crate::deploy::Deployer;
use crate::domain::{self, Secret, password};
use crate::gateway;
use crate::outbound::Outbound;
use crate::services::accounts::Accounts;
use crate::services::gateway::Gateway;
use crate::services::gateway::urls::ServerUrls;
use crate::services::keys::{self, Keyring};
use crate::services::revocations::RevokedGrants;
use crate::shared::rate_limit::{Limiter, LoginThrottle};
use crate::store::{self, Store, StoreError};
use crate::tls::{self, CertResolver};
use crate::{control, error::ErrorChain};

/// Everything a handler may need, built once at start.
pub struct AppState {
    pub config: web::Data<Config>,
    /// `server.public_url` without a trailing slash: the OAuth issuer.
    pub public_url: String,
    pub store: Store,
    pub master_key: web::Data<MasterKey>,
    pub keys: web::Data<Keyring>,
    pub started_at: Instant,
    pub control: web::Data<control::ControlState>,
    pub oauth: web::Data<crate::oauth::OAuthState>,
    /// Passwords, sessions and their cookie.
    pub accounts: web::Data<Accounts>,
    pub revoked_grants: web::Data<RevokedGrants>,
    pub outbound: Outbound,
    pub gateway: web::Data<Gateway>,
    /// Replays of just-rotated refresh tokens, by outcome (Prometheus).
    pub refresh_reuse: web::Data<crate::services::revocations::ReuseCounters>,
    /// Active deployments and the processes they run; the server log.
    pub deployer: web::Data<Deployer>,
}

impl AppState {
    /// A server's resource URI: `{public_url}/mcp/{slug}`, or `https://{slug}.{server_domain}`.
    pub fn server_url(&self, slug: &str) -> String {
        self.gateway.urls.resource(slug)
    }

    /// `{slug}.{server_domain}` under host routing.
    pub fn server_subdomain(&self, slug: &str) -> Option<String> {
        self.gateway.urls.subdomain(slug)
    }

    /// Called after a change that may take access away from a caller of the control API.
    pub fn access_changed(&self) {
        self.control.access_changed();
    }

    /// Called after any change to servers, so in-memory routing follows at once.
    pub async fn servers_changed(&self) {
        self.gateway.servers_changed().await;
    }
}

/// Every service, each handed to the handlers that need it as its own `web::Data`.
#[derive(Clone)]
struct Services {
    config: web::Data<Config>,
    store: web::Data<Store>,
    master_key: web::Data<MasterKey>,
    keys: web::Data<Keyring>,
    revoked: web::Data<RevokedGrants>,
    reuse: web::Data<crate::services::revocations::ReuseCounters>,
    outbound: web::Data<Outbound>,
    gateway: web::Data<Gateway>,
    accounts: web::Data<Accounts>,
    deployer: web::Data<Deployer>,
    control: web::Data<control::ControlState>,
    oauth: web::Data<crate::oauth::OAuthState>,
    started: web::Data<crate::metrics::Started>,
}

impl Services {
    fn of(state: &AppState) -> Self {
        Self {
            config: state.config.clone(),
            store: web::Data::new(state.store.clone()),
            master_key: state.master_key.clone(),
            keys: state.keys.clone(),
            revoked: state.revoked_grants.clone(),
            reuse: state.refresh_reuse.clone(),
            outbound: web::Data::new(state.outbound.clone()),
            gateway: state.gateway.clone(),
            accounts: state.accounts.clone(),
            deployer: state.deployer.clone(),
            control: state.control.clone(),
            oauth: state.oauth.clone(),
            started: web::Data::new(crate::metrics::Started(state.started_at)),
        }
    }

    fn register(&self, cfg: &mut web::ServiceConfig) {
        cfg.app_data(self.config.clone())
            .app_data(self.store.clone())
            .app_data(self.master_key.clone())
            .app_data(self.keys.clone())
            .app_data(self.revoked.clone())
            .app_data(self.reuse.clone())
            .app_data(self.outbound.clone())
            .app_data(self.gateway.clone())
            .app_data(self.accounts.clone())
            .app_data(self.deployer.clone())
            .app_data(self.control.clone())
            .app_data(self.oauth.clone())
            .app_data(self.started.clone());
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    MasterKey(#[from] crate::crypto::MasterKeyError),
    #[error(transparent)]
    Keys(#[from] keys::KeyError),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error("config key `bootstrap.{field}`: {reason}")]
    Bootstrap { field: &'static str, reason: String },
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("cannot listen: {0}")]
    Listen(std::io::Error),
    #[error(transparent)]
    Declared(#[from] control::declared::ReconcileError),
    #[error("outbound HTTP: {0}")]
    Outbound(#[from] crate::outbound::FetchError),
    #[error("start-up task failed: {0}")]
    Join(String),
    #[error(transparent)]
    Locked(#[from] crate::data_dir::LockError),
}

/// What a first start created, for the banner.
#[derive(Debug)]
pub struct AdminCreated {
    pub email: String,
    /// Set when the password was generated (it is shown once, then only its hash exists).
    pub generated_password: Option<Secret>,
}

pub struct App {
    server: Server,
    port: u16,
    state: web::Data<AppState>,
    tls: Option<Arc<CertResolver>>,
    admin_created: Option<AdminCreated>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    log_writers: Vec<tokio::task::JoinHandle<()>>,
    metrics_handle: Option<ServerHandle>,
    /// The data directory is this server's until it has stopped.
    _lock: crate::data_dir::DataDirLock,
}

impl App {
    /// Prepares everything and binds the server to `listener`. Serving starts when the
    /// returned app is awaited with [`App::run_until_stopped`].
    pub async fn build(config: Config, listener: TcpListener) -> Result<App, StartupError> {
        Self::build_with(
            config,
            listener,
            Arc::new(crate::shared::destinations::SystemResolver),
        )
        .await
    }

    /// [`App::build`] with the resolver upstream names are looked up with (tests script one).
    pub async fn build_with(
        config: Config,
        listener: TcpListener,
        resolver: Arc<dyn crate::shared::destinations::Resolve>,
    ) -> Result<App, StartupError> {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let bound = listener.local_addr().map_err(StartupError::Listen)?;
        let public_url = config.public_url_for(bound);
        // Before anything is written (reads the CA files it names).
        let outbound = Outbound::new(&config.outbound)?;

        let prepared = {
            let config = config.clone();
            let public_url = public_url.clone();
            tokio::task::spawn_blocking(move || prepare(config, &public_url))
                .await
                .map_err(|e| StartupError::Join(e.to_string()))??
        };
        let Prepared {
            store,
            master_key,
            keyring,
            tls,
            admin_created,
            servers,
            revoked,
            revoked_clients,
            sandbox,
            lock,
        } = prepared;
        let revoked_grants = RevokedGrants::default();
        revoked_grants.extend(revoked);
        for client in &revoked_clients {
            revoked_grants.revoke_client(client);
        }
        // Bound now, so that the destination policy knows every listener of ours.
        let metrics_listener = match (config.metrics.enabled, config.metrics.listen) {
            (true, Some(addr)) => Some(TcpListener::bind(addr).map_err(StartupError::Listen)?),
            _ => None,
        };
        let mut own = vec![bound];
        if let Some(m) = &metrics_listener {
            own.push(m.local_addr().map_err(StartupError::Listen)?);
        }
        let destinations = Arc::new(crate::shared::destinations::Destinations::new(
            config.gateway.destination_rules()?,
            own,
            resolver,
        ));
        let upstream_tls = crate::shared::upstream::tls_config();
        let health = crate::shared::upstream::UpstreamClient::new(
            upstream_tls.clone(),
            config.gateway.upstream_connect_timeout.0,
            destinations.clone(),
        );
        let assertions = crate::services::gateway::assertion::Assertions::new(
            &master_key,
            &public_url,
            keyring.current(),
        )
        .map_err(|e| StartupError::Join(e.to_string()))?;
        let log = Arc::new(crate::shared::log_queue::AccessLog::new(ACCESS_LOG_QUEUE));
        let hub = crate::shared::logs::LogHub::default();
        let master_key = web::Data::new(master_key);
        let keys = web::Data::new(keyring);
        let revoked_grants = web::Data::new(revoked_grants);
        let deployer = web::Data::new(Deployer::new(crate::deploy::DeployerParts {
            hub: hub.clone(),
            sandbox,
            store: store.clone(),
            master_key: master_key.clone().into_inner(),
            config: config.deploy.clone(),
            upstream_timeout: config.gateway.upstream_timeout.0,
            health,
            destinations: destinations.clone(),
        }));
        let gateway = web::Data::new(Gateway {
            store: store.clone(),
            deployer: deployer.clone(),
            default_byoa: config.auth.byoa.clone(),
            urls: ServerUrls::new(
                &public_url,
                config.gateway.routing,
                config.gateway.server_domain.as_deref(),
            ),
            registry: crate::services::gateway::registry::Registry::default(),
            verifier: crate::services::gateway::verify::Verifier::new(
                crate::shared::jwks::JwksCache::new(outbound.clone()),
                keys.clone().into_inner(),
                revoked_grants.clone().into_inner(),
                hub.clone(),
                &public_url,
            ),
            config: config.gateway.clone(),
            health_timeout: config.deploy.health_timeout.0,
            keys: keys.clone().into_inner(),
            hub,
            tools: crate::services::gateway::policy::ToolTable::default(),
            sessions: crate::services::gateway::sessions::SessionSeal::new(
                master_key.mac_key("mcp session ids"),
            ),
            limiter: Limiter::new(config.gateway.rate_limit),
            upstream_tls,
            destinations,
            assertions,
            log: log.clone(),
        });

        let workers = match config.server.workers {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        };
        // In-flight requests get all but a second of the stop's time; the rest is for the
        // processes, the logs and the database (`serve` ends the process at the timeout).
        let shutdown_secs = config
            .server
            .shutdown_timeout
            .0
            .as_secs()
            .saturating_sub(1)
            .max(1);
        let client_jwks = crate::shared::jwks::JwksCache::for_clients(outbound.clone());
        let control_limiter = Arc::new(Limiter::new(config.control.rate_limit));
        let state = web::Data::new(AppState {
            control: web::Data::new(control::ControlState::new(control_limiter.clone())),
            oauth: web::Data::new(crate::oauth::OAuthState {
                limiter: Limiter::new(config.auth.rate_limit),
                clients: Default::default(),
                client_jwks,
            }),
            accounts: web::Data::new(Accounts::new(
                store.clone(),
                LoginThrottle::new(config.control.login_attempts, LOGIN_WINDOW),
                control_limiter,
                config.auth.session_ttl.0,
                &public_url,
            )),
            config: web::Data::new(config),
            public_url,
            store,
            master_key,
            keys,
            started_at: Instant::now(),
            revoked_grants,
            outbound,
            gateway,
            refresh_reuse: Default::default(),
            deployer,
        });
        state
            .deployer
            .route_through(state.gateway.clone().into_inner());
        state.deployer.restore().await?;
        state.gateway.rebuild(&servers);

        let services = Services::of(&state);
        let app_state = state.clone();
        let managed = state.config.auth.mode == AuthMode::Managed;
        let metrics_here = state.config.metrics.enabled && state.config.metrics.listen.is_none();
        let http = HttpServer::new(move || {
            // One upstream client per worker: its pooled connections are then driven by the
            // worker's own runtime, never handed across threads.
            let upstream = crate::shared::upstream::UpstreamClient::new(
                app_state.gateway.upstream_tls.clone(),
                app_state.config.gateway.upstream_connect_timeout.0,
                app_state.gateway.destinations.clone(),
            );
            actix_web::App::new()
                .app_data(app_state.clone())
                .app_data(web::Data::new(upstream))
                .configure(|cfg| services.register(cfg))
                .wrap_fn(access_log)
                .configure(|cfg| routes(cfg, managed, metrics_here))
        })
        .workers(workers)
        .shutdown_timeout(shutdown_secs)
        .disable_signals();
        let (http, resolver) = match tls {
            Some((tls_config, resolver)) => (
                http.listen_rustls_0_23(listener, tls_config)
                    .map_err(StartupError::Listen)?,
                Some(resolver),
            ),
            None => (http.listen(listener).map_err(StartupError::Listen)?, None),
        };
        let server = http.run();

        let mut tasks = vec![];
        let mut metrics_handle = None;
        if let Some(listener) = metrics_listener {
            let st = state.clone();
            let services = Services::of(&state);
            let metrics = HttpServer::new(move || {
                actix_web::App::new()
                    .app_data(st.clone())
                    .configure(|cfg| services.register(cfg))
                    .route("/metrics", web::get().to(crate::metrics::handler))
            })
            .workers(1)
            .disable_signals()
            .listen(listener)
            .map_err(StartupError::Listen)?
            .run();
            metrics_handle = Some(metrics.handle());
            tasks.push(tokio::spawn(async move {
                if let Err(e) = metrics.await {
                    tracing::error!(error = %e, "the metrics listener stopped");
                }
            }));
        }
        tasks.extend([
            tokio::spawn(crate::services::gateway::issuer_check::check_all(
                state.gateway.clone(),
                state.outbound.clone(),
            )),
            tokio::spawn(key_maintenance(state.clone())),
            tokio::spawn(housekeeping(state.clone())),
            tokio::spawn(deploy_ticks(state.clone())),
        ]);
        let log_writer = tokio::spawn(crate::shared::log_queue::run_writer(
            state.store.clone(),
            log,
            "access log",
            store::request_log::insert_many,
        ));
        let server_log_writer = tokio::spawn(crate::shared::log_queue::run_writer(
            state.store.clone(),
            state.deployer.hub.queue(),
            "server log",
            store::server_log::insert_many,
        ));
        Ok(App {
            server,
            port: bound.port(),
            state,
            tls: resolver,
            admin_created,
            tasks,
            log_writers: vec![log_writer, server_log_writer],
            metrics_handle,
            _lock: lock,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn public_url(&self) -> &str {
        &self.state.public_url
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    pub fn data(&self) -> web::Data<AppState> {
        self.state.clone()
    }

    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    pub fn tls_fingerprint(&self) -> Option<String> {
        self.tls.as_ref().map(|t| t.fingerprint())
    }

    pub fn take_admin_created(&mut self) -> Option<AdminCreated> {
        self.admin_created.take()
    }

    /// Something that can reload what SIGHUP reloads, usable while the app runs.
    pub fn reloader(&self) -> Reloader {
        Reloader {
            state: self.state.clone(),
            tls: self.tls.clone(),
        }
    }

    /// Serves until the handle stops the server, then finishes in-flight requests (within
    /// `server.shutdown_timeout`) and closes the store cleanly.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = self.server.await;
        if let Some(h) = &self.metrics_handle {
            h.stop(true).await;
        }
        for task in &self.tasks {
            task.abort();
        }
        self.state.deployer.shutdown().await;
        crate::control::billing::flush_usage(
            &self.state.store,
            &self.state.gateway,
            &self.state.deployer,
        )
        .await;
        // Write what the logs still hold.
        self.state.gateway.log.stop();
        self.state.deployer.hub.queue().stop();
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            futures_util::future::join_all(self.log_writers),
        )
        .await;
        let state = self.state.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let store = &state.store;
            if let Err(e) = store.run_blocking(|c| state.control.key_usage.flush(c)) {
                tracing::warn!(error = %ErrorChain(&e), "could not record API key use");
            }
            if let Err(e) = store.checkpoint() {
                tracing::warn!(error = %ErrorChain(&e), "final WAL checkpoint failed");
            }
        })
        .await;
        result
    }
}

/// Reloads, on SIGHUP, the TLS certificate files and the signing keys.
#[derive(Clone)]
pub struct Reloader {
    state: web::Data<AppState>,
    tls: Option<Arc<CertResolver>>,
}

impl Reloader {
    pub async fn reload(&self) {
        if let Some(tls) = self.tls.clone() {
            match tokio::task::spawn_blocking(move || tls.reload()).await {
                Ok(Ok(fp)) => tracing::info!(fingerprint = %fp, "TLS certificate reloaded"),
                Ok(Err(e)) => {
                    tracing::error!(error = %ErrorChain(&e), "TLS reload failed; keeping the previous certificate")
                }
                Err(e) => tracing::error!(error = %e, "TLS reload task failed"),
            }
        }
        refresh_keys(&self.state).await;
        self.reconcile_servers().await;
        tokio::spawn(crate::services::gateway::issuer_check::check_all(
            self.state.gateway.clone(),
            self.state.outbound.clone(),
        ));
    }

    /// Reads the config file again and makes the declared servers match it. Other settings
    /// need a restart.
    async fn reconcile_servers(&self) {
        let Some(path) = self.state.config.source_file.clone() else {
            return;
        };
        let public_url = self.state.public_url.clone();
        let result = self
            .state
            .store
            .run(move |c| {
                let fresh =
                    Config::load(Some(&path)).map_err(|e| ReloadError::Config(e.to_string()))?;
                control::declared::reconcile(c, &fresh, &public_url)
                    .map_err(|e| ReloadError::Config(e.to_string()))
            })
            .await;
        match result {
            Ok(report) => {
                let revoked = report.revoked;
                self.state
                    .revoked_grants
                    .refuse(revoked.grants, &revoked.clients);
                self.state.servers_changed().await;
                // Declared servers may have been removed.
                self.state.access_changed();
            }
            Err(e) => {
                tracing::error!(error = %e, "config reload failed; declared servers unchanged")
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum ReloadError {
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

async fn refresh_keys(state: &web::Data<AppState>) {
    let st = state.clone();
    let result = state
        .store
        .run(move |conn| {
            let now = domain::now();
            let ttl = st.config.auth.access_token_ttl.as_secs();
            let every = st.config.auth.signing.rotate_after;
            if !every.0.is_zero()
                && let Some(kid) =
                    keys::rotate_if_due(conn, &st.master_key, now, every.as_secs(), ttl)?
            {
                tracing::info!(kid = %kid, "signing key rotated on schedule");
            }
            st.keys.refresh(conn, &st.master_key, now)
        })
        .await;
    match result {
        Ok(true) => tracing::info!("signing keys reloaded"),
        Ok(false) => {}
        Err(e) => tracing::error!(error = %ErrorChain(&e), "signing key refresh failed"),
    }
}

/// Failed logins counted over this window.
const LOGIN_WINDOW: std::time::Duration = std::time::Duration::from_secs(15 * 60);
/// Access-log entries held for the writer at most (it writes every 250 ms; at 50,000 req/s
/// a quarter second is 12,500 entries).
const ACCESS_LOG_QUEUE: usize = 65_536;

/// Every few seconds: write batched API key use, forget idle rate-limit buckets; hourly: reap
/// dynamic clients unused for `auth.registration.reap_unused_after`.
async fn housekeeping(state: web::Data<AppState>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ticks: u64 = 0;
    loop {
        tick.tick().await;
        let st = state.clone();
        if let Err(e) = state
            .store
            .run(move |c| st.control.key_usage.flush(c))
            .await
        {
            tracing::warn!(error = %ErrorChain(&e), "could not record API key use");
        }
        state.control.limiter.prune();
        state.oauth.limiter.prune();
        state.gateway.limiter.prune();
        for server in state.gateway.registry.all() {
            if let Some(limiter) = &server.limiter {
                limiter.prune();
            }
        }
        crate::control::billing::flush_usage(&state.store, &state.gateway, &state.deployer).await;
        if ticks.is_multiple_of(30) {
            let before = domain::now_ms() - state.config.logs.retention.0.as_millis() as i64;
            let max = state.config.logs.max_entries;
            match state
                .store
                .run(move |c| store::server_log::retain(c, before, max))
                .await
            {
                Ok(0) => {}
                Ok(n) => tracing::info!(entries = n, "old log entries removed"),
                Err(e) => tracing::warn!(error = %ErrorChain(&e), "could not trim the logs"),
            }
        }
        if ticks.is_multiple_of(360) {
            let now = domain::now();
            let before = now - state.config.auth.registration.reap_unused_after.as_secs();
            match state
                .store
                .write(move |tx| store::clients::reap_unused(tx, before, now))
                .await
            {
                Ok((n, revoked)) => {
                    state.revoked_grants.extend(revoked);
                    if n > 0 {
                        tracing::info!(clients = n, "removed unused dynamic clients");
                    }
                }
                Err(e) => tracing::warn!(error = %ErrorChain(&e), "could not reap dynamic clients"),
            }
            purge_expired_refresh_tokens(&state, now).await;
            // Recorded revocations outlive every token they cover by a day.
            let before = now - state.config.auth.access_token_ttl.as_secs() - 86_400;
            if let Err(e) = state
                .store
                .write(move |tx| store::grants::purge_revocations(tx, before))
                .await
            {
                tracing::warn!(error = %ErrorChain(&e), "could not purge old revocations");
            }
        }
        ticks += 1;
    }
}

/// Expired refresh tokens (every rotation leaves one behind) are deleted in short
/// transactions, so that writers are never held up for long.
async fn purge_expired_refresh_tokens(state: &web::Data<AppState>, now: i64) {
    const BATCH: i64 = 5_000;
    let mut total = 0;
    loop {
        match state
            .store
            .write(move |tx| store::grants::purge_expired_refresh(tx, now, BATCH))
            .await
        {
            Ok(n) => {
                total += n;
                if (n as i64) < BATCH {
                    break;
                }
            }
            Err(e) => {
                tracing::warn!(error = %ErrorChain(&e), "could not purge expired refresh tokens");
                break;
            }
        }
    }
    if total > 0 {
        tracing::info!(tokens = total, "expired refresh tokens removed");
    }
}

/// Every second: idle processes stopped, process time counted; every 5 s, processes found
/// listening beyond loopback; every 15 s, upstream URLs probed.
async fn deploy_ticks(state: web::Data<AppState>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = Instant::now();
    let mut ticks: u64 = 0;
    loop {
        tick.tick().await;
        state.deployer.tick(last.elapsed());
        last = Instant::now();
        if ticks.is_multiple_of(5) {
            state.deployer.check_exposure().await;
        }
        if ticks.is_multiple_of(15) {
            state.deployer.probe_upstreams().await;
        }
        ticks += 1;
    }
}

/// Picks up keys rotated by `ezforge keys rotate`, rotates on schedule, drops expired ones.
async fn key_maintenance(state: web::Data<AppState>) {
    let mut tick = tokio::time::interval(keys::RELOAD_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        refresh_keys(&state).await;
    }
}

struct Prepared {
    store: Store,
    master_key: MasterKey,
    keyring: Keyring,
    tls: Option<(rustls::ServerConfig, Arc<CertResolver>)>,
    admin_created: Option<AdminCreated>,
    servers: Vec<store::servers::ServerRow>,
    /// Grants revoked recently enough that their access tokens may still be unexpired.
    revoked: Vec<String>,
    /// Deleted clients, likewise (their client_credentials tokens).
    revoked_clients: Vec<String>,
    sandbox: crate::deploy::sandbox::Sandbox,
    lock: crate::data_dir::DataDirLock,
}

/// The blocking part of start-up.
fn prepare(config: Config, public_url: &str) -> Result<Prepared, StartupError> {
    let data_dir = config.server.data_dir.clone();
    // A first start that cannot succeed must not leave a database and a master key behind.
    if !data_dir.join("ezforge.db").exists()
        && let Some(problem) = config.bootstrap_problem()
    {
        return Err(problem.into());
    }
    tls::check_files(&config.tls)?;
    create_data_dir(&data_dir)?;
    let lock = crate::data_dir::lock(&data_dir)?;
    let store = Store::open(&data_dir.join("ezforge.db"))?;
    let master_key = MasterKey::load_or_create(config.master_key.as_ref(), &data_dir)?;
    let now = domain::now();
    let keyring = store.run_blocking(|conn| {
        keys::ensure_active(conn, &master_key, now)?;
        keys::load(conn, &master_key, now)
    })?;
    let admin_created = bootstrap_admin(&config, &store)?;
    // The revocations it records are read below with the others.
    let report = store.run_blocking(|c| control::declared::reconcile(c, &config, public_url))?;
    if report != control::declared::Report::default() {
        tracing::info!(
            created = report.created,
            updated = report.updated,
            deleted = report.deleted,
            "config-declared servers reconciled"
        );
    }

    let mut names = config.tls.names.clone();
    if let Some(host) = url::Url::parse(public_url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
    {
        names.push(host.trim_matches(['[', ']']).to_owned());
    }
    let tls = tls::server_config(&config.tls, &data_dir, &names)?;
    let servers = store.run_blocking(|c| store::servers::all(c))?;
    let since = now
        - config.auth.access_token_ttl.as_secs()
        - 2 * crate::services::gateway::verify::LEEWAY_SECS;
    let (revoked, revoked_clients) = store.run_blocking(|c| {
        let mut grants = store::grants::recently_revoked(c, since)?;
        grants.extend(store::grants::recorded_revocations(c, "grant", since)?);
        let clients = store::grants::recorded_revocations(c, "client", since)?;
        Ok::<_, store::StoreError>((grants, clients))
    })?;
    let sandbox = crate::deploy::sandbox::Sandbox::new(&config, true);
    for line in sandbox.describe() {
        tracing::info!("{line}");
    }
    Ok(Prepared {
        lock,
        sandbox,
        revoked,
        revoked_clients,
        store,
        master_key,
        keyring: Keyring::new(keyring),
        tls,
        admin_created,
        servers,
    })
}

fn create_data_dir(path: &std::path::Path) -> Result<(), StartupError> {
    let err = |source| StartupError::DataDir {
        path: path.to_path_buf(),
        source,
    };
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(path).map_err(err)?;
    // Fail now, with the path in the message, rather than on the first write.
    let probe = path.join(".write-test");
    std::fs::write(&probe, b"").map_err(err)?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}

/// Creates the first admin when there is no user at all.
fn bootstrap_admin(config: &Config, store: &Store) -> Result<Option<AdminCreated>, StartupError> {
    if store.run_blocking(|c| store::users::count(c))? > 0 {
        return Ok(None);
    }
    if let Some(problem) = config.bootstrap_problem() {
        return Err(problem.into());
    }
    let email = config
        .bootstrap
        .admin_email
        .clone()
        .unwrap_or_else(|| "admin@localhost".to_owned());
    let (secret, generated) = match &config.bootstrap.admin_password {
        Some(p) => (p.clone(), None),
        None => {
            let p = password::generate();
            (p.clone(), Some(p))
        }
    };
    let hash = password::hash(&secret).map_err(|e| StartupError::Bootstrap {
        field: "admin_password",
        reason: e.to_string(),
    })?;
    let now = domain::now();
    let row = store::users::UserRow {
        id: domain::new_id("usr_"),
        email: email.clone(),
        role: "admin".into(),
        password_hash: Some(hash),
        created_at: now,
        updated_at: now,
    };
    store.run_blocking(|c| store::users::insert(c, &row))?;
    Ok(Some(AdminCreated {
        email,
        generated_password: generated,
    }))
}

/// The route table. Order matters where prefixes overlap: more specific scopes first.
fn routes(cfg: &mut web::ServiceConfig, managed: bool, metrics_here: bool) {
    if metrics_here {
        cfg.route("/metrics", web::get().to(crate::metrics::handler));
    }
    cfg.configure(gateway::routes);
    // In BYOA mode the authorization server's routes do not exist at all.
    if managed {
        cfg.configure(crate::oauth::routes);
    }
    cfg.configure(control::routes)
        .default_service(web::to(control::not_found));
}

pub(crate) fn auth_mode_is_managed(state: &AppState) -> bool {
    state.config.auth.mode == AuthMode::Managed
}

pub(crate) static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A request id: the caller's `X-Request-Id` if it is short and printable, else a new one.
fn request_id(req: &actix_web::dev::ServiceRequest) -> HeaderValue {
    if let Some(v) = req.headers().get(&REQUEST_ID) {
        let ok = v.len() <= 128 && v.as_bytes().iter().all(|b| b.is_ascii_graphic());
        if ok {
            return v.clone();
        }
    }
    new_request_id()
}

/// 96 bits as 24 hex digits, from a per-thread SplitMix64 seeded by the OS. Request ids
/// correlate log lines; they are not secrets, so they need not cost a CSPRNG call each.
fn new_request_id() -> HeaderValue {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = Cell::new(u64::from_le_bytes(crate::domain::random_bytes()));
    }
    let next = |s: &Cell<u64>| {
        let x = s.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
        s.set(x);
        let z = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        let z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let (a, b) = STATE.with(|s| (next(s), next(s)));
    let mut bytes = [0u8; 12];
    bytes[..8].copy_from_slice(&a.to_le_bytes());
    bytes[8..].copy_from_slice(&b.to_le_bytes()[..4]);
    HeaderValue::from_str(&crate::crypto::hex(&bytes)).unwrap_or(HeaderValue::from_static("-"))
}

/// One log line per request: method, path (never the query: it may hold codes), status,
/// latency and request id. The id is echoed in `X-Request-Id`.
fn access_log<S, B>(
    req: actix_web::dev::ServiceRequest,
    srv: &S,
) -> impl std::future::Future<Output = Result<ServiceResponse<B>, actix_web::Error>> + use<S, B>
where
    S: Service<
            actix_web::dev::ServiceRequest,
            Response = ServiceResponse<B>,
            Error = actix_web::Error,
        >,
    B: MessageBody,
{
    let start = Instant::now();
    let id = request_id(&req);
    // Handlers (the access log above all) and upstreams see the id the caller will see.
    let mut req = req;
    req.headers_mut().insert(REQUEST_ID.clone(), id.clone());
    let method = req.method().clone();
    // The path is copied only when the line will be written.
    let path = tracing::enabled!(target: "ezforge::access", tracing::Level::INFO)
        .then(|| req.path().to_owned());
    let fut = srv.call(req);
    async move {
        let mut res = fut.await?;
        let status = res.status().as_u16();
        let latency_ms = start.elapsed().as_secs_f64() * 1000.0;
        let rid = id.to_str().unwrap_or("-");
        if let Some(err) = res.response().error().filter(|_| status >= 500) {
            tracing::error!(request_id = rid, error = %err, "request failed");
        }
        tracing::info!(
            target: "ezforge::access",
            method = %method,
            path = %path.as_deref().unwrap_or_default(),
            status,
            latency_ms = format_args!("{latency_ms:.2}"),
            request_id = rid,
        );
        res.headers_mut().insert(REQUEST_ID.clone(), id);
        Ok(res)
    }
}
