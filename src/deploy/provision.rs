//! Starting what a deployment needs (a URL taken apart, a supervised process, a stdio pool),
//! and its health check.

use std::sync::Arc;
use std::time::{Duration, Instant};

use url::Url;

use super::process::{self, Launch, Supervisor};
use super::stdio::StdioPool;
use super::target::{Target, TargetKind};
use super::{Deployer, Spec, Transport, diagnose, health};
use crate::domain::Secret;
use crate::domain::endpoint::Endpoint;
use crate::shared::destinations::PortGuard;
use crate::store::servers::ServerRow;

impl Deployer {
    /// Starts what `spec` needs. `first`: a new deployment, which fails at the process's first
    /// exit; a restored one is left to its supervisor.
    pub(super) async fn provision(
        &self,
        server: &ServerRow,
        deployment_id: &str,
        spec: &Spec,
        env: Vec<(String, Secret)>,
        first: bool,
    ) -> Result<Arc<Target>, String> {
        let id = Some(deployment_id);
        let (command, transport, port) = match spec {
            Spec::Upstream { upstream_url } => return self.upstream_target(upstream_url, id),
            Spec::Command {
                command,
                transport,
                port,
            } => (command, *transport, *port),
        };
        let sandbox = self.sandbox.clone();
        let sid = server.id.clone();
        let (dirs, confinement) = tokio::task::spawn_blocking(move || sandbox.prepare(&sid))
            .await
            .map_err(|e| format!("could not prepare the sandbox: {e}"))??;
        let launch = Launch {
            server_id: server.id.clone(),
            command: command.clone(),
            env,
            dirs,
            confinement: confinement.map(Arc::new),
            hub: self.hub.clone(),
            lines_per_second: self.config.output_lines_per_second,
            tail: Default::default(),
            rt: self.rt.clone(),
        };
        match transport {
            Transport::Http => self.start_process(launch, port, id, first).await,
            Transport::Stdio => {
                let idle = server
                    .auto_stop_seconds
                    .map_or(self.config.stdio_idle_timeout.0, |s| {
                        Duration::from_secs(s as u64)
                    });
                let pool = StdioPool::new(
                    launch,
                    self.config.max_stdio_sessions,
                    idle,
                    self.upstream_timeout,
                );
                Ok(Target::new(TargetKind::Stdio(pool), id))
            }
        }
    }

    fn upstream_target(&self, upstream_url: &str, id: Option<&str>) -> Result<Arc<Target>, String> {
        let url = Url::parse(upstream_url).map_err(|e| format!("bad upstream URL: {e}"))?;
        // Also for one stored before the policy refused it (a rollback, a restart).
        self.destinations
            .check_url(&url)
            .map_err(|e| format!("the upstream URL is refused: {e}"))?;
        let endpoint = Endpoint::new(url).ok_or("the upstream URL must be http or https")?;
        Ok(Target::new(TargetKind::Url(Box::new(endpoint)), id))
    }

    /// Starts a supervised HTTP process on `port` (a free one if `None`); a new deployment's
    /// must accept connections within the health timeout.
    async fn start_process(
        &self,
        launch: Launch,
        port: Option<u16>,
        id: Option<&str>,
        first: bool,
    ) -> Result<Arc<Target>, String> {
        let (port, guard) = match port {
            // Its health check must not be answered by whatever else listens there.
            Some(p) => {
                // Another server's, even stopped (it starts again on it): not this one's.
                let guard = self.destinations.reserve(p, &launch.server_id).map_err(|_| {
                    format!("port {p} is another supervised server's; choose another port, or leave it out")
                })?;
                (wait_for_port(p).await?, guard)
            }
            None => self.new_port(&launch.server_id).await?,
        };
        let timeout = self.config.health_timeout.0;
        launch.log(
            "info",
            format!(
                "starting the process; waiting up to {} for it to accept connections on 127.0.0.1:{port}",
                humantime::format_duration(timeout)
            ),
        );
        let started = Instant::now();
        let sup = Supervisor::start(launch, port, timeout);
        if first {
            if let Err(e) = sup.ready(timeout, true).await {
                // Gone before this returns: a fixed port must be free for whoever is next.
                sup.shutdown();
                let _ = tokio::time::timeout(Duration::from_secs(10), sup.exited()).await;
                let output = sup.launch.last_output().await;
                return Err(diagnose::explain(&e, Transport::Http, Some(port), &output));
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

    /// A free port for a process that names none, reserved: not another supervised process's
    /// (a stopped one keeps its port).
    async fn new_port(&self, server: &str) -> Result<(u16, PortGuard), String> {
        for _ in 0..8 {
            let destinations = self.destinations.clone();
            let port = tokio::task::spawn_blocking(move || {
                process::free_port(|p| destinations.supervised_port(p))
            })
            .await
            .map_err(|e| format!("no free port: {e}"))?
            .map_err(|e| format!("no free port: {e}"))?;
            if let Some(guard) = self.destinations.reserve_new(port, server) {
                return Ok((port, guard));
            }
        }
        Err("no free port: every one tried was taken meanwhile".into())
    }

    pub(super) async fn check(&self, server: &ServerRow, target: &Target) -> Result<(), String> {
        let timeout = self.config.health_timeout.0;
        let path = server.health_check_path.as_deref();
        let client = &self.health;
        let log = |m: String| self.hub.write(&server.id, "info", "deploy", m);
        log(match path {
            Some(p) => format!("health check: GET {p}"),
            None => "health check: MCP initialize and ping".into(),
        });
        let result = match &target.kind {
            TargetKind::Url(u) => health::check(client, u, path, timeout).await,
            TargetKind::Process(p) => match health::check(client, &p.url, path, timeout).await {
                Ok(()) => Ok(()),
                Err(e) => {
                    let output = p.launch.last_output().await;
                    Err(diagnose::explain(
                        &e,
                        Transport::Http,
                        Some(p.port),
                        &output,
                    ))
                }
            },
            TargetKind::Stdio(p) => match p.probe(timeout).await {
                Ok(()) => Ok(()),
                Err(e) => {
                    let output = p.launch_output().await;
                    Err(diagnose::explain(&e, Transport::Stdio, None, &output))
                }
            },
        };
        if result.is_ok() {
            log("health check passed".into());
        }
        result
    }
}

/// A version stopped for a fixed port may leave members of its group dying a moment longer:
/// waits for the port a little.
async fn wait_for_port(p: u16) -> Result<u16, String> {
    let mut tries = 0;
    loop {
        match std::net::TcpListener::bind(("127.0.0.1", p)) {
            Ok(_) => return Ok(p),
            Err(_) if tries < 20 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(format!("port {p} is not free: {e}")),
        }
    }
}
