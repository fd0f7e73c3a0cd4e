//! Servers routed to an upstream, made the way a user makes them: through the control API, as
//! the admin. `app.new_server("weather", &up.url).create().await` is the usual form; options
//! add a tool-scope policy or an external issuer.

use serde_json::{Value, json};

use super::*;

/// A server about to be made: its own project (`p-{slug}`), then the server pointing at
/// `upstream`, then the options, each through the control API.
pub struct NewServer<'a> {
    app: &'a TestApp,
    slug: String,
    upstream: String,
    tool_scopes: Option<Value>,
    byoa: Option<ezforge::config::ByoaConfig>,
}

impl TestApp {
    /// The admin's session, signed in once per app.
    pub async fn admin(&self) -> String {
        self.admin
            .get_or_init(|| admin_token(self))
            .await
            .to_owned()
    }

    /// A server `slug` routed to `upstream` (see [`NewServer`]).
    pub fn new_server(&self, slug: &str, upstream: &str) -> NewServer<'_> {
        NewServer {
            app: self,
            slug: slug.to_owned(),
            upstream: upstream.to_owned(),
            tool_scopes: None,
            byoa: None,
        }
    }
}

impl NewServer<'_> {
    /// `PATCH /v1/servers/:slug {toolScopes}` once made.
    pub fn tool_scopes(mut self, scopes: Value) -> Self {
        self.tool_scopes = Some(scopes);
        self
    }

    /// `PATCH /v1/servers/:slug/auth`: tokens from this external issuer instead of ours.
    pub fn byoa(mut self, config: &ezforge::config::ByoaConfig) -> Self {
        self.byoa = Some(config.clone());
        self
    }

    /// Makes it; returns the server's `data` as the last request answered it.
    pub async fn create(self) -> Value {
        let app = self.app;
        let admin = app.admin().await;
        let slug = &self.slug;
        let project = create_project(app, &admin, &format!("p-{slug}")).await;
        let pid = project["id"].as_str().expect("project id");
        let body = json!({ "name": slug, "slug": slug, "upstreamUrl": self.upstream });
        let r = post_as(app, &admin, &format!("/v1/projects/{pid}/servers"), body).await;
        let mut server = r.expect(201)["data"].clone();
        if let Some(scopes) = self.tool_scopes {
            let body = json!({ "toolScopes": scopes });
            let r = patch_as(app, &admin, &format!("/v1/servers/{slug}"), body).await;
            server = r.expect(200)["data"].clone();
        }
        if let Some(cfg) = self.byoa {
            let body = json!({"authMode": "byoa", "byoaConfig": {
                "issuer": cfg.issuer, "jwksUri": cfg.jwks_uri,
                "authorizationEndpoint": cfg.authorization_endpoint,
                "tokenEndpoint": cfg.token_endpoint,
            }});
            let r = patch_as(app, &admin, &format!("/v1/servers/{slug}/auth"), body).await;
            r.expect(200);
            server = get_as(app, &admin, &format!("/v1/servers/{slug}"))
                .await
                .expect(200)["data"]
                .clone();
        }
        server
    }
}

impl TestApp {
    /// Points server `slug` at `url` and marks it running, straight in the store: what an
    /// upgrade finds when a version before the destination rules stored an upstream the API
    /// now refuses. The routing table is reloaded.
    pub async fn store_legacy_upstream(&self, slug: &str, url: &str) {
        let (name, url) = (slug.to_owned(), url.to_owned());
        let changed = self
            .state
            .store
            .run(move |c| {
                c.execute(
                    "UPDATE servers SET upstream_url = ?1, status = 'running' WHERE slug = ?2",
                    [&url, &name],
                )
                .map_err(ezforge::store::StoreError::from)
            })
            .await
            .expect("update");
        assert_eq!(changed, 1, "one server named {slug}");
        self.state.servers_changed().await;
    }
}
