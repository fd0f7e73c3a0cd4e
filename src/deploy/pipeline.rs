//! One deployment, start to end: begin (its row, its env vars, the fixed port freed), attempt
//! (provision and health check), record (the outcome, in one transaction), then finish (the
//! swap, the old target drained; or the previous one serving on).

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::deployer::stop_all;
use super::error::DeployError;
use super::spec::Spec;
use super::target::{Target, TargetKind};
use super::{DeployRequest, Deployer};
use crate::domain::kinds::{DeploymentKind, DeploymentStatus, ServerStatus};
use crate::domain::{self, Secret};
use crate::store::deployments::{self, DeploymentRow};
use crate::store::{self, servers::ServerRow};

/// A deployment under way.
struct Run {
    server: ServerRow,
    req: DeployRequest,
    id: String,
    version: i64,
    /// Requests for the server went somewhere before.
    had_target: bool,
    /// The version serving before, stopped to free the fixed port this one wants.
    stopped: Option<Arc<Target>>,
    started: Instant,
}

/// What the attempt gave.
struct Outcome {
    target: Option<Arc<Target>>,
    failure: Option<String>,
    /// The new target takes the traffic.
    swap: bool,
    /// The server's status to store (`None`: unchanged).
    server_status: Option<ServerStatus>,
}

impl Run {
    fn log(&self, deployer: &Deployer, level: &'static str, m: String) {
        deployer.hub.write(&self.server.id, level, "deploy", m);
    }
}

impl Deployer {
    pub(super) async fn pipeline(
        self: &Arc<Self>,
        server: ServerRow,
        req: DeployRequest,
    ) -> Result<DeploymentRow, DeployError> {
        let lock = self.locks.entry(server.id.clone()).or_default().clone();
        // API deployments refuse to queue; a server's own upstreamUrl change waits its turn.
        let _guard = if req.check {
            lock.try_lock_owned()
                .map_err(|_| DeployError::Busy(server.slug.clone()))?
        } else {
            lock.lock_owned().await
        };
        let (run, env) = self.begin(server, req).await?;
        let outcome = self.attempt(&run, env).await;
        match self.record(&run, &outcome).await {
            Ok(Some(row)) => {
                self.finish(&run, outcome).await;
                Ok(row)
            }
            Ok(None) => {
                stop_all(outcome.target.iter(), Duration::from_secs(10)).await;
                Err(DeployError::DeletedDuring)
            }
            Err(e) => {
                stop_all(outcome.target.iter(), Duration::from_secs(10)).await;
                self.record_failure(&run).await;
                // The store refused the outcome: the version stopped for the port serves again.
                if let Some(old) = &run.stopped {
                    self.restart(&run.server, old).await;
                }
                Err(e)
            }
        }
    }

    /// The deployment's row (`building`), its env vars, and the fixed port it wants freed.
    async fn begin(
        &self,
        server: ServerRow,
        req: DeployRequest,
    ) -> Result<(Run, Vec<(String, Secret)>), DeployError> {
        let id = domain::new_id("dep_");
        let env = self.load_env(&server.id).await?;
        let had_target = self.routes().is_routed(&server.slug);
        let mut row = DeploymentRow {
            id: id.clone(),
            server_id: server.id.clone(),
            version: 0,
            label: req.label.clone(),
            kind: req.kind,
            target: req.spec.to_json(),
            status: DeploymentStatus::Building,
            active: false,
            error_message: None,
            env_sealed: self.seal_env(&id, &env),
            created_at: domain::now(),
            finished_at: None,
        };
        row = self
            .store
            .write(move |tx| {
                if store::servers::find(tx, &row.server_id)?.is_none() {
                    return Err(DeployError::DeletedBefore);
                }
                row.version = deployments::next_version(tx, &row.server_id)?;
                deployments::insert(tx, &row)?;
                if !had_target {
                    store::servers::set_status(
                        tx,
                        &row.server_id,
                        ServerStatus::Provisioning,
                        None,
                    )?;
                }
                Ok(row)
            })
            .await?;
        let mut run = Run {
            server,
            req,
            id,
            version: row.version,
            had_target,
            stopped: None,
            started: Instant::now(),
        };
        let started = format!(
            "deployment v{} started: {}",
            run.version,
            run.req.spec.describe()
        );
        run.log(self, "info", started);
        // A fixed port is held by the version serving now: it stops first (the server answers
        // 503 until the new one is up) and starts again if the new one fails with rollback on.
        if let Some(port) = run.req.spec.fixed_port() {
            run.stopped = self.release_port(&run.server.id, port).await;
        }
        if run.stopped.is_some() {
            let m = "the previous deployment was stopped first: it holds the fixed port";
            run.log(self, "info", m.into());
        }
        Ok((run, env))
    }

    /// Provision and health check, and what follows from them.
    async fn attempt(&self, run: &Run, env: Vec<(String, Secret)>) -> Outcome {
        let provisioned = self
            .provision(&run.server, &run.id, &run.req.spec, env, true)
            .await;
        let (target, failure) = match provisioned {
            Err(e) => (None, Some(format!("provision failed: {e}"))),
            Ok(t) if run.req.check => match self.check(&run.server, &t).await {
                Ok(()) => (Some(t), None),
                Err(e) => (Some(t), Some(format!("health check failed: {e}"))),
            },
            Ok(t) => (Some(t), None),
        };
        let swap = match (&target, &failure) {
            (Some(_), None) => true,
            // Rollback off: the new version takes over even though its check failed.
            (Some(_), Some(_)) => !run.req.rollback,
            (None, _) => false,
        };
        let server_status = match (swap, &failure) {
            (true, None) => Some(ServerStatus::Running),
            (true, Some(_)) => Some(ServerStatus::Error),
            (false, _) if run.had_target => None,
            (false, _) => Some(ServerStatus::Error),
        };
        Outcome {
            target,
            failure,
            swap,
            server_status,
        }
    }

    /// Stores the outcome in one transaction; `None` when the server was deleted meanwhile.
    async fn record(
        &self,
        run: &Run,
        outcome: &Outcome,
    ) -> Result<Option<DeploymentRow>, DeployError> {
        let status = if outcome.failure.is_some() {
            DeploymentStatus::Failed
        } else {
            DeploymentStatus::Running
        };
        let swap = outcome.swap;
        let upstream_url = match &run.req.spec {
            Spec::Upstream { upstream_url } if swap => Some(upstream_url.clone()),
            _ => None,
        };
        let (sid, did, kind) = (run.server.id.clone(), run.id.clone(), run.req.kind);
        let (err, server_status) = (outcome.failure.clone(), outcome.server_status);
        let retention = run.server.retention_count;
        self.store
            .write(move |tx| {
                if swap {
                    let previous = deployments::activate(tx, &sid, &did)?;
                    if kind == DeploymentKind::Rollback
                        && let Some(p) = &previous
                    {
                        deployments::set_status(tx, p, DeploymentStatus::RolledBack)?;
                    }
                }
                deployments::finish(tx, &did, status, err.as_deref(), domain::now())?;
                if let Some(s) = server_status {
                    let url = swap.then_some(upstream_url.as_deref());
                    store::servers::set_status(tx, &sid, s, url)?;
                }
                deployments::prune(tx, &sid, retention)?;
                Ok::<_, DeployError>(deployments::find(tx, &sid, Some(&did), None)?)
            })
            .await
    }

    /// At least the row should not stay `building` (nor the server `provisioning`): one more
    /// try after the outcome could not be stored, which may fail for the same reason.
    async fn record_failure(&self, run: &Run) {
        let (sid, did, had_target) = (run.server.id.clone(), run.id.clone(), run.had_target);
        let _ = self
            .store
            .write(move |tx| {
                let why = "the deployment's outcome could not be stored";
                deployments::finish(tx, &did, DeploymentStatus::Failed, Some(why), domain::now())?;
                if !had_target {
                    store::servers::set_status(tx, &sid, ServerStatus::Error, None)?;
                }
                Ok::<_, store::StoreError>(())
            })
            .await;
    }

    /// The swap (or not), once the outcome is stored.
    async fn finish(self: &Arc<Self>, run: &Run, outcome: Outcome) {
        self.log_outcome(run, &outcome);
        if let (Some(old), false) = (&run.stopped, outcome.swap) {
            // The new version may hold the port (it listens, but failed its check): it goes
            // first.
            stop_all(outcome.target.iter(), Duration::from_secs(10)).await;
            self.restart(&run.server, old).await;
        }
        match outcome.target {
            Some(t) if outcome.swap => self.swap(run, t).await,
            Some(t) => t.stop(),
            None if outcome.server_status.is_some() => self.routes().rebuild().await,
            None => {}
        }
    }

    fn log_outcome(&self, run: &Run, outcome: &Outcome) {
        let (version, took) = (run.version, run.started.elapsed().as_millis());
        let (level, message) = match (&outcome.failure, outcome.swap) {
            (None, _) => (
                "info",
                format!("deployment v{version} is serving ({took} ms)"),
            ),
            (Some(f), true) => (
                "error",
                format!("deployment v{version} failed ({f}); serving it anyway: rollback is off"),
            ),
            (Some(f), false) => {
                let then = if run.stopped.is_some() {
                    "starting the previous deployment again"
                } else if run.had_target {
                    "the previous deployment keeps serving"
                } else {
                    "nothing to serve"
                };
                (
                    "error",
                    format!("deployment v{version} failed: {f}; {then}"),
                )
            }
        };
        run.log(self, level, message);
    }

    /// Makes `t` the server's target and drains the one it replaces.
    async fn swap(self: &Arc<Self>, run: &Run, t: Arc<Target>) {
        if !run.req.check && matches!(t.kind, TargetKind::Url(_)) {
            // Taken without a health check: whether it can be reached is known at once.
            let (this, sid, probed) = (self.clone(), run.server.id.clone(), t.clone());
            self.rt.spawn(async move {
                this.probe(&sid, &probed).await;
            });
        }
        let Some(old) = self.install(&run.server.id, t).await else {
            return;
        };
        self.draining
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(old.clone());
        let this = self.clone();
        tokio::spawn(async move {
            drain(&old, this.config.drain_timeout.0).await;
            this.draining
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|t| !Arc::ptr_eq(t, &old));
        });
    }

    /// Makes `t` the server's target; the one it replaces, if any.
    async fn install(&self, server_id: &str, t: Arc<Target>) -> Option<Arc<Target>> {
        let old = self.active.insert(server_id.to_owned(), t);
        // A delete of the server that committed meanwhile has looked for its target before this
        // one was in place: stop it here (one that commits later finds it).
        let sid = server_id.to_owned();
        if let Ok(None) = self.store.run(move |c| store::servers::find(c, &sid)).await {
            self.remove(server_id);
        }
        self.routes().rebuild().await;
        old
    }

    /// Starts again a deployment that was stopped to free its fixed port for a successor that
    /// failed. If it cannot start either, the server is marked `error`.
    async fn restart(&self, server: &ServerRow, old: &Target) {
        let log = |level: &'static str, m: String| self.hub.write(&server.id, level, "deploy", m);
        let Some(did) = old.deployment_id.clone() else {
            return;
        };
        let sid = server.id.clone();
        let row = self
            .store
            .run(move |c| deployments::find(c, &sid, Some(&did), None))
            .await;
        let started = match row {
            Ok(Some(d)) => match (
                Spec::from_json(&d.target),
                self.open_env(&server.id, &d.id, d.env_sealed.as_deref()),
            ) {
                (Some(spec), Some(env)) => self
                    .provision(server, &d.id, &spec, env, true)
                    .await
                    .map(|t| (t, d.version)),
                _ => Err("its stored target or env vars cannot be read".into()),
            },
            Ok(None) => Err("it no longer exists".into()),
            Err(e) => Err(e.to_string()),
        };
        match started {
            Ok((t, v)) => {
                self.install(&server.id, t).await;
                log("info", format!("deployment v{v} is serving again"));
            }
            Err(e) => {
                log(
                    "error",
                    format!("the previous deployment could not be started again: {e}"),
                );
                let sid = server.id.clone();
                let _ = self
                    .store
                    .write(move |tx| {
                        store::servers::set_status(tx, &sid, ServerStatus::Error, None)
                    })
                    .await;
                self.routes().rebuild().await;
            }
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
