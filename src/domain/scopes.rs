//! Scopes: the control API's fixed API-key scopes, and the MCP scopes tokens carry.

use std::fmt;

/// The scopes an API key may hold (docs/api.md). A small bit set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiScope {
    ServersRead,
    ServersWrite,
    DeploymentsRead,
    DeploymentsWrite,
    LogsRead,
    MetricsRead,
    BillingRead,
}

impl ApiScope {
    pub const ALL: [ApiScope; 7] = [
        ApiScope::ServersRead,
        ApiScope::ServersWrite,
        ApiScope::DeploymentsRead,
        ApiScope::DeploymentsWrite,
        ApiScope::LogsRead,
        ApiScope::MetricsRead,
        ApiScope::BillingRead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ApiScope::ServersRead => "servers:read",
            ApiScope::ServersWrite => "servers:write",
            ApiScope::DeploymentsRead => "deployments:read",
            ApiScope::DeploymentsWrite => "deployments:write",
            ApiScope::LogsRead => "logs:read",
            ApiScope::MetricsRead => "metrics:read",
            ApiScope::BillingRead => "billing:read",
        }
    }

    pub fn parse(s: &str) -> Option<ApiScope> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl fmt::Display for ApiScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ApiScopes(u8);

impl ApiScopes {
    pub fn contains(self, s: ApiScope) -> bool {
        self.0 & s.bit() != 0
    }

    pub fn insert(&mut self, s: ApiScope) {
        self.0 |= s.bit();
    }

    pub fn is_subset_of(self, other: ApiScopes) -> bool {
        self.0 & !other.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = ApiScope> {
        ApiScope::ALL.into_iter().filter(move |s| self.contains(*s))
    }

    /// From stored, space-separated text (unknown names are ignored).
    pub fn from_stored(s: &str) -> ApiScopes {
        let mut out = ApiScopes::default();
        for name in s.split_whitespace() {
            if let Some(scope) = ApiScope::parse(name) {
                out.insert(scope);
            }
        }
        out
    }

    pub fn to_stored(self) -> String {
        self.iter()
            .map(ApiScope::as_str)
            .collect::<Vec<_>>()
            .join(" ")
    }

    pub fn names(self) -> Vec<&'static str> {
        self.iter().map(ApiScope::as_str).collect()
    }
}

/// The MCP scopes (the hosted service's), offered by every server.
pub const MCP_READ: &str = "mcp:read";
pub const MCP_WRITE: &str = "mcp:write";
pub const MCP_EXECUTE: &str = "mcp:execute";
pub const OFFLINE_ACCESS: &str = "offline_access";
pub const MCP_SCOPES: [&str; 4] = [MCP_READ, MCP_WRITE, MCP_EXECUTE, OFFLINE_ACCESS];

/// Scopes that OpenID Connect (Core §5.4, §11) and refresh tokens give their own meaning: they
/// say who the user is or how long a client stays connected, and any client may ask for them.
/// A tool's scope is never one of these (else asking for `email` would reach the tool).
pub const RESERVED_SCOPES: [&str; 6] = [
    "openid",
    "profile",
    "email",
    OFFLINE_ACCESS,
    "address",
    "phone",
];

pub fn is_reserved(scope: &str) -> bool {
    RESERVED_SCOPES.contains(&scope)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_scopes_round_trip_and_subset() {
        let s = ApiScopes::from_stored("servers:read deployments:write bogus");
        assert!(s.contains(ApiScope::ServersRead));
        assert!(!s.contains(ApiScope::ServersWrite));
        assert_eq!(s.to_stored(), "servers:read deployments:write");
        assert!(ApiScopes::from_stored("servers:read").is_subset_of(s));
        assert!(!ApiScopes::from_stored("servers:write").is_subset_of(s));
    }
}
