//! Grants revoked while their access tokens may still be unexpired. The front door checks this
//! set in memory on every request, so revocation takes effect at once without a database hit.

use std::collections::HashSet;
use std::sync::RwLock;

#[derive(Default)]
pub struct RevokedGrants {
    set: RwLock<HashSet<String>>,
}

impl RevokedGrants {
    pub fn is_revoked(&self, grant_id: &str) -> bool {
        self.set
            .read()
            .map(|s| s.contains(grant_id))
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
}
