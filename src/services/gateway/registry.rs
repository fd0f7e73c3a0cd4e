//! The routing table: every server's canonical URI, upstream, auth mode and prebuilt metadata,
//! in memory, rebuilt whenever the control API or the config changes a server.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use serde_json::json;
use url::Url;

use super::urls::ServerUrls;
use crate::config::{ByoaConfig, RateLimit};
use crate::deploy::{Target, TargetKind};
use crate::domain::endpoint::Endpoint;
use crate::domain::kinds::ServerAuthMode;
use crate::domain::scopes::{self, MCP_EXECUTE, MCP_READ, MCP_SCOPES};
use crate::services::gateway::counters::ServerCounters;
use crate::shared::rate_limit::Limiter;
use crate::store::servers::ServerRow;

/// How a server's tokens are checked.
#[derive(Debug, Clone)]
pub enum ServerAuth {
    /// Signed by this server's own keys; issuer = the server's own ([`managed_issuer`]) or
    /// `public_url` (the root issuer, which serves every managed server).
    Managed,
    /// An external issuer's tokens, verified against its JWKS.
    Byoa(Arc<ByoaConfig>),
    /// BYOA without any issuer configured: no token can be valid.
    Unconfigured,
}

pub struct ServerEntry {
    pub id: String,
    pub project_id: String,
    pub slug: String,
    pub name: String,
    /// The canonical URI tokens are bound to (`aud`).
    pub resource: String,
    /// Where its protected-resource metadata is served.
    pub metadata_url: String,
    /// What requests go to: the active deployment, or (servers declared in the config file)
    /// their upstream URL.
    pub target: Option<Arc<Target>>,
    pub auto_stop_seconds: Option<i64>,
    pub counters: Arc<ServerCounters>,
    pub auth: ServerAuth,
    pub tool_scopes: HashMap<String, String>,
    pub scopes_supported: Vec<String>,
    /// The RFC 9728 document, serialized once.
    pub metadata: Bytes,
    /// The issuer its protected-resource metadata names (managed: its own; the front door
    /// also accepts the root issuer's tokens).
    pub issuer: Option<String>,
    /// This server's own rate limit, when it has one (else the gateway's).
    pub limiter: Option<Arc<Limiter>>,
    pub rate_limit: Option<RateLimit>,
}

impl ServerEntry {
    pub fn build(
        urls: &ServerUrls,
        default_byoa: Option<&ByoaConfig>,
        row: &ServerRow,
        target: Option<Arc<Target>>,
        counters: Arc<ServerCounters>,
    ) -> Self {
        let resource = urls.resource(&row.slug);
        let metadata_url = urls.metadata_url(&row.slug);
        let tool_scopes = tool_scopes(row);
        let mut scopes_supported: Vec<String> =
            MCP_SCOPES.iter().map(|s| (*s).to_owned()).collect();
        let mut custom: Vec<&String> = tool_scopes
            .values()
            .filter(|s| !scopes_supported.contains(s))
            .collect();
        custom.sort();
        custom.dedup();
        scopes_supported.extend(custom.into_iter().cloned());
        let auth = if row.auth_mode == ServerAuthMode::Byoa {
            let own: Option<ByoaConfig> = row
                .byoa_config
                .as_deref()
                .and_then(|j| serde_json::from_str(j).ok());
            match own.or_else(|| default_byoa.cloned()) {
                Some(b) => ServerAuth::Byoa(Arc::new(b)),
                None => ServerAuth::Unconfigured,
            }
        } else {
            ServerAuth::Managed
        };
        let issuer = match &auth {
            ServerAuth::Managed => Some(urls.managed_issuer(&row.slug)),
            ServerAuth::Byoa(b) => Some(b.issuer.clone()),
            ServerAuth::Unconfigured => None,
        };
        let metadata = json!({
            "resource": resource,
            "authorization_servers": issuer.iter().collect::<Vec<_>>(),
            "scopes_supported": scopes_supported,
            "bearer_methods_supported": ["header"],
            "resource_name": row.name,
        });
        Self {
            id: row.id.clone(),
            project_id: row.project_id.clone(),
            slug: row.slug.clone(),
            name: row.name.clone(),
            resource,
            metadata_url,
            target: target.or_else(|| {
                row.upstream_url
                    .as_deref()
                    .and_then(|u| Url::parse(u).ok())
                    .and_then(Endpoint::new)
                    .map(|u| Target::new(TargetKind::Url(Box::new(u)), None))
            }),
            auto_stop_seconds: row.auto_stop_seconds,
            counters,
            auth,
            tool_scopes,
            scopes_supported,
            metadata: Bytes::from(metadata.to_string()),
            issuer,
            rate_limit: row
                .rate_limit
                .as_deref()
                .and_then(|r| serde_json::from_str(r).ok()),
            limiter: None,
        }
    }

    /// The scope to ask for when a request names nothing more specific.
    pub fn base_scope(&self) -> &'static str {
        MCP_READ
    }
}

/// A server's tool -> scope overrides. A reserved name (`email`, `openid`, `offline_access`…,
/// refused by the control API and the config since, but perhaps stored before) is never a
/// tool's scope: any client may ask for those. Such a tool requires `mcp:execute` instead, the
/// broadest MCP scope (fail closed: only a token for every tool reaches it).
fn tool_scopes(row: &ServerRow) -> HashMap<String, String> {
    let mut map: HashMap<String, String> =
        serde_json::from_str(&row.tool_scopes).unwrap_or_default();
    for (tool, scope) in map.iter_mut() {
        if scopes::is_reserved(scope) {
            tracing::warn!(
                server = %row.slug, tool = %tool, scope = %scope,
                "a tool's scope is a reserved name; the tool requires mcp:execute instead (set another scope for it)"
            );
            *scope = MCP_EXECUTE.to_owned();
        }
    }
    map
}

#[derive(Default)]
struct Maps {
    by_slug: HashMap<String, Arc<ServerEntry>>,
    by_resource: HashMap<String, Arc<ServerEntry>>,
}

/// Whether two versions of a server's entry forward to the same upstream.
pub fn same_upstream(a: &ServerEntry, b: &ServerEntry) -> bool {
    match (&a.target, &b.target) {
        (Some(x), Some(y)) => {
            Arc::ptr_eq(x, y)
                || matches!((&x.kind, &y.kind),
                    (TargetKind::Url(u), TargetKind::Url(v)) if u.url() == v.url())
        }
        (None, None) => true,
        _ => false,
    }
}

#[derive(Default)]
pub struct Registry {
    maps: RwLock<Arc<Maps>>,
}

impl Registry {
    fn maps(&self) -> Arc<Maps> {
        match self.maps.read() {
            Ok(m) => m.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    pub fn get(&self, slug: &str) -> Option<Arc<ServerEntry>> {
        self.maps().by_slug.get(slug).cloned()
    }

    /// The server whose canonical URI is `resource`, both normalised (case of scheme and host,
    /// default port, a trailing slash: `domain::validate::normalize_resource`).
    pub fn by_resource(&self, resource: &str) -> Option<Arc<ServerEntry>> {
        let key = crate::domain::validate::normalize_resource(resource)?;
        self.maps().by_resource.get(&key).cloned()
    }

    /// Every server, in no particular order.
    pub fn all(&self) -> Vec<Arc<ServerEntry>> {
        self.maps().by_slug.values().cloned().collect()
    }

    /// Rebuilds every entry from `rows`; `target` finds a server's active deployment. Returns
    /// which servers kept the same upstream (their learned tool annotations stay valid).
    pub fn replace(
        &self,
        urls: &ServerUrls,
        default_byoa: Option<&ByoaConfig>,
        target: impl Fn(&str) -> Option<Arc<Target>>,
        rows: &[ServerRow],
    ) -> Replaced {
        let old = self.maps();
        let mut maps = Maps::default();
        for r in rows {
            let mut entry = ServerEntry::build(
                urls,
                default_byoa,
                r,
                target(&r.id),
                old.by_slug
                    .get(&r.slug)
                    .filter(|e| e.id == r.id)
                    .map_or_else(Default::default, |e| e.counters.clone()),
            );
            // Keep a server's buckets across rebuilds while its limit is unchanged.
            if let Some(limit) = entry.rate_limit {
                let previous = old
                    .by_slug
                    .get(&r.slug)
                    .filter(|e| e.id == entry.id && e.rate_limit == Some(limit))
                    .and_then(|e| e.limiter.clone());
                entry.limiter = Some(previous.unwrap_or_else(|| Arc::new(Limiter::new(limit))));
            }
            let entry = Arc::new(entry);
            let key = crate::domain::validate::normalize_resource(&entry.resource)
                .unwrap_or_else(|| entry.resource.clone());
            maps.by_resource.insert(key, entry.clone());
            maps.by_slug.insert(r.slug.clone(), entry);
        }
        let by_id = |m: &Maps| -> HashMap<String, Arc<ServerEntry>> {
            m.by_slug
                .values()
                .map(|e| (e.id.clone(), e.clone()))
                .collect()
        };
        let (was, now) = (by_id(&old), by_id(&maps));
        match self.maps.write() {
            Ok(mut g) => *g = Arc::new(maps),
            Err(p) => *p.into_inner() = Arc::new(maps),
        }
        Replaced { was, now }
    }
}

/// The servers before and after a rebuild, by id.
pub struct Replaced {
    was: HashMap<String, Arc<ServerEntry>>,
    now: HashMap<String, Arc<ServerEntry>>,
}

impl Replaced {
    /// The server is still there, with the same upstream.
    pub fn kept(&self, id: &str) -> bool {
        match (self.was.get(id), self.now.get(id)) {
            (Some(a), Some(b)) => same_upstream(a, b),
            _ => false,
        }
    }
}

#[cfg(test)]
impl ServerEntry {
    /// A managed server for unit tests: `srv_1` in `proj_1`, named and slugged `slug`, under
    /// path routing at `public_url`, with these tool scope overrides.
    pub(crate) fn for_test(public_url: &str, slug: &str, tool_scopes: &[(&str, &str)]) -> Self {
        use crate::domain::kinds::{ServerAuthMode, ServerStatus};
        let overrides: HashMap<&str, &str> = tool_scopes.iter().copied().collect();
        let row = ServerRow {
            id: "srv_1".into(),
            project_id: "proj_1".into(),
            name: slug.into(),
            slug: slug.into(),
            status: ServerStatus::Running,
            upstream_url: None,
            health_check_path: None,
            rollback_on_failure: true,
            retention_count: 10,
            auto_stop_seconds: None,
            tool_scopes: serde_json::to_string(&overrides).unwrap_or_default(),
            auth_mode: ServerAuthMode::Managed,
            byoa_config: None,
            managed_by: "api".into(),
            rate_limit: None,
            created_at: 0,
            updated_at: 0,
        };
        let urls = ServerUrls::new(public_url, crate::config::Routing::Path, None);
        Self::build(&urls, None, &row, None, Default::default())
    }
}
