//! The deployer: the deployments in force per server, what they run, and what they use (the
//! store, the master key for env vars, the sandbox, the health-check client).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use dashmap::DashMap;

use super::error::DeployError;
use super::sandbox::{self, Sandbox};
use super::spec::Spec;
use super::target::{Target, TargetKind};
use super::{DeployRequest, Routes, process};
use crate::config::DeployConfig;
use crate::crypto::MasterKey;
use crate::domain;
use crate::domain::kinds::ServerStatus;
use crate::shared::destinations::Destinations;
use crate::shared::logs::LogHub;
use crate::shared::upstream::UpstreamClient;
use crate::store::deployments::{self, DeploymentRow};
use crate::store::{self, Store, servers::ServerRow};

/// The deployments in force, per server, and what they use.
pub struct Deployer {
    pub(super) active: DashMap<String, Arc<Target>>,
    pub(super) locks: DashMap<String, Arc<tokio::sync::Mutex<()>>>,
    /// Process time not yet added to the usage table, per server (ms).
    pub(super) compute: Mutex<HashMap<String, u64>>,
    /// Replaced targets still finishing their requests (stopped at once at shutdown).
    pub(super) draining: Mutex<Vec<Arc<Target>>>,
    pub hub: LogHub,
    /// How command deployments' programs are confined.
    pub sandbox: Arc<Sandbox>,
    /// The runtime the deployer was made on (the process's main one). Pipelines, supervisors,
    /// stdio sessions and output capture run there rather than on the HTTP worker that asked
    /// for them: workers end before [`Deployer::shutdown`], and their tasks with them, which
    /// would kill the processes' leaders outright and leave the rest of their groups running.
    pub rt: tokio::runtime::Handle,
    pub(super) store: Store,
    pub(super) master_key: Arc<MasterKey>,
    pub(super) config: DeployConfig,
    /// `gateway.upstream_timeout`: a stdio session's answer is awaited this long.
    pub(super) upstream_timeout: Duration,
    /// Health checks and probes: the front door's client, so the same destination checks.
    pub(super) health: UpstreamClient,
    pub(super) destinations: Arc<Destinations>,
    routes: OnceLock<Arc<dyn Routes>>,
}

/// What a deployer is made of (see [`Deployer::new`]).
pub struct DeployerParts {
    pub hub: LogHub,
    pub sandbox: Sandbox,
    pub store: Store,
    pub master_key: Arc<MasterKey>,
    pub config: DeployConfig,
    pub upstream_timeout: Duration,
    pub health: UpstreamClient,
    pub destinations: Arc<Destinations>,
}

/// Routing that does nothing: before [`Deployer::route_through`] (never in a running app).
struct Unrouted;

impl Routes for Unrouted {
    fn rebuild(&self) -> futures_util::future::BoxFuture<'_, ()> {
        tracing::error!("the deployer has no routing table to update");
        Box::pin(async {})
    }
    fn routed(&self) -> Vec<super::Routed> {
        Vec::new()
    }
    fn is_routed(&self, _slug: &str) -> bool {
        false
    }
}

impl Deployer {
    /// Must be called within the runtime that outlives the HTTP workers.
    pub fn new(parts: DeployerParts) -> Self {
        Self {
            sandbox: Arc::new(parts.sandbox),
            active: DashMap::new(),
            locks: DashMap::new(),
            compute: Mutex::new(HashMap::new()),
            draining: Mutex::new(Vec::new()),
            hub: parts.hub,
            rt: tokio::runtime::Handle::current(),
            store: parts.store,
            master_key: parts.master_key,
            config: parts.config,
            upstream_timeout: parts.upstream_timeout,
            health: parts.health,
            destinations: parts.destinations,
            routes: OnceLock::new(),
        }
    }

    /// The routing table to update after each swap (set once, when the app is built).
    pub fn route_through(&self, routes: Arc<dyn Routes>) {
        if self.routes.set(routes).is_err() {
            tracing::error!("the deployer's routing table was set twice");
        }
    }

    pub(super) fn routes(&self) -> &dyn Routes {
        match self.routes.get() {
            Some(r) => r.as_ref(),
            None => &Unrouted,
        }
    }

    pub fn target(&self, server_id: &str) -> Option<Arc<Target>> {
        self.active.get(server_id).map(|t| t.clone())
    }

    /// Runs the pipeline to its end, even if the caller goes away meanwhile.
    pub async fn deploy(
        self: &Arc<Self>,
        server: ServerRow,
        req: DeployRequest,
    ) -> Result<DeploymentRow, DeployError> {
        let this = self.clone();
        self.rt
            .spawn(async move { this.pipeline(server, req).await })
            .await
            .map_err(|e| DeployError::Task(e.to_string()))?
    }

    /// Stops what a server ran (deleted, or its upstream cleared).
    pub fn remove(&self, server_id: &str) {
        if let Some((_, t)) = self.active.remove(server_id) {
            t.stop();
        }
        // What it started and left running (out of its process group too), once its processes
        // had the time a stop gives them.
        if let Some(uid) = self.sandbox.server_uid(server_id) {
            self.rt.spawn(async move {
                tokio::time::sleep(process::TERM_GRACE + Duration::from_secs(1)).await;
                let _ = tokio::task::spawn_blocking(move || sandbox::users::kill_processes_of(uid))
                    .await;
            });
        }
    }

    /// Stops this server's serving process, and any draining one, that listen on `port`, and
    /// waits until they have exited. The serving one it stopped, if any.
    pub(super) async fn release_port(&self, server_id: &str, port: u16) -> Option<Arc<Target>> {
        let holds = |t: &Arc<Target>| matches!(&t.kind, TargetKind::Process(p) if p.port == port);
        let active = self.target(server_id).filter(holds);
        let draining: Vec<Arc<Target>> = self
            .draining
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|t| holds(t))
            .cloned()
            .collect();
        // SIGTERM, then SIGKILL after the grace: bounded.
        stop_all(active.iter().chain(&draining), Duration::from_secs(10)).await;
        active
    }

    /// Brings back every server's active deployment at start-up.
    pub async fn restore(&self) -> Result<(), store::StoreError> {
        let at = domain::now();
        let rows = self
            .store
            .write(move |tx| {
                let n = deployments::fail_unfinished(tx, at)?;
                store::servers::fail_provisioning(tx)?;
                if n > 0 {
                    tracing::warn!(
                        deployments = n,
                        "deployments cut short by a stop were marked failed"
                    );
                }
                let servers: HashMap<String, ServerRow> = store::servers::all(tx)?
                    .into_iter()
                    .map(|s| (s.id.clone(), s))
                    .collect();
                Ok::<_, store::StoreError>(
                    deployments::all_active(tx)?
                        .into_iter()
                        .filter_map(|d| servers.get(&d.server_id).cloned().map(|s| (s, d)))
                        .collect::<Vec<_>>(),
                )
            })
            .await?;
        let (mut restored, mut not_restored) = (Vec::new(), Vec::new());
        for (server, d) in rows {
            match self.restore_one(&server, &d).await {
                Some(t) => {
                    self.active.insert(server.id.clone(), t);
                    if server.status != ServerStatus::Running {
                        restored.push(server.id);
                    }
                }
                None => not_restored.push(server.id),
            }
        }
        // Statuses say what serves now: nothing for those not restored (rather than
        // `running`), and those a previous start could not restore serve again.
        if !not_restored.is_empty() || !restored.is_empty() {
            self.store
                .write(move |tx| {
                    for id in &not_restored {
                        store::servers::set_status(tx, id, ServerStatus::Error, None)?;
                    }
                    for id in &restored {
                        store::servers::set_status(tx, id, ServerStatus::Running, None)?;
                    }
                    Ok::<_, store::StoreError>(())
                })
                .await?;
        }
        Ok(())
    }

    /// Starts one server's active deployment again; `None` (logged) when it cannot be.
    async fn restore_one(&self, server: &ServerRow, d: &DeploymentRow) -> Option<Arc<Target>> {
        let Some(spec) = Spec::from_json(&d.target) else {
            tracing::error!(deployment = %d.id, "stored deployment target is unreadable");
            return None;
        };
        if matches!(spec, Spec::Command { .. }) && !self.config.allow_commands {
            tracing::warn!(server = %server.slug, "not restoring a command deployment: deploy.allow_commands is off");
            return None;
        }
        let Some(env) = self.open_env(&server.id, &d.id, d.env_sealed.as_deref()) else {
            tracing::error!(server = %server.slug, deployment = %d.id, "not restoring a deployment whose env vars cannot be decrypted (another master key?)");
            return None;
        };
        match self.provision(server, &d.id, &spec, env, false).await {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::error!(server = %server.slug, error = %e, "could not restore a deployment");
                None
            }
        }
    }

    /// Process time gathered since the last call, per server.
    pub fn take_compute(&self) -> HashMap<String, u64> {
        self.compute
            .lock()
            .map(|mut c| std::mem::take(&mut *c))
            .unwrap_or_default()
    }

    /// Stops every process (at shutdown) and waits for them a moment.
    pub async fn shutdown(&self) {
        let mut targets: Vec<Arc<Target>> = self.active.iter().map(|t| t.clone()).collect();
        self.active.clear();
        targets.extend(std::mem::take(
            &mut *self.draining.lock().unwrap_or_else(|e| e.into_inner()),
        ));
        stop_all(targets.iter(), Duration::from_secs(7)).await;
        let uids = self.sandbox.server_uids();
        if !uids.is_empty() {
            let _ = tokio::task::spawn_blocking(move || {
                for uid in uids {
                    sandbox::users::kill_processes_of(uid);
                }
            })
            .await;
        }
    }
}

/// Stops `targets` and waits (at most `wait`) until their processes have exited.
pub(super) async fn stop_all(targets: impl Iterator<Item = &Arc<Target>>, wait: Duration) {
    let mut waits = Vec::new();
    for t in targets {
        t.stop();
        if let TargetKind::Process(p) = &t.kind {
            let p = p.clone();
            waits.push(async move { p.exited().await });
        }
    }
    let _ = tokio::time::timeout(wait, futures_util::future::join_all(waits)).await;
}
