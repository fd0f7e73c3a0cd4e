//! What a server's URL routes to: a URL, a supervised HTTP process, or a pool of stdio
//! processes; and the count of requests running on it.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use super::process::{ProcState, Supervisor};
use super::stdio::StdioPool;
use crate::domain;
use crate::domain::endpoint::Endpoint;
use crate::shared::destinations::PortGuard;

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

    pub(super) fn holding(
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
    pub(super) fn set_unreachable(&self, why: Option<String>) -> bool {
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

    pub(super) fn stop(&self) {
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
