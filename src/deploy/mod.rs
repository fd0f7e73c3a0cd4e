//! Deployments: what a server's URL routes to, and the pipeline that changes it — provision
//! (start the process), health check, atomic traffic swap (requests already running finish
//! on the old target), cleanup (the old process stops once drained). A failed step leaves
//! the previous deployment serving unless the server (or the request) turned rollback off.

mod diagnose;
pub mod health;
pub mod process;
pub mod sandbox;
mod spec;
pub mod stdio;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::web;
use dashmap::DashMap;
use serde_json::{Value, json};
use url::Url;

use crate::app::AppState;
use crate::domain::{self, Secret};
use crate::error::ApiError;
use crate::gateway::upstream::Endpoint;
use crate::logs::LogHub;
use crate::shared::destinations::PortGuard;
use crate::store::deployments::{self, DeploymentRow};
use crate::store::{self, servers::ServerRow};

use self::process::{Launch, ProcState, Supervisor};
use self::sandbox::Sandbox;
pub use self::spec::{DeployBody, Spec, Transport};
use self::stdio::StdioPool;

/// Where requests for a server go.
pub enum TargetKind {
    Url(Box<Endpoint>),
    /// An HTTP MCP server process we supervise.
    Process(Arc<Supervisor>),
    /// A stdio MCP server, one process per session.
    Stdio(Arc<StdioPool>),
}

pub struct Target {
    pub kind: TargetKind,
    /// The deployment it belongs to (`None` for a server declared in the config file).
    pub deployment_id: Option<String>,
    /// Why an upstream URL could not be reached at its last probe (`None`: it could).
    unreachable: Mutex<Option<String>>,
    inflight: AtomicUsize,
    /// A supervised process's port, refused as an upstream destination while this target lives.
    _port: Option<PortGuard>,
}

/// Marks a request (or a response stream) as running on a target until dropped.
pub struct InFlight(Arc<Target>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Relaxed);
    }
}

impl Target {
    pub fn new(kind: TargetKind, deployment_id: Option<&str>) -> Arc<Self> {
        Self::holding(kind, deployment_id, None)
    }

    fn holding(
        kind: TargetKind,
        deployment_id: Option<&str>,
        port: Option<PortGuard>,
    ) -> Arc<Self> {
        Arc::new(Self {
            kind,
            deployment_id: deployment_id.map(str::to_owned),
            unreachable: Mutex::new(None),
            inflight: AtomicUsize::new(0),
            _port: port,
        })
    }

    /// Why its upstream URL could not be reached at the last probe.
    pub fn unreachable(&self) -> Option<String> {
        self.unreachable
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Records a probe's outcome; `true` when it changed.
    fn set_unreachable(&self, why: Option<String>) -> bool {
        let mut now = self.unreachable.lock().unwrap_or_else(|e| e.into_inner());
        let changed = now.is_some() != why.is_some();
        *now = why;
        changed
    }

    pub fn enter(self: &Arc<Self>) -> InFlight {
        self.inflight.fetch_add(1, Relaxed);
        InFlight(self.clone())
    }

    pub fn inflight(&self) -> usize {
        self.inflight.load(Relaxed)
    }

    fn stop(&self) {
        match &self.kind {
            TargetKind::Url(_) => {}
            TargetKind::Process(p) => p.shutdown(),
            TargetKind::Stdio(p) => p.shutdown(),
        }
    }

    /// The process part of the server object (`null` for a URL).
    pub fn process_json(&self) -> Value {
        match &self.kind {
            TargetKind::Url(_) => Value::Null,
            TargetKind::Process(p) => {
                let state = p.state();
                let (pid, since) = match &state {
                    ProcState::Running { pid, since_ms } => (Some(*pid), Some(*since_ms)),
                    _ => (None, None),
                };
                let exposed: Vec<String> = p.exposed().iter().map(ToString::to_string).collect();
                json!({
                    "state": state.name(),
                    "pid": pid,
                    "restarts": p.restarts.load(Relaxed),
                    "startedAt": since.map(domain::rfc3339_ms),
                    "sessions": null,
                    "exposedOn": exposed,
                })
            }
            TargetKind::Stdio(p) => {
                let n = p.session_count();
                json!({
                    "state": if n > 0 { "running" } else { "stopped" },
                    "pid": null, "restarts": 0, "startedAt": null, "sessions": n,
                    "exposedOn": [],
                })
            }
        }
    }

    /// The server status this target implies, where it says more than the stored one.
    pub fn status_override(&self) -> Option<&'static str> {
        match &self.kind {
            TargetKind::Url(_) if self.unreachable().is_some() => Some("unreachable"),
            TargetKind::Process(p) => match p.state() {
                ProcState::Stopped | ProcState::Exited => Some("stopped"),
                ProcState::Backoff { .. } => Some("error"),
                // Reachable around the front door.
                ProcState::Running { .. } if !p.exposed().is_empty() => Some("error"),
                _ => None,
            },
            _ => None,
        }
    }
}

/// The deployments in force, per server, and what they use.
pub struct Deployer {
    active: DashMap<String, Arc<Target>>,
    locks: DashMap<String, Arc<tokio::sync::Mutex<()>>>,
    /// Process time not yet added to the usage table, per server (ms).
    compute: Mutex<HashMap<String, u64>>,
    /// Replaced targets still finishing their requests (stopped at once at shutdown).
    draining: Mutex<Vec<Arc<Target>>>,
    pub hub: LogHub,
    /// How command deployments' programs are confined.
    pub sandbox: Arc<Sandbox>,
    /// The runtime the deployer was made on (the process's main one). Pipelines, supervisors,
    /// stdio sessions and output capture run there rather than on the HTTP worker that asked
    /// for them: workers end before [`Deployer::shutdown`], and their tasks with them, which
    /// would kill the processes' leaders outright and leave the rest of their groups running.
    pub rt: tokio::runtime::Handle,
}

/// What to deploy, and how.
pub struct DeployRequest {
    pub spec: Spec,
    pub label: Option<String>,
    /// `deploy` or `rollback`.
    pub kind: &'static str,
    /// Keep the previous deployment when the new one fails its health check.
    pub rollback: bool,
    /// Run the health check (an `upstreamUrl` set on the server itself is taken as is).
    pub check: bool,
}

impl Deployer {
    /// Must be called within the runtime that outlives the HTTP workers.
    pub fn new(hub: LogHub, sandbox: Sandbox) -> Self {
        Self {
            sandbox: Arc::new(sandbox),
            active: DashMap::new(),
            locks: DashMap::new(),
            compute: Mutex::new(HashMap::new()),
            draining: Mutex::new(Vec::new()),
            hub,
            rt: tokio::runtime::Handle::current(),
        }
    }

    pub fn target(&self, server_id: &str) -> Option<Arc<Target>> {
        self.active.get(server_id).map(|t| t.clone())
    }

    /// Runs the pipeline to its end, even if the caller goes away meanwhile.
    pub async fn deploy(
        state: &web::Data<AppState>,
        server: ServerRow,
        req: DeployRequest,
    ) -> Result<DeploymentRow, ApiError> {
        let st = state.clone();
        state
            .deployer
            .rt
            .spawn(async move { pipeline(&st, server, req).await })
            .await
            .map_err(|e| ApiError::Internal(anyhow::anyhow!("deployment task failed: {e}")))?
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
    async fn release_port(&self, server_id: &str, port: u16) -> Option<Arc<Target>> {
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
    pub async fn restore(state: &web::Data<AppState>) -> Result<(), store::StoreError> {
        let at = domain::now();
        let rows = state
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
            let Some(spec) = Spec::from_json(&d.target) else {
                tracing::error!(deployment = %d.id, "stored deployment target is unreadable");
                not_restored.push(server.id);
                continue;
            };
            if matches!(spec, Spec::Command { .. }) && !state.config.deploy.allow_commands {
                tracing::warn!(server = %server.slug, "not restoring a command deployment: deploy.allow_commands is off");
                not_restored.push(server.id);
                continue;
            }
            let Some(env) = open_env(state, &server.id, &d.id, d.env_sealed.as_deref()) else {
                tracing::error!(server = %server.slug, deployment = %d.id, "not restoring a deployment whose env vars cannot be decrypted (another master key?)");
                not_restored.push(server.id);
                continue;
            };
            match provision(state, &server, &d.id, &spec, env, false).await {
                Ok(t) => {
                    state.deployer.active.insert(server.id.clone(), t);
                    if server.status != "running" {
                        restored.push(server.id);
                    }
                }
                Err(e) => {
                    tracing::error!(server = %server.slug, error = %e, "could not restore a deployment");
                    not_restored.push(server.id);
                }
            }
        }
        // Statuses say what serves now: nothing for those not restored (rather than
        // `running`), and those a previous start could not restore serve again.
        if !not_restored.is_empty() || !restored.is_empty() {
            state
                .store
                .write(move |tx| {
                    for id in &not_restored {
                        store::servers::set_status(tx, id, "error", None)?;
                    }
                    for id in &restored {
                        store::servers::set_status(tx, id, "running", None)?;
                    }
                    Ok::<_, store::StoreError>(())
                })
                .await?;
        }
        Ok(())
    }

    /// Every second: stops idle processes and idle stdio sessions, and counts process time.
    pub fn tick(&self, state: &AppState, elapsed: Duration) {
        let ms = elapsed.as_millis() as u64;
        let mut used: Vec<(String, u64)> = Vec::new();
        for entry in state.gateway.registry.all() {
            let Some(target) = &entry.target else {
                continue;
            };
            match &target.kind {
                TargetKind::Url(_) => {}
                TargetKind::Process(p) => {
                    if matches!(p.state(), ProcState::Running { .. }) {
                        used.push((entry.id.clone(), ms));
                        if let Some(secs) = entry.auto_stop_seconds
                            && target.inflight() == 0
                            && p.idle_ms() >= secs.saturating_mul(1000)
                        {
                            p.idle_stop();
                        }
                    }
                }
                TargetKind::Stdio(p) => {
                    let n = p.reap() as u64;
                    if n > 0 {
                        used.push((entry.id.clone(), n * ms));
                    }
                }
            }
        }
        if !used.is_empty()
            && let Ok(mut c) = self.compute.lock()
        {
            for (id, ms) in used {
                *c.entry(id).or_default() += ms;
            }
        }
    }

    /// Tries a connection to every upstream URL (light: TCP and TLS, nothing sent), and
    /// records which cannot be reached and why; the server's log says when that changes.
    pub async fn probe_upstreams(&self, state: &AppState) {
        let urls: Vec<(String, Arc<Target>)> = state
            .gateway
            .registry
            .all()
            .iter()
            .filter_map(|e| {
                let t = e.target.clone()?;
                matches!(t.kind, TargetKind::Url(_)).then(|| (e.id.clone(), t))
            })
            .collect();
        let probes = urls.iter().map(|(id, t)| self.probe(state, id, t));
        futures_util::future::join_all(probes).await;
    }

    /// One upstream URL's probe (see [`Deployer::probe_upstreams`]).
    async fn probe(&self, state: &AppState, server_id: &str, t: &Target) {
        let TargetKind::Url(ep) = &t.kind else {
            return;
        };
        let why = state
            .gateway
            .health
            .probe(ep)
            .await
            .err()
            .map(|e| e.to_string());
        if t.set_unreachable(why.clone()) {
            let (level, message) = match why {
                Some(w) => (
                    "error",
                    format!("the upstream {} cannot be reached: {w}", ep.url()),
                ),
                None => (
                    "info",
                    format!("the upstream {} can be reached again", ep.url()),
                ),
            };
            self.hub.write(server_id, level, "deploy", message);
        }
    }

    /// Finds supervised processes listening beyond loopback (see [`sandbox::exposure`]).
    pub async fn check_exposure(&self, state: &AppState) {
        use sandbox::exposure::{self, Owner};
        let running: Vec<(Arc<Supervisor>, Owner)> = state
            .gateway
            .registry
            .all()
            .iter()
            .filter_map(|e| match e.target.as_deref().map(|t| &t.kind) {
                Some(TargetKind::Process(p)) => match p.state() {
                    ProcState::Running { pid, .. } => {
                        let owner = self
                            .sandbox
                            .server_uid(&e.id)
                            .map_or(Owner::Group(pid), Owner::Uid);
                        Some((p.clone(), owner))
                    }
                    _ => None,
                },
                _ => None,
            })
            .collect();
        if running.is_empty() {
            return;
        }
        let found = tokio::task::spawn_blocking(move || {
            let all = exposure::listeners();
            running
                .into_iter()
                .map(|(p, owner)| {
                    let exposed = exposure::exposed(&all, owner, p.port);
                    (p, exposed)
                })
                .collect::<Vec<_>>()
        })
        .await;
        for (p, exposed) in found.unwrap_or_default() {
            p.set_exposed(exposed);
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
async fn stop_all(targets: impl Iterator<Item = &Arc<Target>>, wait: Duration) {
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

/// `env` without the names that make programs load code ([`domain::env_rules`]): stored before
/// those were refused, or sealed into a deployment made before. Each one left out is logged.
fn injectable(
    state: &AppState,
    server_id: &str,
    env: Vec<(String, Secret)>,
) -> Vec<(String, Secret)> {
    env.into_iter()
        .filter(|(name, _)| match domain::env_rules::refusal(name) {
            None => true,
            Some(why) => {
                state.deployer.hub.write(
                    server_id,
                    "warn",
                    "deploy",
                    format!("env var not passed to the process: {why}; delete it"),
                );
                false
            }
        })
        .collect()
}

/// The server's env vars, decrypted, without refused names.
async fn load_env(
    state: &web::Data<AppState>,
    server_id: &str,
) -> Result<Vec<(String, Secret)>, ApiError> {
    let sid = server_id.to_owned();
    let sealed = state
        .store
        .run(move |c| store::env_vars::sealed_values(c, &sid))
        .await?;
    let mut out = Vec::with_capacity(sealed.len());
    for (name, value) in sealed {
        let plain = state
            .master_key
            .open(&value, &crate::control::env::seal_context(server_id, &name))
            .map_err(|_| {
                ApiError::Internal(anyhow::anyhow!(
                    "env var {name} cannot be decrypted with this master key"
                ))
            })?;
        out.push((
            name,
            Secret::new(String::from_utf8_lossy(&plain).into_owned()),
        ));
    }
    Ok(injectable(state, server_id, out))
}

fn env_context(deployment_id: &str) -> String {
    format!("deployment-env:{deployment_id}")
}

fn seal_env(state: &AppState, deployment_id: &str, env: &[(String, Secret)]) -> Option<String> {
    if env.is_empty() {
        return None;
    }
    let map: HashMap<&str, &str> = env.iter().map(|(k, v)| (k.as_str(), v.expose())).collect();
    let plain = serde_json::to_vec(&map).ok()?;
    Some(state.master_key.seal(&plain, &env_context(deployment_id)))
}

/// A deployment's env vars as deployed, without refused names; `None` when they cannot be
/// opened (the process must not start without them).
fn open_env(
    state: &AppState,
    server_id: &str,
    deployment_id: &str,
    sealed: Option<&str>,
) -> Option<Vec<(String, Secret)>> {
    let Some(sealed) = sealed else {
        return Some(Vec::new());
    };
    let plain = state
        .master_key
        .open(sealed, &env_context(deployment_id))
        .ok()?;
    let map: HashMap<String, String> = serde_json::from_slice(&plain).ok()?;
    let mut env: Vec<(String, Secret)> =
        map.into_iter().map(|(k, v)| (k, Secret::new(v))).collect();
    env.sort_by(|a, b| a.0.cmp(&b.0));
    Some(injectable(state, server_id, env))
}

/// Starts what `spec` needs. `first`: a new deployment, which fails at the process's first
/// exit; a restored one is left to its supervisor.
async fn provision(
    state: &web::Data<AppState>,
    server: &ServerRow,
    deployment_id: &str,
    spec: &Spec,
    env: Vec<(String, Secret)>,
    first: bool,
) -> Result<Arc<Target>, String> {
    let id = Some(deployment_id);
    let (command, transport, port) = match spec {
        Spec::Upstream { upstream_url } => {
            let url = Url::parse(upstream_url).map_err(|e| format!("bad upstream URL: {e}"))?;
            // Also for one stored before the policy refused it (a rollback, a restart).
            state
                .gateway
                .destinations
                .check_url(&url)
                .map_err(|e| format!("the upstream URL is refused: {e}"))?;
            let endpoint = Endpoint::new(url).ok_or("the upstream URL must be http or https")?;
            return Ok(Target::new(TargetKind::Url(Box::new(endpoint)), id));
        }
        Spec::Command {
            command,
            transport,
            port,
        } => (command, *transport, *port),
    };
    let sandbox = state.deployer.sandbox.clone();
    let sid = server.id.clone();
    let (dirs, confinement) = tokio::task::spawn_blocking(move || sandbox.prepare(&sid))
        .await
        .map_err(|e| format!("could not prepare the sandbox: {e}"))??;
    let config = &state.config.deploy;
    let launch = Launch {
        server_id: server.id.clone(),
        command: command.clone(),
        env,
        dirs,
        confinement: confinement.map(Arc::new),
        hub: state.deployer.hub.clone(),
        lines_per_second: config.output_lines_per_second,
        tail: Default::default(),
        rt: state.deployer.rt.clone(),
    };
    match transport {
        Transport::Http => {
            let port = match port {
                // Its health check must not be answered by whatever else listens there.
                Some(p) => {
                    // A version stopped for it may leave members of its group dying a moment
                    // longer: wait for the port a little.
                    let mut tries = 0;
                    loop {
                        match std::net::TcpListener::bind(("127.0.0.1", p)) {
                            Ok(_) => break p,
                            Err(_) if tries < 20 => {
                                tries += 1;
                                tokio::time::sleep(Duration::from_millis(100)).await;
                            }
                            Err(e) => return Err(format!("port {p} is not free: {e}")),
                        }
                    }
                }
                None => process::free_port().map_err(|e| format!("no free port: {e}"))?,
            };
            let guard = state.gateway.destinations.reserve(port);
            launch.log(
                "info",
                format!(
                    "starting the process; waiting up to {} for it to accept connections on 127.0.0.1:{port}",
                    humantime::format_duration(config.health_timeout.0)
                ),
            );
            let started = Instant::now();
            let sup = Supervisor::start(launch, port, config.health_timeout.0);
            if first {
                if let Err(e) = sup.ready(config.health_timeout.0, true).await {
                    // Gone before this returns: a fixed port must be free for whoever is next.
                    sup.shutdown();
                    let _ = tokio::time::timeout(Duration::from_secs(10), sup.exited()).await;
                    let output = sup.launch.last_output();
                    return Err(diagnose::explain(&e, transport, Some(port), &output));
                }
                sup.launch.log(
                    "info",
                    format!(
                        "the process accepts connections ({} ms)",
                        started.elapsed().as_millis()
                    ),
                );
            }
            Ok(Target::holding(TargetKind::Process(sup), id, Some(guard)))
        }
        Transport::Stdio => {
            let idle = server
                .auto_stop_seconds
                .map_or(config.stdio_idle_timeout.0, |s| {
                    Duration::from_secs(s as u64)
                });
            let pool = StdioPool::new(
                launch,
                config.max_stdio_sessions,
                idle,
                state.config.gateway.upstream_timeout.0,
            );
            Ok(Target::new(TargetKind::Stdio(pool), id))
        }
    }
}

async fn check(state: &AppState, server: &ServerRow, target: &Target) -> Result<(), String> {
    let timeout = state.config.deploy.health_timeout.0;
    let path = server.health_check_path.as_deref();
    let client = &state.gateway.health;
    let log = |m: String| state.deployer.hub.write(&server.id, "info", "deploy", m);
    log(match path {
        Some(p) => format!("health check: GET {p}"),
        None => "health check: MCP initialize and ping".into(),
    });
    let result = match &target.kind {
        TargetKind::Url(u) => health::check(client, u, path, timeout).await,
        TargetKind::Process(p) => health::check(client, &p.url, path, timeout)
            .await
            .map_err(|e| {
                diagnose::explain(&e, Transport::Http, Some(p.port), &p.launch.last_output())
            }),
        TargetKind::Stdio(p) => p
            .probe(timeout)
            .await
            .map_err(|e| diagnose::explain(&e, Transport::Stdio, None, &p.launch_output())),
    };
    if result.is_ok() {
        log("health check passed".into());
    }
    result
}

async fn pipeline(
    state: &web::Data<AppState>,
    server: ServerRow,
    req: DeployRequest,
) -> Result<DeploymentRow, ApiError> {
    let deployer = &state.deployer;
    let lock = deployer.locks.entry(server.id.clone()).or_default().clone();
    // API deployments refuse to queue; a server's own upstreamUrl change waits its turn.
    let _guard = if req.check {
        lock.try_lock_owned().map_err(|_| {
            ApiError::Conflict(format!(
                "a deployment of {} is in progress; retry when it has finished",
                server.slug
            ))
        })?
    } else {
        lock.lock_owned().await
    };
    let id = domain::new_id("dep_");
    let env = load_env(state, &server.id).await?;
    let had_target = state
        .gateway
        .registry
        .get(&server.slug)
        .is_some_and(|e| e.target.is_some());
    let mut row = DeploymentRow {
        id: id.clone(),
        server_id: server.id.clone(),
        version: 0,
        label: req.label.clone(),
        kind: req.kind.to_owned(),
        target: req.spec.to_json(),
        status: "building".into(),
        active: false,
        error_message: None,
        env_sealed: seal_env(state, &id, &env),
        created_at: domain::now(),
        finished_at: None,
    };
    row = state
        .store
        .write(move |tx| {
            if store::servers::find(tx, &row.server_id)?.is_none() {
                return Err(ApiError::NotFound(
                    "the server was deleted before the deployment began".into(),
                ));
            }
            row.version = deployments::next_version(tx, &row.server_id)?;
            deployments::insert(tx, &row)?;
            if !had_target {
                store::servers::set_status(tx, &row.server_id, "provisioning", None)?;
            }
            Ok::<_, ApiError>(row)
        })
        .await?;
    let version = row.version;
    let log = |level: &'static str, m: String| deployer.hub.write(&server.id, level, "deploy", m);
    log(
        "info",
        format!("deployment v{version} started: {}", req.spec.describe()),
    );
    let started = Instant::now();
    // A fixed port is held by the version serving now: it stops first (the server answers 503
    // until the new one is up) and starts again if the new one fails with rollback on.
    let stopped = match req.spec.fixed_port() {
        Some(port) => deployer.release_port(&server.id, port).await,
        None => None,
    };
    if stopped.is_some() {
        log(
            "info",
            "the previous deployment was stopped first: it holds the fixed port".into(),
        );
    }

    let provisioned = provision(state, &server, &id, &req.spec, env, true).await;
    let (target, failure) = match provisioned {
        Err(e) => (None, Some(format!("provision failed: {e}"))),
        Ok(t) if req.check => match check(state, &server, &t).await {
            Ok(()) => (Some(t), None),
            Err(e) => (Some(t), Some(format!("health check failed: {e}"))),
        },
        Ok(t) => (Some(t), None),
    };
    let swap = match (&target, &failure) {
        (Some(_), None) => true,
        // Rollback off: the new version takes over even though its check failed.
        (Some(_), Some(_)) => !req.rollback,
        (None, _) => false,
    };
    let status = if failure.is_some() {
        "failed"
    } else {
        "running"
    };
    let server_status = match (swap, &failure) {
        (true, None) => Some("running"),
        (true, Some(_)) => Some("error"),
        (false, _) if had_target => None,
        (false, _) => Some("error"),
    };
    let upstream_url = match &req.spec {
        Spec::Upstream { upstream_url } if swap => Some(upstream_url.clone()),
        _ => None,
    };
    let (sid, did, kind, err) = (server.id.clone(), id.clone(), req.kind, failure.clone());
    let retention = server.retention_count;
    let written = state
        .store
        .write(move |tx| {
            if swap {
                let previous = deployments::activate(tx, &sid, &did)?;
                if kind == "rollback"
                    && let Some(p) = &previous
                {
                    deployments::set_status(tx, p, "rolled_back")?;
                }
            }
            deployments::finish(tx, &did, status, err.as_deref(), domain::now())?;
            if let Some(s) = server_status {
                store::servers::set_status(tx, &sid, s, swap.then_some(upstream_url.as_deref()))?;
            }
            deployments::prune(tx, &sid, retention)?;
            let row = deployments::find(tx, &sid, Some(&did), None)?;
            Ok::<_, ApiError>(row)
        })
        .await;
    let row = match written {
        Ok(Some(row)) => row,
        Ok(None) | Err(_) => {
            stop_all(target.iter(), Duration::from_secs(10)).await;
            if written.is_err() {
                // At least the row should not stay `building` (nor the server `provisioning`):
                // one more try, which may fail for the same reason.
                let (sid, did) = (server.id.clone(), id.clone());
                let _ = state
                    .store
                    .write(move |tx| {
                        deployments::finish(
                            tx,
                            &did,
                            "failed",
                            Some("the deployment's outcome could not be stored"),
                            domain::now(),
                        )?;
                        if !had_target {
                            store::servers::set_status(tx, &sid, "error", None)?;
                        }
                        Ok::<_, store::StoreError>(())
                    })
                    .await;
            }
            // The store refused the outcome: the version stopped for the port serves again.
            if let (Some(old), Err(_)) = (&stopped, &written) {
                restart(state, &server, old).await;
            }
            return Err(written.err().unwrap_or_else(|| {
                ApiError::NotFound("the server was deleted during the deployment".into())
            }));
        }
    };
    let took = started.elapsed().as_millis();
    match (&failure, swap) {
        (None, _) => log(
            "info",
            format!("deployment v{version} is serving ({took} ms)"),
        ),
        (Some(f), true) => log(
            "error",
            format!("deployment v{version} failed ({f}); serving it anyway: rollback is off"),
        ),
        (Some(f), false) => log(
            "error",
            format!(
                "deployment v{version} failed: {f}; {}",
                if stopped.is_some() {
                    "starting the previous deployment again"
                } else if had_target {
                    "the previous deployment keeps serving"
                } else {
                    "nothing to serve"
                }
            ),
        ),
    }
    if let (Some(old), false) = (&stopped, swap) {
        // The new version may hold the port (it listens, but failed its check): it goes first.
        stop_all(target.iter(), Duration::from_secs(10)).await;
        restart(state, &server, old).await;
    }
    if let Some(t) = target {
        if swap {
            if !req.check && matches!(t.kind, TargetKind::Url(_)) {
                // Taken without a health check: whether it can be reached is known at once.
                let (st, sid, probed) = (state.clone(), server.id.clone(), t.clone());
                state.deployer.rt.spawn(async move {
                    st.deployer.probe(&st, &sid, &probed).await;
                });
            }
            let old = install(state, &server.id, t).await;
            if let Some(old) = old {
                deployer
                    .draining
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(old.clone());
                let st = state.clone();
                tokio::spawn(async move {
                    drain(&old, st.config.deploy.drain_timeout.0).await;
                    st.deployer
                        .draining
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .retain(|t| !Arc::ptr_eq(t, &old));
                });
            }
        } else {
            t.stop();
        }
    } else if server_status.is_some() {
        state.servers_changed().await;
    }
    Ok(row)
}

/// Makes `t` the server's target; the one it replaces, if any.
async fn install(
    state: &web::Data<AppState>,
    server_id: &str,
    t: Arc<Target>,
) -> Option<Arc<Target>> {
    let deployer = &state.deployer;
    let old = deployer.active.insert(server_id.to_owned(), t);
    // A delete of the server that committed meanwhile has looked for its target before this
    // one was in place: stop it here (one that commits later finds it).
    let sid = server_id.to_owned();
    if let Ok(None) = state
        .store
        .run(move |c| store::servers::find(c, &sid))
        .await
    {
        deployer.remove(server_id);
    }
    state.servers_changed().await;
    old
}

/// Starts again a deployment that was stopped to free its fixed port for a successor that
/// failed. If it cannot start either, the server is marked `error`.
async fn restart(state: &web::Data<AppState>, server: &ServerRow, old: &Target) {
    let log =
        |level: &'static str, m: String| state.deployer.hub.write(&server.id, level, "deploy", m);
    let Some(did) = old.deployment_id.clone() else {
        return;
    };
    let sid = server.id.clone();
    let row = state
        .store
        .run(move |c| deployments::find(c, &sid, Some(&did), None))
        .await;
    let started = match row {
        Ok(Some(d)) => match (
            Spec::from_json(&d.target),
            open_env(state, &server.id, &d.id, d.env_sealed.as_deref()),
        ) {
            (Some(spec), Some(env)) => provision(state, server, &d.id, &spec, env, true)
                .await
                .map(|t| (t, d.version)),
            _ => Err("its stored target or env vars cannot be read".into()),
        },
        Ok(None) => Err("it no longer exists".into()),
        Err(e) => Err(e.to_string()),
    };
    match started {
        Ok((t, v)) => {
            install(state, &server.id, t).await;
            log("info", format!("deployment v{v} is serving again"));
        }
        Err(e) => {
            log(
                "error",
                format!("the previous deployment could not be started again: {e}"),
            );
            let sid = server.id.clone();
            let _ = state
                .store
                .write(move |tx| store::servers::set_status(tx, &sid, "error", None))
                .await;
            state.servers_changed().await;
        }
    }
}

/// Stops a replaced target once the requests still on it have finished (or after `timeout`).
async fn drain(old: &Target, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while old.inflight() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    old.stop();
}
