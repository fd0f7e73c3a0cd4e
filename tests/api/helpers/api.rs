//! One HTTP answer read completely (`ApiResponse`), and the control API calls that make it.

use super::*;

/// A password every helper-made user gets (long enough for the password rules).
pub const USER_PASSWORD: &str = "a-perfectly-fine-password";

/// A client without a cookie store: what a CLI or script sends, nothing implicit.
pub fn plain_client() -> reqwest::Client {
    plain_client_trusting(None)
}

/// A [`plain_client`] that also trusts this PEM certificate (an app's self-signed one).
pub fn plain_client_trusting(pem: Option<&[u8]>) -> reqwest::Client {
    // reqwest is built without a default TLS provider; the app installs one at start, but a
    // test that only runs the binary must do it itself.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mut builder = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none());
    if let Some(pem) = pem {
        builder = builder.add_root_certificate(reqwest::Certificate::from_pem(pem).expect("pem"));
    }
    builder.build().expect("client")
}

/// One control API answer, read completely.
#[derive(Debug)]
pub struct ApiResponse {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
    /// The body as JSON; `Null` when empty or not JSON.
    pub body: serde_json::Value,
}

impl ApiResponse {
    pub async fn read(res: reqwest::Response) -> ApiResponse {
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let text = res.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
        ApiResponse {
            status,
            headers,
            text,
            body,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// `error.code` of an error answer.
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }

    /// Panics unless the status is `want`; shows the body otherwise.
    #[track_caller]
    pub fn expect(&self, want: u16) -> &serde_json::Value {
        assert_eq!(self.status, want, "unexpected status; body: {}", self.text);
        &self.body
    }

    /// Asserts docs/api.md's error shape: `{"error":{"code","message","details"}}`.
    #[track_caller]
    pub fn assert_error_shape(&self) {
        let e = &self.body["error"];
        assert!(
            e["code"].as_str().is_some_and(
                |c| !c.is_empty() && c.chars().all(|c| c.is_ascii_uppercase() || c == '_')
            ),
            "error.code must be SCREAMING_SNAKE; status {} body: {}",
            self.status,
            self.text
        );
        assert!(
            e["message"].as_str().is_some_and(|m| !m.is_empty()),
            "error.message; body: {}",
            self.text
        );
        assert!(
            e["details"].is_object(),
            "error.details must be an object; body: {}",
            self.text
        );
    }

    /// A 422 `VALIDATION_FAILED` whose `details.fields` names `field`.
    #[track_caller]
    pub fn assert_invalid(&self, field: &str) {
        assert_eq!(
            self.status, 422,
            "expected 422 for {field}; body: {}",
            self.text
        );
        self.assert_error_shape();
        assert_eq!(self.code(), "VALIDATION_FAILED", "body: {}", self.text);
        assert!(
            self.body["error"]["details"]["fields"].get(field).is_some(),
            "details.fields must name {field}; body: {}",
            self.text
        );
    }
}

/// Sends `method path` with an optional bearer token and JSON body, from a cookie-less client
/// (so that a login answered here leaves no cookie behind to authenticate later calls).
pub async fn call(
    app: &TestApp,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&serde_json::Value>,
) -> ApiResponse {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut req = app.plain.request(method, app.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(b);
    }
    ApiResponse::read(req.send().await.expect("request")).await
}

pub async fn get_as(app: &TestApp, token: &str, path: &str) -> ApiResponse {
    call(app, "GET", path, Some(token), None).await
}

pub async fn post_as(
    app: &TestApp,
    token: &str,
    path: &str,
    body: serde_json::Value,
) -> ApiResponse {
    call(app, "POST", path, Some(token), Some(&body)).await
}

pub async fn patch_as(
    app: &TestApp,
    token: &str,
    path: &str,
    body: serde_json::Value,
) -> ApiResponse {
    call(app, "PATCH", path, Some(token), Some(&body)).await
}

pub async fn put_as(
    app: &TestApp,
    token: &str,
    path: &str,
    body: serde_json::Value,
) -> ApiResponse {
    call(app, "PUT", path, Some(token), Some(&body)).await
}

pub async fn delete_as(app: &TestApp, token: &str, path: &str) -> ApiResponse {
    call(app, "DELETE", path, Some(token), None).await
}

/// Sends raw bytes with a content type (malformed JSON, huge bodies).
pub async fn send_raw(
    app: &TestApp,
    method: &str,
    path: &str,
    token: Option<&str>,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> ApiResponse {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut req = plain_client().request(method, app.url(path)).body(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(ct) = content_type {
        req = req.header(reqwest::header::CONTENT_TYPE, ct);
    }
    ApiResponse::read(req.send().await.expect("request")).await
}
