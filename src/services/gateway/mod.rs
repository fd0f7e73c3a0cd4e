//! The front door's service: the routing table (every server's URI, upstream, auth mode and
//! metadata), token verification, tool annotations, MCP session seals, the rate limiter, the
//! upstream assertions and the access log. Built once at start; the control API changes it
//! through its methods, the front door reads it per request.

pub mod assertion;
pub mod counters;
pub mod issuer_check;
pub mod policy;
pub mod registry;
pub mod sessions;
pub mod urls;
pub mod verify;

use std::sync::Arc;

use crate::config::ByoaConfig;
use crate::deploy::Deployer;
use crate::shared::rate_limit::Limiter;
use crate::store::{self, Store, StoreError};

/// The front door's shared state, built once.
pub struct Gateway {
    pub store: Store,
    /// Active deployments: the targets requests go to.
    pub deployer: actix_web::web::Data<Deployer>,
    /// `[auth.byoa]`: the issuer of BYOA servers without one of their own.
    pub default_byoa: Option<ByoaConfig>,
    /// Where each server lives.
    pub urls: urls::ServerUrls,
    /// `[gateway]`.
    pub config: crate::config::GatewayConfig,
    /// How long a supervised process may take to become ready (`deploy.health_timeout`).
    pub health_timeout: std::time::Duration,
    /// Signs `X-Ezforge-Assertion` (derived keys) and publishes their JWKS.
    pub keys: Arc<crate::services::keys::Keyring>,
    /// The servers' logs (access rows feed their live tails).
    pub hub: crate::shared::logs::LogHub,
    pub registry: registry::Registry,
    pub verifier: verify::Verifier,
    pub tools: policy::ToolTable,
    pub sessions: sessions::SessionSeal,
    pub limiter: Limiter,
    /// TLS settings of the workers' upstream clients, built once.
    pub upstream_tls: Arc<rustls::ClientConfig>,
    /// Where upstream URLs may point.
    pub destinations: Arc<crate::shared::destinations::Destinations>,
    /// `X-Ezforge-Assertion` for upstreams.
    pub assertions: assertion::Assertions,
    pub log: Arc<crate::shared::log_queue::AccessLog>,
}

impl Gateway {
    /// Rebuilds the routing table from `rows` (every server).
    pub fn rebuild(&self, rows: &[store::servers::ServerRow]) {
        let replaced = self.registry.replace(
            &self.urls,
            self.default_byoa.as_ref(),
            |id| self.deployer.target(id),
            rows,
        );
        // Tool annotations are the upstream's word: a new upstream, or a server gone, starts
        // from nothing again. After the swap: a learner that asked before it is undone here.
        self.tools.retain(|id| replaced.kept(id));
    }

    /// Called after any change to servers, so that in-memory routing follows at once.
    pub async fn servers_changed(&self) {
        match self.store.run(|c| store::servers::all(c)).await {
            Ok(rows) => self.rebuild(&rows),
            Err(e) => {
                let e: StoreError = e;
                tracing::error!(error = %crate::error::ErrorChain(&e), "could not reload the routing table")
            }
        }
    }
}

impl crate::deploy::Routes for Gateway {
    fn rebuild(&self) -> futures_util::future::BoxFuture<'_, ()> {
        Box::pin(self.servers_changed())
    }

    fn routed(&self) -> Vec<crate::deploy::Routed> {
        self.registry
            .all()
            .iter()
            .filter_map(|e| {
                Some(crate::deploy::Routed {
                    server_id: e.id.clone(),
                    target: e.target.clone()?,
                    auto_stop_seconds: e.auto_stop_seconds,
                })
            })
            .collect()
    }

    fn is_routed(&self, slug: &str) -> bool {
        self.registry.get(slug).is_some_and(|e| e.target.is_some())
    }
}
