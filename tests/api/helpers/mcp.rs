//! MCP calls through the front door: `app.mcp(slug).bearer(token).call(method, params).await`
//! builds the one request every MCP client sends (a JSON-RPC POST to `/mcp/{slug}`, accepting
//! JSON and SSE) and reads the answer into the one [`ApiResponse`].

use serde_json::{Value, json};

use super::{ApiResponse, TestApp};

/// One message to a server's MCP URL; made by [`TestApp::mcp`].
#[must_use = "a request does nothing until it is sent"]
pub struct McpRequest {
    req: reqwest::RequestBuilder,
}

impl TestApp {
    /// The MCP URL of the server `slug` (the resource its tokens are for).
    pub fn mcp_url(&self, slug: &str) -> String {
        format!("{}/mcp/{slug}", self.address)
    }

    /// A message to the server `slug` through the front door, without credentials yet.
    pub fn mcp(&self, slug: &str) -> McpRequest {
        McpRequest::to(&self.client, &self.mcp_url(slug))
    }
}

impl McpRequest {
    /// A message to any MCP URL (another origin, a host-routed name), from `client`.
    pub fn to(client: &reqwest::Client, url: &str) -> McpRequest {
        McpRequest {
            req: client
                .post(url)
                .header("content-type", "application/json")
                .header("accept", "application/json, text/event-stream"),
        }
    }

    /// `Authorization: Bearer {token}`.
    pub fn bearer(self, token: &str) -> McpRequest {
        McpRequest {
            req: self.req.bearer_auth(token),
        }
    }

    /// `Authorization: Bearer` when there is a token, nothing otherwise.
    pub fn bearer_opt(self, token: Option<&str>) -> McpRequest {
        match token {
            Some(t) => self.bearer(t),
            None => self,
        }
    }

    /// `Mcp-Session-Id: {id}` when there is one.
    pub fn session(self, id: Option<&str>) -> McpRequest {
        match id {
            Some(id) => self.header("mcp-session-id", id),
            None => self,
        }
    }

    /// Any other header (or one of the above, replaced).
    pub fn header(self, name: &str, value: &str) -> McpRequest {
        McpRequest {
            req: self.req.header(name, value),
        }
    }

    /// A JSON-RPC request `{jsonrpc, id: 1, method, params}` (no `params` when `Null`).
    pub async fn call(self, method: &str, params: Value) -> ApiResponse {
        self.send(request(method, params)).await
    }

    /// `tools/list`.
    pub async fn tools_list(self) -> ApiResponse {
        self.call("tools/list", Value::Null).await
    }

    /// `tools/call` of `name` with `arguments`.
    pub async fn tool(self, name: &str, arguments: Value) -> ApiResponse {
        self.call(
            "tools/call",
            json!({ "name": name, "arguments": arguments }),
        )
        .await
    }

    /// Any message as it is (batches, notifications, messages with other ids, bad ones).
    pub async fn send(self, message: Value) -> ApiResponse {
        ApiResponse::read(self.send_streaming(message).await).await
    }

    /// Bytes as they are (what no JSON serializer writes).
    pub async fn send_bytes(self, body: impl Into<reqwest::Body>) -> ApiResponse {
        ApiResponse::read(self.req.body(body).send().await.expect("request")).await
    }

    /// The answer unread, for tests that read an SSE stream as it comes.
    pub async fn send_streaming(self, message: Value) -> reqwest::Response {
        self.req
            .body(message.to_string())
            .send()
            .await
            .expect("request")
    }
}

/// A JSON-RPC request with id 1 (no `params` when `Null`).
pub fn request(method: &str, params: Value) -> Value {
    let mut m = json!({ "jsonrpc": "2.0", "id": 1, "method": method });
    if !params.is_null() {
        m["params"] = params;
    }
    m
}

impl ApiResponse {
    /// The body as JSON; panics (showing it) when it is not JSON.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| {
            panic!(
                "status {}: body is not JSON ({e}): {}",
                self.status, self.text
            )
        })
    }

    /// The first text content of a 200 `tools/call` result.
    #[track_caller]
    pub fn tool_text(&self) -> String {
        assert_eq!(self.status, 200, "tools/call: {}", self.text);
        self.body["result"]["content"][0]["text"]
            .as_str()
            .unwrap_or_else(|| panic!("no text in {}", self.text))
            .to_owned()
    }

    /// `WWW-Authenticate`, or "" without one.
    pub fn www_authenticate(&self) -> &str {
        self.header("www-authenticate").unwrap_or("")
    }
}
