//! The HTTP side of the client: one request per call, the `{"data": …}` envelope unwrapped,
//! pagination walked, and `{"error": {"code", "message", "details"}}` turned into one message.

use std::fmt;
use std::time::Duration;

use anyhow::{Context, anyhow};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::domain::Secret;

/// Page size used when walking a list (the API's maximum).
const PAGE_LIMIT: usize = 100;
/// A guard against a server that keeps answering `hasMore: true`.
const MAX_PAGES: usize = 10_000;
const TIMEOUT: Duration = Duration::from_secs(60);
/// How long a deploy or rollback may take: the server answers when its pipeline has finished
/// (start, health check with its own timeout, traffic swap).
pub const PIPELINE_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// A live stream with no bytes for this long is dead (the server sends a keepalive every 15 s).
pub const STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// How the client proves who it is.
pub enum Credential {
    None,
    ApiKey(Secret),
    Session(Secret),
}

pub struct Api {
    base: String,
    http: reqwest::Client,
    credential: Credential,
}

/// A non-2xx answer from the API. Displays as the API's message (plus the fields a 422 names).
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ApiError {}

impl Api {
    pub fn new(base: &str, credential: Credential) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("ezforge-cli/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .timeout(TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Self {
            base: base.to_owned(),
            http,
            credential,
        })
    }

    pub fn is_api_key(&self) -> bool {
        matches!(self.credential, Credential::ApiKey(_))
    }

    pub fn is_session(&self) -> bool {
        matches!(self.credential, Credential::Session(_))
    }

    /// `GET /v1{path}` -> its `data`.
    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.data(Method::GET, path, &[], None).await
    }

    /// `GET /v1{path}?{query}` -> its `data`.
    pub async fn get_with(&self, path: &str, query: &[(&str, String)]) -> anyhow::Result<Value> {
        self.data(Method::GET, path, query, None).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.data(Method::POST, path, &[], Some(body)).await
    }

    /// A POST the server answers only when a long job has finished (a deploy, a rollback).
    pub async fn post_slow(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let res = self
            .send(Method::POST, path, &[], Some(body), PIPELINE_TIMEOUT)
            .await?;
        match self.json_body(path, res, PIPELINE_TIMEOUT).await? {
            Some(v) => Ok(unwrap_data(v)),
            None => Err(self.unexpected(path, "a JSON body")),
        }
    }

    pub async fn put(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.data(Method::PUT, path, &[], Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.data(Method::PATCH, path, &[], Some(body)).await
    }

    /// A call answered by 204 (or by a body that does not matter).
    pub async fn delete(&self, path: &str) -> anyhow::Result<()> {
        self.call(Method::DELETE, path, &[], None).await.map(drop)
    }

    pub async fn post_empty(&self, path: &str) -> anyhow::Result<()> {
        self.call(Method::POST, path, &[], None).await.map(drop)
    }

    /// Every item of a paginated list, following `meta.cursor` while `meta.hasMore`.
    pub async fn list(&self, path: &str) -> anyhow::Result<Vec<Value>> {
        self.list_first(path, usize::MAX).await
    }

    /// The first `max` items of a paginated list (pages of at most 100, as many as it takes).
    pub async fn list_first(&self, path: &str, max: usize) -> anyhow::Result<Vec<Value>> {
        let mut items = Vec::new();
        if max == 0 {
            return Ok(items);
        }
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let page = (max - items.len()).min(PAGE_LIMIT);
            let mut query = vec![("limit", page.to_string())];
            if let Some(c) = &cursor {
                query.push(("cursor", c.clone()));
            }
            let body = self
                .call(Method::GET, path, &query, None)
                .await?
                .unwrap_or(Value::Null);
            match body.get("data") {
                Some(Value::Array(page)) => items.extend(page.iter().cloned()),
                _ => return Err(self.unexpected(path, "a list")),
            }
            if items.len() >= max {
                items.truncate(max);
                return Ok(items);
            }
            let meta = body.get("meta");
            let has_more = meta
                .and_then(|m| m.get("hasMore"))
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let next = meta
                .and_then(|m| m.get("cursor"))
                .and_then(Value::as_str)
                .map(str::to_owned);
            match next {
                Some(n) if has_more && cursor.as_deref() != Some(n.as_str()) => cursor = Some(n),
                _ => return Ok(items),
            }
        }
        Ok(items)
    }

    async fn data(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        match self.call(method, path, query, body).await? {
            Some(v) => Ok(unwrap_data(v)),
            None => Err(self.unexpected(path, "a JSON body")),
        }
    }

    /// Sends one request; `Ok(None)` for an empty 2xx body.
    async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> anyhow::Result<Option<Value>> {
        let res = self.send(method, path, query, body, TIMEOUT).await?;
        self.json_body(path, res, TIMEOUT).await
    }

    /// `GET /v1{path}?{query}` as `text/event-stream`: the response, its body not yet read, once
    /// the server has answered 2xx. No overall deadline; a stream silent for a minute fails.
    pub async fn stream(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> anyhow::Result<reqwest::Response> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("ezforge-cli/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(STREAM_IDLE_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .context("cannot build the HTTP client")?;
        let req = self
            .request(&http, Method::GET, path, query)
            .header(reqwest::header::ACCEPT, "text/event-stream");
        let res = req
            .send()
            .await
            .map_err(|e| self.transport(e, STREAM_IDLE_TIMEOUT))?;
        self.check(res, STREAM_IDLE_TIMEOUT).await
    }

    /// The request with the URL, query and credential filled in.
    fn request(
        &self,
        http: &reqwest::Client,
        method: Method,
        path: &str,
        query: &[(&str, String)],
    ) -> reqwest::RequestBuilder {
        let url = format!("{}/v1{path}", self.base);
        let mut req = http.request(method, &url);
        if !query.is_empty() {
            req = req.query(query);
        }
        match &self.credential {
            Credential::ApiKey(s) | Credential::Session(s) => req.bearer_auth(s.expose()),
            Credential::None => req,
        }
    }

    /// Sends one JSON request with a deadline; a non-2xx answer becomes an `ApiError`.
    async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        timeout: Duration,
    ) -> anyhow::Result<reqwest::Response> {
        let mut req = self
            .request(&self.http, method, path, query)
            .header(reqwest::header::ACCEPT, "application/json")
            .timeout(timeout);
        if let Some(b) = body {
            req = req.json(b);
        }
        let res = req.send().await.map_err(|e| self.transport(e, timeout))?;
        self.check(res, timeout).await
    }

    /// The response when it is a 2xx; else its `{"error": …}` as an `ApiError`.
    async fn check(
        &self,
        res: reqwest::Response,
        timeout: Duration,
    ) -> anyhow::Result<reqwest::Response> {
        let status = res.status();
        if status.is_success() {
            return Ok(res);
        }
        let retry_after = res
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let text = res.text().await.map_err(|e| self.transport(e, timeout))?;
        let mut err = error_from_body(status, &text);
        if let Some(s) = retry_after
            && status == StatusCode::TOO_MANY_REQUESTS
        {
            err.message.push_str(&format!(" (retry after {s} s)"));
        }
        if status == StatusCode::UNAUTHORIZED && self.is_session() {
            err.message
                .push_str("\nhint: the session may have ended; run `ezforge auth login`");
        }
        Err(err.into())
    }

    /// A 2xx response's body as JSON; `Ok(None)` when it is empty.
    async fn json_body(
        &self,
        path: &str,
        res: reqwest::Response,
        timeout: Duration,
    ) -> anyhow::Result<Option<Value>> {
        let text = res.text().await.map_err(|e| self.transport(e, timeout))?;
        if text.trim().is_empty() {
            return Ok(None);
        }
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|_| self.unexpected(path, "JSON"))
    }

    fn unexpected(&self, path: &str, what: &str) -> anyhow::Error {
        anyhow!(
            "unexpected answer from {}/v1{path}: expected {what}; is {} an ezforge server?",
            self.base,
            self.base
        )
    }

    pub fn transport(&self, e: reqwest::Error, timeout: Duration) -> anyhow::Error {
        if e.is_timeout() {
            return anyhow!(
                "no answer from {} within {} s",
                self.base,
                timeout.as_secs()
            );
        }
        let mut root: &dyn std::error::Error = &e;
        while let Some(next) = root.source() {
            root = next;
        }
        anyhow!("cannot reach {}: {root}", self.base)
    }
}

/// An answer's `warnings`, each as a line to print. They may quote what a remote party wrote
/// (an issuer's discovery document): control characters become `?`, as in every other output.
fn warnings(v: &Value) -> Vec<String> {
    v.get("warnings")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|w| format!("warning: {}", super::output::clean(w)))
        .collect()
}

/// `{"data": x}` -> `x`; anything else as it is. The answer's `warnings` (a change made, with
/// something the operator should know) go to stderr.
fn unwrap_data(mut v: Value) -> Value {
    for w in warnings(&v) {
        eprintln!("{w}");
    }
    match v.get_mut("data") {
        Some(d) => d.take(),
        None => v,
    }
}

/// Reads `{"error": {"code", "message", "details"}}`; falls back to the HTTP status.
pub fn error_from_body(status: StatusCode, body: &str) -> ApiError {
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let e = v.get("error");
    let mut message = e
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str)
        .map(super::output::clean)
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| format!("the server answered {status}"));
    let details = e.and_then(|e| e.get("details"));
    if let Some(scope) = details
        .and_then(|d| d.get("requiredScope"))
        .and_then(Value::as_str)
        && !message.contains(scope)
    {
        message.push_str(&format!(
            " (requires scope {})",
            super::output::clean(scope)
        ));
    }
    if let Some(Value::Object(fields)) = details.and_then(|d| d.get("fields")) {
        for (field, reason) in fields {
            let reason = match reason {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            message.push_str(&format!(
                "\n  {}: {}",
                super::output::clean(field),
                super::output::clean(&reason)
            ));
        }
    }
    ApiError { status, message }
}

/// A path segment with everything outside RFC 3986 "unreserved" percent-encoded, so that an id,
/// a slug or a URL-shaped OAuth client_id each stay one segment.
pub fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_quoting_a_remote_party_cannot_reach_the_terminal() {
        let answer = serde_json::json!({ "warnings": ["issuer says x\u{1b}]52;c;aGk=\u{7}"] });
        assert_eq!(warnings(&answer), ["warning: issuer says x?]52;c;aGk=?"]);
        assert!(warnings(&serde_json::json!({ "data": {} })).is_empty());
    }

    #[test]
    fn api_errors_show_the_message_and_the_fields() {
        let e = error_from_body(
            StatusCode::NOT_FOUND,
            r#"{"error":{"code":"NOT_FOUND","message":"Server not found"}}"#,
        );
        assert_eq!(e.to_string(), "Server not found");
        assert_eq!(e.status, StatusCode::NOT_FOUND);

        let e = error_from_body(
            StatusCode::UNPROCESSABLE_ENTITY,
            r#"{"error":{"code":"VALIDATION_FAILED","message":"invalid input","details":{"fields":{"byoaConfig.issuer":"must be an https URL"}}}}"#,
        );
        assert_eq!(
            e.to_string(),
            "invalid input\n  byoaConfig.issuer: must be an https URL"
        );

        let e = error_from_body(
            StatusCode::FORBIDDEN,
            r#"{"error":{"code":"FORBIDDEN","message":"missing scope","details":{"requiredScope":"servers:write"}}}"#,
        );
        assert_eq!(
            e.to_string(),
            "missing scope (requires scope servers:write)"
        );
    }

    #[test]
    fn a_body_that_is_not_the_error_shape_falls_back_to_the_status() {
        let e = error_from_body(StatusCode::BAD_GATEWAY, "<html>bad gateway</html>");
        assert_eq!(e.to_string(), "the server answered 502 Bad Gateway");
    }

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(seg("srv_ABC-1.x~"), "srv_ABC-1.x~");
        assert_eq!(
            seg("https://app.example/c?x=1"),
            "https%3A%2F%2Fapp.example%2Fc%3Fx%3D1"
        );
        assert_eq!(seg("a b/é"), "a%20b%2F%C3%A9");
    }
}
