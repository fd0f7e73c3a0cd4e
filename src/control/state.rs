//! The control API's own state: its rate limiter, API keys' last use (written in batches), the
//! signal that access may have been taken away, and the bound on concurrent log scans.

use std::sync::Arc;

use tokio::sync::{Semaphore, watch};

use super::auth::KeyUsage;
use crate::shared::rate_limit::Limiter;

pub struct ControlState {
    pub limiter: Arc<Limiter>,
    pub key_usage: KeyUsage,
    /// Marked after a change that may take access away (a session ended, a key revoked, a
    /// member removed…): long-lived control streams check their caller again.
    access: watch::Sender<()>,
    /// Metrics windows and log lists may scan a server's whole log: at most two at a time, so
    /// that a burst of them cannot take every store connection.
    pub log_scans: Semaphore,
}

impl ControlState {
    pub fn new(limiter: Arc<Limiter>) -> Self {
        Self {
            limiter,
            key_usage: KeyUsage::default(),
            access: watch::Sender::new(()),
            log_scans: Semaphore::new(2),
        }
    }

    /// Called after a change that may take access away from a caller of the control API.
    pub fn access_changed(&self) {
        self.access.send_replace(());
    }

    /// Woken by every [`ControlState::access_changed`].
    pub fn watch_access(&self) -> watch::Receiver<()> {
        self.access.subscribe()
    }
}
