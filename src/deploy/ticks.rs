//! What the deployer does on a clock (`app` calls these): idle processes stopped and process
//! time counted every second, processes found listening beyond loopback, upstream URLs probed.

use std::sync::Arc;
use std::time::Duration;

use super::process::{ProcState, Supervisor};
use super::sandbox;
use super::target::{Target, TargetKind};
use super::{Deployer, Routed};

impl Deployer {
    /// Every second: stops idle processes and idle stdio sessions, and counts process time.
    pub fn tick(&self, elapsed: Duration) {
        let ms = elapsed.as_millis() as u64;
        let mut used: Vec<(String, u64)> = Vec::new();
        for Routed {
            server_id,
            target,
            auto_stop_seconds,
        } in self.routes().routed()
        {
            match &target.kind {
                TargetKind::Url(_) => {}
                TargetKind::Process(p) => {
                    if matches!(p.state(), ProcState::Running { .. }) {
                        used.push((server_id, ms));
                        if let Some(secs) = auto_stop_seconds
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
                        used.push((server_id, n * ms));
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
    pub async fn probe_upstreams(&self) {
        let urls: Vec<Routed> = self
            .routes()
            .routed()
            .into_iter()
            .filter(|r| matches!(r.target.kind, TargetKind::Url(_)))
            .collect();
        let probes = urls.iter().map(|r| self.probe(&r.server_id, &r.target));
        futures_util::future::join_all(probes).await;
    }

    /// One upstream URL's probe (see [`Deployer::probe_upstreams`]).
    pub(super) async fn probe(&self, server_id: &str, t: &Target) {
        let TargetKind::Url(ep) = &t.kind else {
            return;
        };
        let why = self.health.probe(ep).await.err().map(|e| e.to_string());
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
    pub async fn check_exposure(&self) {
        use sandbox::exposure::{self, Owner};
        let running: Vec<(Arc<Supervisor>, Owner)> = self
            .routes()
            .routed()
            .iter()
            .filter_map(|r| match &r.target.kind {
                TargetKind::Process(p) => match p.state() {
                    ProcState::Running { pid, .. } => Some((p.clone(), p.owner(pid))),
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
}
