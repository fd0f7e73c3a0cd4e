//! Where MCP clients look for metadata, and how they compare what they find: pure functions
//! over URLs (MCP authorization, RFC 9728 §3.1, RFC 8414 §3.1, OpenID Connect Discovery §4).

use std::net::IpAddr;

use url::Url;

/// A metadata document as a client finds it at one location.
#[derive(Debug, Clone, PartialEq)]
pub enum Doc {
    /// A JSON object (HTTP 200).
    Found(serde_json::Value),
    /// 404 or 410: nothing served there.
    Missing(u16),
    /// Anything else: another status, not a JSON object, a transport error. Says which.
    Bad(String),
}

impl Doc {
    pub fn found(&self) -> Option<&serde_json::Value> {
        match self {
            Doc::Found(v) => Some(v),
            _ => None,
        }
    }

    /// What was there, for a message: "HTTP 404", or the problem.
    pub fn describe(&self) -> String {
        match self {
            Doc::Found(_) => "a JSON document".into(),
            Doc::Missing(status) => format!("HTTP {status}"),
            Doc::Bad(why) => why.clone(),
        }
    }
}

/// `scheme://host[:port]`, without a trailing slash.
pub fn origin(url: &Url) -> String {
    url.origin().ascii_serialization()
}

/// The URL's path as the well-known forms insert it: without its one trailing slash, empty for
/// the root (RFC 9728 §3.1, RFC 8414 §3.1).
fn inserted_path(url: &Url) -> &str {
    let path = url.path();
    path.strip_suffix('/').unwrap_or(path)
}

/// RFC 9728's well-known URLs of a resource, in the order clients try them: the path-inserted
/// form (`None` when the URL has no path) and the root form.
pub fn prm_locations(resource: &Url) -> (Option<String>, String) {
    let root = format!("{}/.well-known/oauth-protected-resource", origin(resource));
    let path = inserted_path(resource);
    let inserted = (!path.is_empty()).then(|| format!("{root}{path}"));
    (inserted, root)
}

/// How an authorization server's metadata is found, in the order MCP clients try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsForm {
    /// RFC 8414: `/.well-known/oauth-authorization-server` with the issuer's path inserted.
    Oauth,
    /// OpenID Connect Discovery with the issuer's path inserted.
    OidcInserted,
    /// OpenID Connect Discovery appended to the issuer (issuers with a path only).
    OidcAppended,
}

impl AsForm {
    pub fn name(self) -> &'static str {
        match self {
            AsForm::Oauth => "RFC 8414",
            AsForm::OidcInserted => "OpenID (path inserted)",
            AsForm::OidcAppended => "OpenID (appended)",
        }
    }
}

/// The metadata URLs of an issuer, in the MCP specification's order.
pub fn as_locations(issuer: &Url) -> Vec<(AsForm, String)> {
    let o = origin(issuer);
    let path = inserted_path(issuer);
    let mut out = vec![
        (
            AsForm::Oauth,
            format!("{o}/.well-known/oauth-authorization-server{path}"),
        ),
        (
            AsForm::OidcInserted,
            format!("{o}/.well-known/openid-configuration{path}"),
        ),
    ];
    if !path.is_empty() {
        out.push((
            AsForm::OidcAppended,
            format!("{o}{path}/.well-known/openid-configuration"),
        ));
    }
    out
}

/// How a protected resource's `resource` compares with the URL a client was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sameness {
    /// Byte for byte.
    Exact,
    /// After normalisation (case of scheme and host, default port, a trailing slash).
    Normalised,
    /// A parent of the URL (its origin, or a path above it).
    Parent,
    Different,
}

fn normalised(u: &Url) -> String {
    let mut s = origin(u);
    s.push_str(u.path().trim_end_matches('/'));
    if let Some(q) = u.query() {
        s.push('?');
        s.push_str(q);
    }
    s
}

pub fn compare_resource(resource: &str, url: &Url) -> Sameness {
    if resource == url.as_str() || resource == url.as_str().trim_end_matches('/') {
        return Sameness::Exact;
    }
    let Ok(r) = Url::parse(resource) else {
        return Sameness::Different;
    };
    let (r, u) = (normalised(&r), normalised(url));
    if r == u {
        Sameness::Normalised
    } else if u.starts_with(&format!("{r}/")) {
        Sameness::Parent
    } else {
        Sameness::Different
    }
}

/// Is this host this machine (RFC 6761 `localhost`, or a loopback address)?
pub fn is_loopback_host(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            d == "localhost" || d.ends_with(".localhost")
        }
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

/// https, or http to this machine: what OAuth 2.1 and MCP clients accept.
pub fn is_secure(url: &Url) -> bool {
    url.scheme() == "https" || (url.scheme() == "http" && is_loopback_host(url))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(s: &str) -> Url {
        Url::parse(s).expect("url")
    }

    #[test]
    fn protected_resource_metadata_is_looked_for_path_inserted_then_at_the_root() {
        assert_eq!(
            prm_locations(&u("https://Example.com/public/mcp")),
            (
                Some("https://example.com/.well-known/oauth-protected-resource/public/mcp".into()),
                "https://example.com/.well-known/oauth-protected-resource".into()
            )
        );
        // A trailing slash is dropped; no path: only the root form.
        assert_eq!(
            prm_locations(&u("https://example.com:8443/mcp/"))
                .0
                .as_deref(),
            Some("https://example.com:8443/.well-known/oauth-protected-resource/mcp")
        );
        assert_eq!(prm_locations(&u("https://example.com/")).0, None);
    }

    #[test]
    fn authorization_server_metadata_is_looked_for_in_the_mcp_order() {
        let with_path = as_locations(&u("https://auth.example.com/tenant1"));
        assert_eq!(
            with_path,
            [
                (
                    AsForm::Oauth,
                    "https://auth.example.com/.well-known/oauth-authorization-server/tenant1"
                        .to_owned()
                ),
                (
                    AsForm::OidcInserted,
                    "https://auth.example.com/.well-known/openid-configuration/tenant1".to_owned()
                ),
                (
                    AsForm::OidcAppended,
                    "https://auth.example.com/tenant1/.well-known/openid-configuration".to_owned()
                ),
            ]
        );
        let root = as_locations(&u("https://auth.example.com"));
        assert_eq!(root.len(), 2);
        assert_eq!(
            root[1].1,
            "https://auth.example.com/.well-known/openid-configuration"
        );
    }

    #[test]
    fn resources_compare_as_clients_compare_them() {
        let url = u("https://mcp.example.com/mcp/weather");
        assert_eq!(
            compare_resource("https://mcp.example.com/mcp/weather", &url),
            Sameness::Exact
        );
        assert_eq!(
            compare_resource("https://MCP.example.com:443/mcp/weather/", &url),
            Sameness::Normalised
        );
        assert_eq!(
            compare_resource("https://mcp.example.com", &url),
            Sameness::Parent
        );
        assert_eq!(
            compare_resource("https://mcp.example.com/mcp/weather2", &url),
            Sameness::Different
        );
        assert_eq!(
            compare_resource("https://mcp.example.com/mcp/weath", &url),
            Sameness::Different
        );
        assert_eq!(compare_resource("not a url", &url), Sameness::Different);
        // Given without a path, a URL reads with "/": the resource without it is the same.
        assert_eq!(
            compare_resource("https://a.example", &u("https://a.example")),
            Sameness::Exact
        );
    }

    #[test]
    fn https_is_required_beyond_this_machine() {
        assert!(is_secure(&u("https://mcp.example.com/mcp")));
        assert!(is_secure(&u("http://127.0.0.1:8080/mcp")));
        assert!(is_secure(&u("http://localhost:8080/mcp")));
        assert!(is_secure(&u("http://[::1]:8080/mcp")));
        assert!(!is_secure(&u("http://mcp.example.com/mcp")));
        assert!(!is_secure(&u("http://10.0.0.1/mcp")));
    }
}
