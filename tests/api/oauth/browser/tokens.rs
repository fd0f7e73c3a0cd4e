//! The token, revocation and introspection endpoints, and JWTs.

use super::*;

/// How a client authenticates at the token, revocation and introspection endpoints.
#[derive(Debug, Clone)]
pub enum ClientAuth {
    None,
    /// A public client: `client_id` in the body.
    Public(String),
    /// `client_secret_basic`.
    Basic(String, String),
    /// `client_secret_post`.
    Post(String, String),
    /// `private_key_jwt`: `client_id` and a signed client assertion.
    Assertion(String, String),
}

/// What the OAuth endpoints answer (RFC 6749 JSON), read from the one response wrapper.
impl ApiResponse {
    pub fn error(&self) -> &str {
        self.body["error"].as_str().unwrap_or("")
    }

    pub fn str(&self, key: &str) -> String {
        self.body[key]
            .as_str()
            .unwrap_or_else(|| panic!("{key} missing; {} {}", self.status, self.text))
            .to_owned()
    }

    pub fn access_token(&self) -> String {
        self.str("access_token")
    }

    pub fn refresh_token(&self) -> String {
        self.str("refresh_token")
    }

    #[track_caller]
    pub fn assert_ok(&self) -> &Self {
        assert_eq!(self.status, 200, "expected 200; body: {}", self.text);
        self
    }

    /// An RFC 6749 §5.2 error with this status and code.
    #[track_caller]
    pub fn assert_error(&self, status: u16, error: &str) {
        assert_eq!(
            (self.status, self.error()),
            (status, error),
            "expected {status} {error}; body: {}",
            self.text
        );
    }
}

/// A cookie-less client (what an MCP client's HTTP stack is).
pub fn bare_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// POSTs a urlencoded form to `{origin}{path}` with client authentication.
pub async fn post_endpoint(
    app: &TestApp,
    path: &str,
    auth: &ClientAuth,
    form: &[(&str, &str)],
) -> ApiResponse {
    let mut fields: Vec<(String, String)> = form
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let mut req = bare_client().post(app.url(path));
    match auth {
        ClientAuth::None => {}
        ClientAuth::Public(id) => fields.push(("client_id".into(), id.clone())),
        ClientAuth::Basic(id, secret) => {
            let enc =
                |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            let cred = STANDARD.encode(format!("{}:{}", enc(id), enc(secret)));
            req = req.header("authorization", format!("Basic {cred}"));
        }
        ClientAuth::Post(id, secret) => {
            fields.push(("client_id".into(), id.clone()));
            fields.push(("client_secret".into(), secret.clone()));
        }
        ClientAuth::Assertion(id, jwt) => {
            fields.push(("client_id".into(), id.clone()));
            fields.push((
                "client_assertion_type".into(),
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".into(),
            ));
            fields.push(("client_assertion".into(), jwt.clone()));
        }
    }
    ApiResponse::read(req.form(&fields).send().await.expect("request")).await
}

pub async fn token(app: &TestApp, auth: &ClientAuth, form: &[(&str, &str)]) -> ApiResponse {
    post_endpoint(app, "/oauth/token", auth, form).await
}

/// `grant_type=authorization_code` for the code `outcome` carries.
pub async fn exchange(
    app: &TestApp,
    auth: &ClientAuth,
    req: &AuthRequest,
    code: &str,
) -> ApiResponse {
    exchange_with(app, auth, req.redirect_uri(), code, &req.verifier).await
}

pub async fn exchange_with(
    app: &TestApp,
    auth: &ClientAuth,
    redirect_uri: &str,
    code: &str,
    verifier: &str,
) -> ApiResponse {
    token(
        app,
        auth,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", verifier),
        ],
    )
    .await
}

pub async fn refresh(app: &TestApp, auth: &ClientAuth, refresh_token: &str) -> ApiResponse {
    token(
        app,
        auth,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ],
    )
    .await
}

pub async fn revoke(app: &TestApp, auth: &ClientAuth, token: &str) -> ApiResponse {
    post_endpoint(app, "/oauth/revoke", auth, &[("token", token)]).await
}

pub async fn introspect(app: &TestApp, auth: &ClientAuth, token: &str) -> ApiResponse {
    post_endpoint(app, "/oauth/introspect", auth, &[("token", token)]).await
}

/// The decoded (header, claims) of a JWT, unverified.
pub fn jwt_parts(token: &str) -> (Value, Value) {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "a JWT has three parts: {token}");
    let decode = |s: &str| -> Value {
        let bytes = URL_SAFE_NO_PAD
            .decode(s.trim_end_matches('='))
            .unwrap_or_else(|e| panic!("JWT part is not base64url ({e}): {s}"));
        serde_json::from_slice(&bytes).expect("JWT part is JSON")
    };
    (decode(parts[0]), decode(parts[1]))
}

/// A space-separated scope as a set.
pub fn scope_set(s: &str) -> BTreeSet<String> {
    s.split_whitespace().map(str::to_owned).collect()
}

/// `POST {resource}` with a JSON-RPC `tools/list`: the front door's status and body.
pub async fn tools_list(resource: &str, access_token: &str) -> (u16, Value) {
    let res = McpRequest::to(&bare_client(), resource)
        .bearer(access_token)
        .tools_list()
        .await;
    (res.status, res.body)
}
