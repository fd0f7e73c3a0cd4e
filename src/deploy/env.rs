//! A deployment's env vars: the server's, decrypted when a deployment begins, sealed into the
//! deployment (so a rollback or a restart runs with what that version ran with), and never
//! passed on with a name that makes programs load code ([`domain::env_rules`]).

use std::collections::HashMap;

use super::Deployer;
use super::error::DeployError;
use crate::domain::{self, Secret};
use crate::store;

fn env_context(deployment_id: &str) -> String {
    format!("deployment-env:{deployment_id}")
}

impl Deployer {
    /// `env` without the names that make programs load code: stored before those were refused,
    /// or sealed into a deployment made before. Each one left out is logged.
    fn injectable(&self, server_id: &str, env: Vec<(String, Secret)>) -> Vec<(String, Secret)> {
        env.into_iter()
            .filter(|(name, _)| match domain::env_rules::refusal(name) {
                None => true,
                Some(why) => {
                    self.hub.write(
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
    pub(super) async fn load_env(
        &self,
        server_id: &str,
    ) -> Result<Vec<(String, Secret)>, DeployError> {
        let sid = server_id.to_owned();
        let sealed = self
            .store
            .run(move |c| store::env_vars::sealed_values(c, &sid))
            .await?;
        let mut out = Vec::with_capacity(sealed.len());
        for (name, value) in sealed {
            let context = domain::env_rules::seal_context(server_id, &name);
            let plain = self
                .master_key
                .open(&value, &context)
                .map_err(|_| DeployError::EnvUnreadable(name.clone()))?;
            out.push((
                name,
                Secret::new(String::from_utf8_lossy(&plain).into_owned()),
            ));
        }
        Ok(self.injectable(server_id, out))
    }

    pub(super) fn seal_env(&self, deployment_id: &str, env: &[(String, Secret)]) -> Option<String> {
        if env.is_empty() {
            return None;
        }
        let map: HashMap<&str, &str> = env.iter().map(|(k, v)| (k.as_str(), v.expose())).collect();
        let plain = serde_json::to_vec(&map).ok()?;
        Some(self.master_key.seal(&plain, &env_context(deployment_id)))
    }

    /// A deployment's env vars as deployed, without refused names; `None` when they cannot be
    /// opened (the process must not start without them).
    pub(super) fn open_env(
        &self,
        server_id: &str,
        deployment_id: &str,
        sealed: Option<&str>,
    ) -> Option<Vec<(String, Secret)>> {
        let Some(sealed) = sealed else {
            return Some(Vec::new());
        };
        let plain = self
            .master_key
            .open(sealed, &env_context(deployment_id))
            .ok()?;
        let map: HashMap<String, String> = serde_json::from_slice(&plain).ok()?;
        let mut env: Vec<(String, Secret)> =
            map.into_iter().map(|(k, v)| (k, Secret::new(v))).collect();
        env.sort_by(|a, b| a.0.cmp(&b.0));
        Some(self.injectable(server_id, env))
    }
}
