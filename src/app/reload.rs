//! What SIGHUP reloads while the app runs: the TLS certificate files, the signing keys, and
//! the servers the config file declares. Other settings need a restart.

use std::sync::Arc;

use super::{Services, jobs};
use crate::config::Config;
use crate::control;
use crate::error::ErrorChain;
use crate::store::StoreError;
use crate::tls::CertResolver;

#[derive(Clone)]
pub struct Reloader {
    pub(super) services: Services,
    pub(super) tls: Option<Arc<CertResolver>>,
}

impl Reloader {
    pub async fn reload(&self) {
        if let Some(tls) = self.tls.clone() {
            match tokio::task::spawn_blocking(move || tls.reload()).await {
                Ok(Ok(fp)) => tracing::info!(fingerprint = %fp, "TLS certificate reloaded"),
                Ok(Err(e)) => {
                    tracing::error!(error = %ErrorChain(&e), "TLS reload failed; keeping the previous certificate")
                }
                Err(e) => tracing::error!(error = %e, "TLS reload task failed"),
            }
        }
        jobs::refresh_keys(&self.services).await;
        self.reconcile_servers().await;
        tokio::spawn(crate::services::gateway::issuer_check::check_all(
            self.services.gateway.clone(),
            (**self.services.outbound).clone(),
        ));
    }

    /// Reads the config file again and makes the declared servers match it.
    async fn reconcile_servers(&self) {
        let s = &self.services;
        let Some(path) = s.config.source_file.clone() else {
            return;
        };
        let public_url = s.gateway.urls.public_url().to_owned();
        let result = s
            .store
            .run(move |c| {
                let fresh =
                    Config::load(Some(&path)).map_err(|e| ReloadError::Config(e.to_string()))?;
                control::declared::reconcile(c, &fresh, &public_url)
                    .map_err(|e| ReloadError::Config(e.to_string()))
            })
            .await;
        match result {
            Ok(report) => {
                let revoked = report.revoked;
                s.revoked.refuse(revoked.grants, &revoked.clients);
                s.gateway.servers_changed().await;
                // Declared servers may have been removed.
                s.control.access_changed();
            }
            Err(e) => {
                tracing::error!(error = %e, "config reload failed; declared servers unchanged")
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum ReloadError {
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}
