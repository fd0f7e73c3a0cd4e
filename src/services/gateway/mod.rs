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
pub mod verify;

use std::sync::Arc;

use crate::shared::rate_limit::Limiter;

/// The front door's shared state, built once.
pub struct Gateway {
    pub registry: registry::Registry,
    pub verifier: verify::Verifier,
    pub tools: policy::ToolTable,
    pub sessions: sessions::SessionSeal,
    pub limiter: Limiter,
    /// For health checks (the front door's requests go through each worker's own
    /// [`crate::shared::upstream::UpstreamClient`]): the same client, so the same destination checks.
    pub health: crate::shared::upstream::UpstreamClient,
    /// TLS settings of the workers' upstream clients, built once.
    pub upstream_tls: Arc<rustls::ClientConfig>,
    /// Where upstream URLs may point.
    pub destinations: Arc<crate::gateway::destinations::Destinations>,
    /// `X-Ezforge-Assertion` for upstreams.
    pub assertions: assertion::Assertions,
    pub log: Arc<crate::shared::log_queue::AccessLog>,
}
