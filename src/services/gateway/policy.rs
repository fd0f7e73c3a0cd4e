//! Which scope each JSON-RPC message needs. `initialize`, `ping`, notifications and responses:
//! any valid token. Lists and reads: `mcp:read`. `tools/call`: the server's override for the
//! tool, else `mcp:read` for read-only tools, `mcp:write` for state-changing ones, and
//! `mcp:execute` for tools the gateway knows nothing about. `mcp:execute` satisfies any MCP scope.

use std::collections::HashMap;
use std::sync::RwLock;

use super::registry::ServerEntry;
use crate::domain::scopes::{MCP_EXECUTE, MCP_READ, MCP_SCOPES, MCP_WRITE};

pub use crate::domain::jsonrpc::{Message, ParseError, parse};

/// What the gateway learned about a tool from `tools/list` annotations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolKind {
    ReadOnly,
    StateChanging,
}

/// Tool annotations per server id.
#[derive(Default)]
pub struct ToolTable {
    by_server: RwLock<HashMap<String, HashMap<String, ToolKind>>>,
}

impl ToolTable {
    pub fn kind(&self, server_id: &str, tool: &str) -> Option<ToolKind> {
        self.by_server
            .read()
            .ok()?
            .get(server_id)?
            .get(tool)
            .copied()
    }

    /// Forgets what was learned of the servers `keep` says no to: a new upstream (another
    /// deployment, another URL) may annotate the same tools otherwise.
    pub fn retain(&self, mut keep: impl FnMut(&str) -> bool) {
        if let Ok(mut map) = self.by_server.write() {
            map.retain(|id, _| keep(id));
        }
    }

    /// Learns from a `tools/list` result (`{"tools":[{"name","annotations":{…}}]}`) if
    /// `still_current`, asked under the table's lock: a registry rebuild that forgets this
    /// server's annotations (see [`Self::retain`]) cannot come between the question and the
    /// learning.
    pub fn learn(
        &self,
        server_id: &str,
        result: &serde_json::Value,
        still_current: impl FnOnce() -> bool,
    ) {
        let Some(tools) = result.get("tools").and_then(|t| t.as_array()) else {
            return;
        };
        let Ok(mut map) = self.by_server.write() else {
            return;
        };
        if !still_current() {
            return;
        }
        let table = map.entry(server_id.to_owned()).or_default();
        for tool in tools.iter().take(10_000) {
            let Some(name) = tool.get("name").and_then(|n| n.as_str()) else {
                continue;
            };
            let ann = tool.get("annotations");
            let hint = |k: &str| ann.and_then(|a| a.get(k)).and_then(|v| v.as_bool());
            let kind = match (hint("readOnlyHint"), hint("destructiveHint")) {
                (Some(true), _) => Some(ToolKind::ReadOnly),
                (Some(false), _) | (None, Some(true)) => Some(ToolKind::StateChanging),
                _ => None,
            };
            match kind {
                Some(k) => {
                    table.insert(name.to_owned(), k);
                }
                None => {
                    table.remove(name);
                }
            }
        }
    }
}

/// The scope a message needs, or `None` when any valid token will do.
pub fn required(msg: &Message<'_>, server: &ServerEntry, tools: &ToolTable) -> Option<String> {
    let method = msg.method.as_deref()?;
    match method {
        "initialize" | "ping" | "server/discover" => None,
        m if m.starts_with("notifications/") => None,
        "tools/call" => {
            let name = msg
                .params
                .as_ref()
                .and_then(|p| p.name.as_deref())
                .unwrap_or("");
            if let Some(s) = server.tool_scopes.get(name) {
                return Some(s.clone());
            }
            Some(
                match tools.kind(&server.id, name) {
                    Some(ToolKind::ReadOnly) => MCP_READ,
                    Some(ToolKind::StateChanging) => MCP_WRITE,
                    None => MCP_EXECUTE,
                }
                .to_owned(),
            )
        }
        m if m.ends_with("/list") => Some(MCP_READ.to_owned()),
        "resources/read"
        | "prompts/get"
        | "completion/complete"
        | "resources/subscribe"
        | "resources/unsubscribe" => Some(MCP_READ.to_owned()),
        // Anything else (logging/setLevel, future methods): the broadest MCP scope.
        _ => Some(MCP_EXECUTE.to_owned()),
    }
}

/// Does a token holding `scopes` satisfy `needed`? `mcp:execute` satisfies any MCP scope.
pub fn satisfied(scopes: &[String], needed: &str) -> bool {
    scopes.iter().any(|s| s == needed)
        || (MCP_SCOPES.contains(&needed) && scopes.iter().any(|s| s == MCP_EXECUTE))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(tool_scopes: &[(&str, &str)]) -> ServerEntry {
        ServerEntry::for_test("https://x", "s", tool_scopes)
    }

    fn need(body: &str, server: &ServerEntry, tools: &ToolTable) -> Vec<Option<String>> {
        parse(body.as_bytes())
            .expect("json")
            .iter()
            .map(|m| required(m, server, tools))
            .collect()
    }

    #[test]
    fn a_stored_reserved_tool_scope_requires_mcp_execute() {
        // Stored before such names were refused: never a scope that `email` or
        // `offline_access` in a token satisfies, nor one the server advertises.
        let s = entry(&[
            ("a", "email"),
            ("b", "openid"),
            ("c", "offline_access"),
            ("d", "repo:delete"),
        ]);
        let t = ToolTable::default();
        let call = |name: &str| {
            format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"{name}"}}}}"#
            )
        };
        for tool in ["a", "b", "c"] {
            assert_eq!(need(&call(tool), &s, &t), [Some("mcp:execute".into())]);
        }
        assert_eq!(need(&call("d"), &s, &t), [Some("repo:delete".into())]);
        let identity: Vec<String> = ["mcp:read", "openid", "email", "offline_access"]
            .map(str::to_owned)
            .to_vec();
        assert!(!satisfied(&identity, "mcp:execute"));
        assert!(
            !s.scopes_supported
                .iter()
                .any(|x| x == "email" || x == "openid")
        );
    }

    #[test]
    fn methods_map_to_scopes() {
        let s = entry(&[("nuke", "admin:danger")]);
        let t = ToolTable::default();
        assert_eq!(
            need(r#"{"jsonrpc":"2.0","id":1,"method":"initialize"}"#, &s, &t),
            [None]
        );
        assert_eq!(
            need(
                r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
                &s,
                &t
            ),
            [None]
        );
        assert_eq!(
            need(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#, &s, &t),
            [Some("mcp:read".into())]
        );
        assert_eq!(
            need(r#"{"jsonrpc":"2.0","id":1,"result":{}}"#, &s, &t),
            [None]
        );
        assert_eq!(
            need(
                r#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"nuke"}},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"x"}}]"#,
                &s,
                &t
            ),
            [Some("admin:danger".into()), Some("mcp:execute".into())]
        );
        t.learn(
            "srv_1",
            &serde_json::json!({"tools":[{"name":"get","annotations":{"readOnlyHint":true}},{"name":"put","annotations":{"readOnlyHint":false}}]}),
            || true,
        );
        assert_eq!(
            need(
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get"}}"#,
                &s,
                &t
            ),
            [Some("mcp:read".into())]
        );
        assert_eq!(
            need(
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"put"}}"#,
                &s,
                &t
            ),
            [Some("mcp:write".into())]
        );
    }

    #[test]
    fn execute_satisfies_mcp_scopes_only() {
        let ex = vec!["mcp:execute".to_owned()];
        assert!(satisfied(&ex, "mcp:read"));
        assert!(satisfied(&ex, "mcp:write"));
        assert!(!satisfied(&ex, "admin:danger"));
        assert!(!satisfied(&["mcp:write".to_owned()], "mcp:read"));
    }
}
