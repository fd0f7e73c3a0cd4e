//! Fixtures: the admin, one project, one server routed to a fake upstream.

use super::*;

/// A control API call with a bearer session token; (status, body).
pub async fn api(
    app: &TestApp,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut req = bare_client().request(method, app.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = ApiResponse::read(req.send().await.expect("request")).await;
    (r.status, r.body)
}

pub async fn session_token(app: &TestApp, email: &str, password: &str) -> String {
    let (status, body) = api(
        app,
        "POST",
        "/v1/auth/login",
        None,
        Some(json!({ "email": email, "password": password })),
    )
    .await;
    assert_eq!(status, 200, "login {email}: {body}");
    body["data"]["token"].as_str().expect("token").to_owned()
}

pub struct World {
    pub app: TestApp,
    pub up: FakeUpstream,
    /// The admin's session token (bearer).
    pub admin: String,
    pub admin_id: String,
    /// The project's slug.
    pub project: String,
    pub server_id: String,
    pub slug: String,
    /// The server's resource URI (`{issuer}/mcp/{slug}`).
    pub resource: String,
}

pub async fn world() -> World {
    world_with(|_| {}).await
}

pub async fn world_with(f: impl FnOnce(&mut ezforge::Config)) -> World {
    let up = FakeUpstream::start().await;
    let app = TestApp::builder().config(f).spawn().await;
    let admin = session_token(&app, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let (status, me) = api(&app, "GET", "/v1/auth/session", Some(&admin), None).await;
    assert_eq!(status, 200, "{me}");
    let admin_id = me["data"]["user"]["id"].as_str().expect("id").to_owned();
    let (status, project) = api(
        &app,
        "POST",
        "/v1/projects",
        Some(&admin),
        Some(json!({ "name": "Weather" })),
    )
    .await;
    assert_eq!(status, 201, "{project}");
    let project = project["data"]["slug"].as_str().expect("slug").to_owned();
    let mut w = World {
        app,
        up,
        admin,
        admin_id,
        project,
        server_id: String::new(),
        slug: String::new(),
        resource: String::new(),
    };
    let server = w.add_server("weather").await;
    w.server_id = server["id"].as_str().expect("id").to_owned();
    w.slug = server["slug"].as_str().expect("slug").to_owned();
    w.resource = server["url"].as_str().expect("url").to_owned();
    w
}

impl World {
    pub fn issuer(&self) -> &str {
        &self.app.address
    }

    pub fn browser(&self) -> Browser {
        Browser::new(&self.app)
    }

    /// Another server in the project, routed to the same upstream; returns `data`.
    pub async fn add_server(&self, name: &str) -> Value {
        let (status, server) = api(
            &self.app,
            "POST",
            &format!("/v1/projects/{}/servers", self.project),
            Some(&self.admin),
            Some(json!({ "name": name, "upstreamUrl": self.up.url })),
        )
        .await;
        assert_eq!(status, 201, "{server}");
        server["data"].clone()
    }

    /// `POST /v1/servers/:id/clients` on the main server; returns `data`.
    pub async fn register(&self, spec: Value) -> Value {
        self.register_on(&self.server_id, spec).await
    }

    pub async fn register_on(&self, server_id: &str, spec: Value) -> Value {
        let (status, body) = api(
            &self.app,
            "POST",
            &format!("/v1/servers/{server_id}/clients"),
            Some(&self.admin),
            Some(spec),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        body["data"].clone()
    }

    /// A public client redirecting to [`REDIRECT`] with every base scope; its client_id.
    pub async fn public_client(&self) -> String {
        self.public_client_named("Test Client").await
    }

    pub async fn public_client_named(&self, name: &str) -> String {
        let c = self
            .register(json!({
                "name": name,
                "redirectUris": [REDIRECT],
                "scopes": ["mcp:read", "mcp:write", "offline_access"],
            }))
            .await;
        c["clientId"].as_str().expect("clientId").to_owned()
    }

    /// A confidential client: (client_id, client_secret).
    pub async fn confidential_client(&self) -> (String, String) {
        let c = self
            .register(json!({
                "name": "Backend",
                "redirectUris": [REDIRECT],
                "scopes": ["mcp:read", "mcp:write", "offline_access"],
                "confidential": true,
            }))
            .await;
        (
            c["clientId"].as_str().expect("clientId").to_owned(),
            c["clientSecret"].as_str().expect("clientSecret").to_owned(),
        )
    }

    pub fn request(&self, client_id: &str) -> AuthRequest {
        AuthRequest::new(client_id, REDIRECT, &self.resource)
    }

    /// Runs the flow as the admin with `scope` and exchanges the code; the token reply.
    pub async fn tokens(&self, client_id: &str, scope: &str) -> ApiResponse {
        let req = self.request(client_id).scope(scope);
        let out = authorize(&self.browser(), &req).await;
        let code = out.code();
        let reply = exchange(
            &self.app,
            &ClientAuth::Public(client_id.to_owned()),
            &req,
            &code,
        )
        .await;
        reply.assert_ok();
        reply
    }

    /// A user with the password `USER_PASSWORD` and `role`; (id, password).
    pub async fn user(&self, email: &str, role: &str) -> (String, String) {
        let password = "a-perfectly-fine-password";
        let (status, body) = api(
            &self.app,
            "POST",
            "/v1/users",
            Some(&self.admin),
            Some(json!({ "email": email, "password": password, "role": role })),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        (
            body["data"]["user"]["id"].as_str().expect("id").to_owned(),
            password.to_owned(),
        )
    }
}

/// Rows in the authorization server's tables named like `pattern` (0 when none exist).
pub async fn rows_in_tables_like(app: &TestApp, patterns: &[&'static str]) -> Vec<(String, i64)> {
    let patterns: Vec<&'static str> = patterns.to_vec();
    app.state
        .store
        .run(move |c| {
            let mut out = Vec::new();
            let names: Vec<String> = {
                let mut stmt = c
                    .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
                    .map_err(ezforge::store::StoreError::from)?;
                stmt.query_map([], |r| r.get::<_, String>(0))
                    .map_err(ezforge::store::StoreError::from)?
                    .filter_map(Result::ok)
                    .collect()
            };
            for name in names {
                if patterns.iter().any(|p| name.contains(p)) {
                    let n: i64 = c
                        .query_row(&format!("SELECT count(*) FROM \"{name}\""), [], |r| {
                            r.get(0)
                        })
                        .map_err(ezforge::store::StoreError::from)?;
                    out.push((name, n));
                }
            }
            Ok::<_, ezforge::store::StoreError>(out)
        })
        .await
        .expect("count rows")
}
