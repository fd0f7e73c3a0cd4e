//! Building and running the server: `App::build(Config, TcpListener)` prepares the data dir,
//! store, keys and TLS (`prepare`), builds every service once (`services`), binds the HTTP
//! server with the route table (`routes`: the table of contents of the HTTP surface) and
//! starts the jobs (`jobs`). The app is the only code that holds every service.

mod jobs;
mod middleware;
mod prepare;
mod reload;
mod routes;
mod services;

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;

use actix_web::dev::{Server, ServerHandle};
use actix_web::{HttpServer, web};
use tokio::task::JoinHandle;

use crate::config::{AuthMode, Config};
use crate::domain::Secret;
use crate::error::ErrorChain;
use crate::outbound::Outbound;
use crate::services::keys;
use crate::services::revocations::RevokedGrants;
use crate::shared::destinations::{Destinations, Resolve, SystemResolver};
use crate::shared::upstream::UpstreamClient;
use crate::store::{self, StoreError};
use crate::tls::CertResolver;

pub use reload::Reloader;
pub use services::Services;

use prepare::Prepared;

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
    Declared(#[from] crate::control::declared::ReconcileError),
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
    services: Services,
    tls: Option<Arc<CertResolver>>,
    admin_created: Option<AdminCreated>,
    tasks: Vec<JoinHandle<()>>,
    log_writers: Vec<JoinHandle<()>>,
    metrics_handle: Option<ServerHandle>,
    /// The data directory is this server's until it has stopped.
    _lock: crate::data_dir::DataDirLock,
}

impl App {
    /// Prepares everything and binds the server to `listener`. Serving starts when the
    /// returned app is awaited with [`App::run_until_stopped`].
    pub async fn build(config: Config, listener: TcpListener) -> Result<App, StartupError> {
        Self::build_with(config, listener, Arc::new(SystemResolver)).await
    }

    /// [`App::build`] with the resolver upstream names are looked up with (tests script one).
    pub async fn build_with(
        config: Config,
        listener: TcpListener,
        resolver: Arc<dyn Resolve>,
    ) -> Result<App, StartupError> {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let bound = listener.local_addr().map_err(StartupError::Listen)?;
        let public_url = config.public_url_for(bound);
        // Before anything is written (reads the CA files it names).
        let outbound = Outbound::new(&config.outbound)?;
        let prepared = {
            let (config, public_url) = (config.clone(), public_url.clone());
            tokio::task::spawn_blocking(move || prepare::prepare(config, &public_url))
                .await
                .map_err(|e| StartupError::Join(e.to_string()))??
        };
        // Bound now, so that the destination policy knows every listener of ours.
        let metrics_listener = match (config.metrics.enabled, config.metrics.listen) {
            (true, Some(addr)) => Some(TcpListener::bind(addr).map_err(StartupError::Listen)?),
            _ => None,
        };
        let mut own = vec![bound];
        if let Some(m) = &metrics_listener {
            own.push(m.local_addr().map_err(StartupError::Listen)?);
        }
        let rules = config.gateway.destination_rules()?;
        let destinations = Arc::new(Destinations::new(rules, own, resolver));
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
        let services = Services::build(services::Ingredients {
            config,
            public_url,
            store,
            master_key,
            keyring,
            revoked: revoked_set(revoked, &revoked_clients),
            sandbox,
            outbound,
            destinations,
        })?;
        services.deployer.restore().await?;
        services.gateway.rebuild(&servers);

        let (server, tls) = serve(&services, listener, tls)?;
        let mut tasks = jobs::start(&services);
        let metrics_handle = match metrics_listener {
            Some(listener) => {
                let (handle, task) = serve_metrics(&services, listener)?;
                tasks.push(task);
                Some(handle)
            }
            None => None,
        };
        let log_writers = start_log_writers(&services);
        Ok(App {
            server,
            port: bound.port(),
            services,
            tls,
            admin_created,
            tasks,
            log_writers,
            metrics_handle,
            _lock: lock,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn public_url(&self) -> &str {
        self.services.gateway.urls.public_url()
    }

    /// Every service (for the CLI's local commands and the tests).
    pub fn services(&self) -> &Services {
        &self.services
    }

    /// Whether the authorization server is built in (`auth.mode = "managed"`).
    pub fn is_managed(&self) -> bool {
        self.services.config.auth.mode == AuthMode::Managed
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
            services: self.services.clone(),
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
        let s = &self.services;
        s.deployer.shutdown().await;
        crate::control::billing::flush_usage(&s.store, &s.gateway, &s.deployer).await;
        // Write what the logs still hold.
        s.gateway.log.stop();
        s.deployer.hub.queue().stop();
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            futures_util::future::join_all(self.log_writers),
        )
        .await;
        jobs::flush_key_usage(s).await;
        let store = s.store.clone();
        let _ = tokio::task::spawn_blocking(move || {
            if let Err(e) = store.checkpoint() {
                tracing::warn!(error = %ErrorChain(&e), "final WAL checkpoint failed");
            }
        })
        .await;
        result
    }
}

/// Grants revoked recently enough that their access tokens may still be unexpired, and
/// deleted clients likewise: refused from the first request.
fn revoked_set(grants: Vec<String>, clients: &[String]) -> RevokedGrants {
    let set = RevokedGrants::default();
    set.refuse(grants, clients);
    set
}

/// The HTTP server on `listener` (TLS if configured), bound, not yet serving.
fn serve(
    services: &Services,
    listener: TcpListener,
    tls: Option<(rustls::ServerConfig, Arc<CertResolver>)>,
) -> Result<(Server, Option<Arc<CertResolver>>), StartupError> {
    let config = &services.config;
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
    let managed = config.auth.mode == AuthMode::Managed;
    let metrics_here = config.metrics.enabled && config.metrics.listen.is_none();
    // Reached over https on its own host (the public URL says so, as in production): browsers
    // are told to keep to it. Not for a self-signed localhost, nor on a port of its own (HSTS
    // would cover the host's every port, other services' included).
    let https_only = config
        .server
        .public_url
        .as_deref()
        .and_then(|u| url::Url::parse(u).ok())
        .is_some_and(|u| u.scheme() == "https" && u.port().is_none());
    let s = services.clone();
    let http = HttpServer::new(move || {
        // One upstream client per worker: its pooled connections are then driven by the
        // worker's own runtime, never handed across threads.
        let upstream = UpstreamClient::new(
            s.gateway.upstream_tls.clone(),
            s.config.gateway.upstream_connect_timeout.0,
            s.gateway.destinations.clone(),
        );
        actix_web::App::new()
            .app_data(web::Data::new(upstream))
            .configure(|cfg| s.register(cfg))
            .wrap(actix_web::middleware::Condition::new(
                https_only,
                actix_web::middleware::DefaultHeaders::new()
                    .add(("strict-transport-security", "max-age=31536000")),
            ))
            .wrap_fn(middleware::access_log)
            .configure(|cfg| routes::routes(cfg, managed, metrics_here))
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
    Ok((http.run(), resolver))
}

/// `/metrics` on a listener of its own (`metrics.listen`).
fn serve_metrics(
    services: &Services,
    listener: TcpListener,
) -> Result<(ServerHandle, JoinHandle<()>), StartupError> {
    let s = services.clone();
    let metrics = HttpServer::new(move || {
        actix_web::App::new()
            .configure(|cfg| s.register(cfg))
            .route("/metrics", web::get().to(crate::metrics::handler))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .map_err(StartupError::Listen)?
    .run();
    let handle = metrics.handle();
    let task = tokio::spawn(async move {
        if let Err(e) = metrics.await {
            tracing::error!(error = %e, "the metrics listener stopped");
        }
    });
    Ok((handle, task))
}

/// The writers that store the access log and the server log in batches.
fn start_log_writers(s: &Services) -> Vec<JoinHandle<()>> {
    vec![
        tokio::spawn(crate::shared::log_queue::run_writer(
            (**s.store).clone(),
            s.gateway.log.clone(),
            "access log",
            store::request_log::insert_many,
        )),
        tokio::spawn(crate::shared::log_queue::run_writer(
            (**s.store).clone(),
            s.deployer.hub.queue(),
            "server log",
            store::server_log::insert_many,
        )),
    ]
}
