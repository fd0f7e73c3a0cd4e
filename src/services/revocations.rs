//! Grants revoked while their access tokens may still be unexpired. The front door checks this
//! set in memory on every request, so revocation takes effect at once without a database hit.

use std::collections::HashSet;
use std::sync::RwLock;
use std::sync::atomic::AtomicU64;

use crate::domain;
use crate::store::{self, StoreError};

#[derive(Default)]
pub struct RevokedGrants {
    set: RwLock<HashSet<String>>,
    /// Deleted clients: their `client_credentials` tokens belong to no grant.
    clients: RwLock<HashSet<String>>,
}

impl RevokedGrants {
    pub fn is_revoked(&self, grant_id: &str) -> bool {
        self.set
            .read()
            .map(|s| s.contains(grant_id))
            .unwrap_or(true)
    }

    /// Ends the tokens a deleted client holds without a grant (`client_credentials`).
    pub fn revoke_client(&self, client_id: &str) {
        if let Ok(mut s) = self.clients.write() {
            s.insert(client_id.to_owned());
        }
    }

    pub fn is_client_revoked(&self, client_id: &str) -> bool {
        self.clients
            .read()
            .map(|s| s.contains(client_id))
            .unwrap_or(true)
    }

    pub fn revoke(&self, grant_id: &str) {
        if let Ok(mut s) = self.set.write() {
            s.insert(grant_id.to_owned());
        }
    }

    pub fn extend(&self, ids: impl IntoIterator<Item = String>) {
        if let Ok(mut s) = self.set.write() {
            s.extend(ids);
        }
    }

    pub fn len(&self) -> usize {
        self.set.read().map(|s| s.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Revokes grants and clients whose rows are about to be deleted (with their user, server
    /// or client), in the caller's transaction: at the front door at once, and on record until
    /// their tokens have expired, so that a restart does not forget them.
    pub fn revoke_deleted(
        &self,
        conn: &rusqlite::Connection,
        grants: Vec<String>,
        clients: &[String],
    ) -> Result<(), StoreError> {
        let now = domain::now();
        store::grants::record_revocations(conn, "grant", &grants, now)?;
        store::grants::record_revocations(conn, "client", clients, now)?;
        self.refuse(grants, clients);
        Ok(())
    }

    /// Makes the front door refuse, at once, the tokens of grants and clients whose revocation
    /// is on record.
    pub fn refuse(&self, grants: Vec<String>, clients: &[String]) {
        self.extend(grants);
        for c in clients {
            self.revoke_client(c);
        }
    }
}

/// Replays of just-rotated refresh tokens: answered within the grace, or the grant revoked.
#[derive(Default)]
pub struct ReuseCounters {
    pub grace: AtomicU64,
    pub revoked: AtomicU64,
}
