//! Where each server lives: its resource URI (the `aud` its tokens are bound to), its metadata
//! document's URL, its own issuer, and which server a request's `Host` names. The one place
//! that works these out from `server.public_url` and `gateway.routing`.

use crate::config::Routing;

#[derive(Debug, Clone)]
pub struct ServerUrls {
    /// `server.public_url` without a trailing slash: the root OAuth issuer.
    public_url: String,
    /// `gateway.server_domain`, under host routing only.
    host_domain: Option<String>,
}

impl ServerUrls {
    pub fn new(public_url: &str, routing: Routing, server_domain: Option<&str>) -> Self {
        let host_domain = match routing {
            Routing::Host => server_domain.map(str::to_owned),
            Routing::Path => None,
        };
        Self {
            public_url: public_url.trim_end_matches('/').to_owned(),
            host_domain,
        }
    }

    pub fn public_url(&self) -> &str {
        &self.public_url
    }

    /// `{public_url}/mcp/{slug}`, or `https://{slug}.{server_domain}` under host routing.
    pub fn resource(&self, slug: &str) -> String {
        match &self.host_domain {
            Some(d) => format!("https://{slug}.{d}"),
            None => format!("{}/mcp/{slug}", self.public_url),
        }
    }

    /// The URL of a server's protected-resource metadata (RFC 9728).
    pub fn metadata_url(&self, slug: &str) -> String {
        match &self.host_domain {
            Some(d) => format!("https://{slug}.{d}/.well-known/oauth-protected-resource"),
            None => format!(
                "{}/.well-known/oauth-protected-resource/mcp/{slug}",
                self.public_url
            ),
        }
    }

    /// `{slug}.{server_domain}` under host routing.
    pub fn subdomain(&self, slug: &str) -> Option<String> {
        self.host_domain.as_ref().map(|d| format!("{slug}.{d}"))
    }

    /// The slug a `Host` names under host routing (`{slug}.{server_domain}[:port]`).
    pub fn slug_from_host(&self, host: Option<&str>) -> Option<String> {
        let domain = self.host_domain.as_deref()?;
        let host = host?.split(':').next()?.to_ascii_lowercase();
        let slug = host.strip_suffix(domain)?.strip_suffix('.')?;
        (!slug.is_empty() && !slug.contains('.')).then(|| slug.to_owned())
    }

    /// A managed server's own issuer: `{public_url}/oauth/mcp/{slug}`.
    pub fn managed_issuer(&self, slug: &str) -> String {
        format!("{}/oauth/mcp/{slug}", self.public_url)
    }

    /// Is `iss` one of ours: the root issuer or a managed server's own?
    pub fn is_our_issuer(&self, iss: &str) -> bool {
        iss == self.public_url
            || iss
                .strip_prefix(self.public_url.as_str())
                .and_then(|rest| rest.strip_prefix("/oauth/mcp/"))
                .is_some_and(|slug| !slug.is_empty() && !slug.contains('/'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_and_host_routing_place_servers() {
        let path = ServerUrls::new("http://h:1/", Routing::Path, Some("mcp.example"));
        assert_eq!(path.resource("w"), "http://h:1/mcp/w");
        assert_eq!(
            path.metadata_url("w"),
            "http://h:1/.well-known/oauth-protected-resource/mcp/w"
        );
        assert_eq!(path.subdomain("w"), None);
        assert_eq!(path.slug_from_host(Some("w.mcp.example")), None);

        let host = ServerUrls::new("https://h", Routing::Host, Some("mcp.example"));
        assert_eq!(host.resource("w"), "https://w.mcp.example");
        assert_eq!(
            host.metadata_url("w"),
            "https://w.mcp.example/.well-known/oauth-protected-resource"
        );
        assert_eq!(host.subdomain("w").as_deref(), Some("w.mcp.example"));
        assert_eq!(
            host.slug_from_host(Some("W.mcp.example:443")).as_deref(),
            Some("w")
        );
        assert_eq!(host.slug_from_host(Some("a.b.mcp.example")), None);
        assert_eq!(host.slug_from_host(Some("mcp.example")), None);
    }

    #[test]
    fn issuers_are_ours_only_at_the_root_or_a_server() {
        let u = ServerUrls::new("https://h", Routing::Path, None);
        assert_eq!(u.managed_issuer("w"), "https://h/oauth/mcp/w");
        assert!(u.is_our_issuer("https://h"));
        assert!(u.is_our_issuer("https://h/oauth/mcp/w"));
        assert!(!u.is_our_issuer("https://h/oauth/mcp/"));
        assert!(!u.is_our_issuer("https://h/oauth/mcp/w/x"));
        assert!(!u.is_our_issuer("https://h.evil/oauth/mcp/w"));
    }
}
