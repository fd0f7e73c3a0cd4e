//! Every service, built once at start. Each is handed to the handlers that need it as its own
//! `web::Data<T>` ([`Services::register`]); only the app, its jobs and embedders (the CLI's
//! local commands, the tests) hold them all.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::web;

use super::StartupError;
use crate::config::Config;
use crate::control::ControlState;
use crate::crypto::MasterKey;
use crate::deploy::sandbox::Sandbox;
use crate::deploy::{Deployer, DeployerParts};
use crate::metrics::Started;
use crate::oauth::OAuthState;
use crate::outbound::Outbound;
use crate::services::accounts::Accounts;
use crate::services::gateway::urls::ServerUrls;
use crate::services::gateway::{self, Gateway};
use crate::services::keys::Keyring;
use crate::services::revocations::{ReuseCounters, RevokedGrants};
use crate::shared::destinations::Destinations;
use crate::shared::jwks::JwksCache;
use crate::shared::log_queue::AccessLog;
use crate::shared::logs::LogHub;
use crate::shared::rate_limit::{Limiter, LoginThrottle};
use crate::shared::upstream::{UpstreamClient, tls_config};
use crate::store::Store;

/// Failed logins counted over this window.
const LOGIN_WINDOW: Duration = Duration::from_secs(15 * 60);
/// Access-log entries held for the writer at most (it writes every 250 ms; at 50,000 req/s
/// a quarter second is 12,500 entries).
const ACCESS_LOG_QUEUE: usize = 65_536;

#[derive(Clone)]
pub struct Services {
    pub config: web::Data<Config>,
    pub store: web::Data<Store>,
    pub master_key: web::Data<MasterKey>,
    pub keys: web::Data<Keyring>,
    pub revoked: web::Data<RevokedGrants>,
    pub reuse: web::Data<ReuseCounters>,
    pub outbound: web::Data<Outbound>,
    pub gateway: web::Data<Gateway>,
    pub accounts: web::Data<Accounts>,
    pub deployer: web::Data<Deployer>,
    pub control: web::Data<ControlState>,
    pub oauth: web::Data<OAuthState>,
    pub started: web::Data<Started>,
}

/// What start-up has made ready for the services.
pub(super) struct Ingredients {
    pub config: Config,
    pub public_url: String,
    pub store: Store,
    pub master_key: MasterKey,
    pub keyring: Keyring,
    pub revoked: RevokedGrants,
    pub sandbox: Sandbox,
    pub outbound: Outbound,
    pub destinations: Arc<Destinations>,
}

/// What the services are made of: start-up's ingredients, and the pieces several services
/// share, each made once.
struct Common {
    config: Config,
    public_url: String,
    store: Store,
    outbound: Outbound,
    destinations: Arc<Destinations>,
    master_key: web::Data<MasterKey>,
    keys: web::Data<Keyring>,
    revoked: web::Data<RevokedGrants>,
    hub: LogHub,
    upstream_tls: Arc<rustls::ClientConfig>,
}

impl Services {
    /// Must be called within the runtime that outlives the HTTP workers (the deployer's).
    pub(super) fn build(i: Ingredients) -> Result<Self, StartupError> {
        let Ingredients {
            config,
            public_url,
            store,
            master_key,
            keyring,
            revoked,
            sandbox,
            outbound,
            destinations,
        } = i;
        let common = Common {
            master_key: web::Data::new(master_key),
            keys: web::Data::new(keyring),
            revoked: web::Data::new(revoked),
            hub: LogHub::default(),
            // Loads the system's CA certificates: once.
            upstream_tls: tls_config(),
            config,
            public_url,
            store,
            outbound,
            destinations,
        };
        let deployer = web::Data::new(common.deployer(sandbox));
        let gateway = web::Data::new(common.gateway(deployer.clone())?);
        deployer.route_through(gateway.clone().into_inner());
        Ok(common.into_services(deployer, gateway))
    }

    /// Hands each service to the handlers as its own `web::Data`.
    pub(super) fn register(&self, cfg: &mut web::ServiceConfig) {
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

    /// After a change to servers made around the control API (the tests' own rows): routing
    /// follows at once.
    pub async fn servers_changed(&self) {
        self.gateway.servers_changed().await;
    }
}

impl Common {
    /// The deployer, with an upstream client of its own for health checks.
    fn deployer(&self, sandbox: Sandbox) -> Deployer {
        let config = &self.config;
        Deployer::new(DeployerParts {
            hub: self.hub.clone(),
            sandbox,
            store: self.store.clone(),
            master_key: self.master_key.clone().into_inner(),
            config: config.deploy.clone(),
            upstream_timeout: config.gateway.upstream_timeout.0,
            health: UpstreamClient::new(
                self.upstream_tls.clone(),
                config.gateway.upstream_connect_timeout.0,
                self.destinations.clone(),
            ),
            destinations: self.destinations.clone(),
        })
    }

    /// The front door's service: routing table, token verifier, session seal, rate limit,
    /// assertions to upstreams, access log.
    fn gateway(&self, deployer: web::Data<Deployer>) -> Result<Gateway, StartupError> {
        let config = &self.config;
        Ok(Gateway {
            store: self.store.clone(),
            default_byoa: config.auth.byoa.clone(),
            urls: ServerUrls::new(
                &self.public_url,
                config.gateway.routing,
                config.gateway.server_domain.as_deref(),
            ),
            config: config.gateway.clone(),
            health_timeout: config.deploy.health_timeout.0,
            keys: self.keys.clone().into_inner(),
            hub: self.hub.clone(),
            registry: Default::default(),
            verifier: gateway::verify::Verifier::new(
                JwksCache::new(self.outbound.clone()),
                self.keys.clone().into_inner(),
                self.revoked.clone().into_inner(),
                deployer.hub.clone(),
                &self.public_url,
            ),
            deployer,
            tools: Default::default(),
            sessions: gateway::sessions::SessionSeal::new(
                self.master_key.mac_key("mcp session ids"),
            ),
            limiter: Limiter::new(config.gateway.rate_limit),
            upstream_tls: self.upstream_tls.clone(),
            destinations: self.destinations.clone(),
            assertions: gateway::assertion::Assertions::new(
                &self.master_key,
                &self.public_url,
                self.keys.current(),
            )
            .map_err(|e| StartupError::Join(e.to_string()))?,
            log: Arc::new(AccessLog::new(ACCESS_LOG_QUEUE)),
        })
    }

    /// The rest of the services, around the deployer and the gateway.
    fn into_services(self, deployer: web::Data<Deployer>, gateway: web::Data<Gateway>) -> Services {
        let config = &self.config;
        let api_limiter = Arc::new(Limiter::new(config.control.rate_limit));
        Services {
            accounts: web::Data::new(Accounts::new(
                self.store.clone(),
                LoginThrottle::new(config.control.login_attempts, LOGIN_WINDOW),
                api_limiter.clone(),
                config.auth.session_ttl.0,
                &self.public_url,
            )),
            control: web::Data::new(ControlState::new(api_limiter)),
            oauth: web::Data::new(OAuthState {
                limiter: Limiter::new(config.auth.rate_limit),
                clients: Default::default(),
                client_jwks: JwksCache::for_clients(self.outbound.clone()),
            }),
            store: web::Data::new(self.store),
            outbound: web::Data::new(self.outbound),
            config: web::Data::new(self.config),
            master_key: self.master_key,
            keys: self.keys,
            revoked: self.revoked,
            reuse: web::Data::new(ReuseCounters::default()),
            gateway,
            deployer,
            started: web::Data::new(Started(Instant::now())),
        }
    }
}
