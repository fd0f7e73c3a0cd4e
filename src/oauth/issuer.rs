//! Which authorization server a request speaks to, and which MCP server its token is for.
//!
//! Every managed server has an issuer of its own, `{public_url}/oauth/mcp/{slug}` (listed in the
//! server's protected-resource metadata, with RFC 8414 metadata at
//! `/.well-known/oauth-authorization-server/oauth/mcp/{slug}`), whose endpoints serve that one
//! server: a client that discovered server X gets a token for X even when it names no
//! `resource`. The deployment's root issuer (`public_url`) serves every managed server, named
//! by `resource`. The issuer string is byte-identical in the metadata's `issuer`, the
//! protected-resource metadata, the tokens' `iss` and the `iss` of every redirect (RFC 9207).

use std::sync::Arc;

use actix_web::HttpRequest;
use actix_web::http::StatusCode;
use url::Url;

use super::OAuthError;
use crate::domain::validate::normalize_resource;
use crate::services::gateway::Gateway;
use crate::services::gateway::registry::{ServerAuth, ServerEntry};
use crate::services::gateway::urls::ServerUrls;

/// The authorization server of one request.
#[derive(Clone)]
pub struct Issuer {
    /// The issuer identifier.
    pub url: String,
    /// The one managed server this issuer serves; `None`: the root issuer.
    pub server: Option<Arc<ServerEntry>>,
}

impl Issuer {
    pub fn root(urls: &ServerUrls) -> Issuer {
        Issuer {
            url: urls.public_url().to_owned(),
            server: None,
        }
    }

    /// The issuer of a request: a managed server's when the route names one (`{slug}`), else
    /// the root. A slug that names no managed server is a 404: no such authorization server.
    pub fn of(req: &HttpRequest, gateway: &Gateway) -> Result<Issuer, OAuthError> {
        let Some(slug) = req.match_info().get("slug") else {
            return Ok(Issuer::root(&gateway.urls));
        };
        gateway
            .registry
            .get(slug)
            .filter(|s| matches!(s.auth, ServerAuth::Managed))
            .map(|server| Issuer {
                url: gateway.urls.managed_issuer(&server.slug),
                server: Some(server),
            })
            .ok_or_else(|| {
                OAuthError::new(
                    StatusCode::NOT_FOUND,
                    "invalid_request",
                    "no such authorization server",
                )
            })
    }

    /// The URL of one of this issuer's endpoints (`authorize`, `token`…).
    pub fn endpoint(&self, name: &str) -> String {
        match self.server {
            Some(_) => format!("{}/{name}", self.url),
            None => format!("{}/oauth/{name}", self.url),
        }
    }

    /// The server a request's `resource` parameters (RFC 8707) name, normalised (case of the
    /// scheme and host, default port, one trailing slash). At a server's own issuer they may be
    /// left out, or name its bare origin; at the root issuer exactly one is required. Either
    /// way only a managed server of this issuer can be named (`invalid_target` otherwise).
    pub fn target(
        &self,
        gateway: &Gateway,
        resources: &[&str],
    ) -> Result<Arc<ServerEntry>, OAuthError> {
        let mut named: Vec<String> = Vec::new();
        for r in resources {
            let n = normalize_resource(r).ok_or_else(|| {
                OAuthError::invalid_target(
                    "resource must be an absolute http(s) URI without query or fragment",
                )
            })?;
            if !named.contains(&n) {
                named.push(n);
            }
        }
        match (&self.server, named.as_slice()) {
            (Some(server), []) => Ok(server.clone()),
            (Some(server), [one]) => {
                let own = normalize_resource(&server.resource).unwrap_or_else(|| server.resource.clone());
                if *one == own || Some(one.as_str()) == origin_of(&own).as_deref() {
                    Ok(server.clone())
                } else {
                    Err(OAuthError::invalid_target(
                        "resource names another server than the one this authorization server serves",
                    ))
                }
            }
            (None, []) => Err(OAuthError::invalid_target(
                "resource is required here: name the MCP server, or use the authorization server its protected-resource metadata lists",
            )),
            (None, [one]) => gateway
                .registry
                .by_resource(one)
                .filter(|s| matches!(s.auth, ServerAuth::Managed))
                .ok_or_else(|| {
                    OAuthError::invalid_target(
                        "resource must be the URI of one MCP server protected by this authorization server",
                    )
                }),
            (_, _) => Err(OAuthError::invalid_target("give one resource")),
        }
    }
}

/// The origin of a normalised resource URI.
fn origin_of(normalized: &str) -> Option<String> {
    Url::parse(normalized)
        .ok()
        .map(|u| u.origin().ascii_serialization())
}
