//! Deployments: what a server's URL routes to, and the pipeline that changes it — provision
//! (start the process), health check, atomic traffic swap (requests already running finish
//! on the old target), cleanup (the old process stops once drained). A failed step leaves
//! the previous deployment serving unless the server (or the request) turned rollback off.
//!
//! The deployer holds the active targets; the routing table (the gateway service) holds them
//! too, for the front door, and is told to route again through [`Routes`] after every swap.

mod deployer;
mod diagnose;
mod env;
mod error;
pub mod health;
mod pipeline;
pub mod process;
mod provision;
pub mod sandbox;
mod signals;
mod spec;
pub mod stdio;
mod target;
mod ticks;

use std::sync::Arc;

use futures_util::future::BoxFuture;

use crate::domain::kinds::DeploymentKind;

pub use self::deployer::{Deployer, DeployerParts};
pub use self::error::DeployError;
pub use self::spec::{DeployBody, Spec, Transport};
pub use self::target::{InFlight, Target, TargetKind};

/// What to deploy, and how.
pub struct DeployRequest {
    pub spec: Spec,
    pub label: Option<String>,
    pub kind: DeploymentKind,
    /// Keep the previous deployment when the new one fails its health check.
    pub rollback: bool,
    /// Run the health check (an `upstreamUrl` set on the server itself is taken as is).
    pub check: bool,
}

/// What the deployer needs of the routing table, which holds every server's target (the
/// deployments' and the servers' own upstream URLs).
pub trait Routes: Send + Sync {
    /// Routes every server to its current target again (after a swap, or a status change).
    fn rebuild(&self) -> BoxFuture<'_, ()>;
    /// Every routed server's target.
    fn routed(&self) -> Vec<Routed>;
    /// Whether requests for the server go anywhere now.
    fn is_routed(&self, slug: &str) -> bool;
}

/// A server as routed now.
pub struct Routed {
    pub server_id: String,
    pub target: Arc<Target>,
    /// Stop its process after this long without requests.
    pub auto_stop_seconds: Option<i64>,
}
