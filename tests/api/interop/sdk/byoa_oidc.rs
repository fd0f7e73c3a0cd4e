//! BYOA with oidc-provider, a certified OpenID provider.

use super::*;

const OP_CLIENT: &str = "interop-agent";
const OP_SECRET: &str = "interop-agent-secret-0123456789";

/// oidc-provider over https with a self-signed certificate; restartable on the same port with a
/// rotated key.
struct Provider {
    dir: tempfile::TempDir,
    service: Option<Service>,
    port: u16,
    issuer: String,
    http: reqwest::Client,
}

impl Provider {
    async fn start(tc: &Toolchain) -> Provider {
        let dir = tempfile::tempdir().expect("tmp");
        let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])
            .expect("cert");
        std::fs::write(dir.path().join("cert.pem"), ck.cert.pem()).expect("cert");
        std::fs::File::create(dir.path().join("key.pem"))
            .and_then(|mut f| f.write_all(ck.signing_key.serialize_pem().as_bytes()))
            .expect("key");
        let service = Self::spawn(tc, dir.path(), 0, "key-1").await;
        let port = service.port;
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let http = reqwest::Client::builder()
            .add_root_certificate(
                reqwest::Certificate::from_pem(ck.cert.pem().as_bytes()).expect("pem"),
            )
            .build()
            .expect("client");
        Provider {
            dir,
            service: Some(service),
            port,
            issuer: format!("https://127.0.0.1:{port}"),
            http,
        }
    }

    async fn spawn(tc: &Toolchain, dir: &Path, port: u16, new_key: &str) -> Service {
        let mut cmd = node(tc, "oidc_provider.mjs");
        cmd.env("TLS_CERT", dir.join("cert.pem"))
            .env("TLS_KEY", dir.join("key.pem"))
            .env("KEYSTORE", dir.join("keys.json"))
            .env("NEW_KEY", new_key)
            .env("PORT", port.to_string())
            .env("CLIENT_ID", OP_CLIENT)
            .env("CLIENT_SECRET", OP_SECRET);
        Service::start("oidc-provider", cmd).await
    }

    fn ca_file(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    /// Its OpenID discovery document, turned into our BYOA config.
    async fn byoa_config(&self) -> ezforge::config::ByoaConfig {
        let doc: Value = self
            .http
            .get(format!("{}/.well-known/openid-configuration", self.issuer))
            .send()
            .await
            .expect("discovery")
            .json()
            .await
            .expect("json");
        assert_eq!(doc["issuer"], self.issuer, "{doc}");
        let s = |k: &str| doc[k].as_str().expect(k).to_owned();
        ezforge::config::ByoaConfig {
            issuer: s("issuer"),
            jwks_uri: s("jwks_uri"),
            authorization_endpoint: s("authorization_endpoint"),
            token_endpoint: s("token_endpoint"),
        }
    }

    /// An access token for `resource` by client_credentials with a resource indicator.
    async fn token(&self, resource: &str, scope: &str) -> String {
        let res = self
            .http
            .post(format!("{}/token", self.issuer))
            .basic_auth(OP_CLIENT, Some(OP_SECRET))
            .form(&[
                ("grant_type", "client_credentials"),
                ("resource", resource),
                ("scope", scope),
            ])
            .send()
            .await
            .expect("token request");
        let status = res.status();
        let body: Value = res.json().await.expect("json");
        assert_eq!(status, 200, "{body}");
        body["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned()
    }

    async fn stop(&mut self) {
        self.service.take().expect("running").stop().await;
    }

    /// Starts again on the same port with a new signing key (the old one stays published).
    async fn restart_rotated(&mut self, tc: &Toolchain, kid: &str) {
        assert!(self.service.is_none(), "stop first");
        let service = Self::spawn(tc, self.dir.path(), self.port, kid).await;
        assert_eq!(service.port, self.port);
        self.service = Some(service);
    }
}

/// Item 4 and 5 alike: `ext` and `other` are BYOA servers trusting the provider.
async fn byoa_flow(tc: &Toolchain, app: &TestApp, op: &mut Provider, up: &FakeUpstream) {
    let ext = format!("{}/mcp/ext", app.address);
    let other = format!("{}/mcp/other", app.address);

    // The protected-resource metadata sends clients to the provider.
    let prm = crate::helpers::json(
        app.get("/.well-known/oauth-protected-resource/mcp/ext")
            .await,
    )
    .await;
    assert_eq!(prm["resource"], ext, "{prm}");
    assert_eq!(prm["authorization_servers"], json!([op.issuer]), "{prm}");
    let (status, www, _) = rpc(&ext, None, tools_list()).await;
    assert_eq!(status, 401);
    assert!(www.contains("resource_metadata="), "{www}");

    // A JWT access token for `ext`, from the provider, is accepted there.
    let token = op.token(&ext, "mcp:read").await;
    let (header, claims) = jwt_parts(&token);
    assert_eq!(header["typ"], "at+jwt", "{header}");
    assert_eq!(header["kid"], "key-1", "{header}");
    assert_eq!(claims["aud"], ext, "{claims}");
    assert_eq!(claims["iss"], op.issuer, "{claims}");
    let (status, _, body) = rpc(&ext, Some(&token), tools_list()).await;
    assert_eq!(status, 200, "{body}");
    let seen = up.last_headers();
    let header_of = |name: &str| seen.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    assert_eq!(
        header_of("x-ezforge-client-id").as_deref(),
        Some(OP_CLIENT),
        "{seen:?}"
    );
    assert_eq!(
        header_of("x-ezforge-subject").as_deref(),
        Some(OP_CLIENT),
        "{seen:?}"
    );
    assert!(
        header_of("authorization").is_none(),
        "the token is not forwarded"
    );
    // Scopes still apply: `mystery` has no annotations, so it needs mcp:execute.
    let (status, www, _) = rpc(
        &ext,
        Some(&token),
        json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"mystery","arguments":{}}}),
    )
    .await;
    assert_eq!(status, 403);
    assert!(
        www.contains("insufficient_scope") && www.contains("mcp:execute"),
        "{www}"
    );

    // Its tokens for another resource are refused here, and accepted where they belong.
    let for_other = op.token(&other, "mcp:read").await;
    assert_eq!(jwt_parts(&for_other).1["aud"], other);
    let (status, www, _) = rpc(&ext, Some(&for_other), tools_list()).await;
    assert_eq!(status, 401, "a token for {other} at {ext}");
    assert!(www.contains("invalid_token"), "{www}");
    assert_eq!(rpc(&other, Some(&for_other), tools_list()).await.0, 200);

    // The provider goes down: a token never seen before still validates (cached JWKS).
    let unseen = op.token(&ext, "mcp:read").await;
    op.stop().await;
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", op.port)).is_err(),
        "the provider is down"
    );
    let (status, _, body) = rpc(&ext, Some(&unseen), tools_list()).await;
    assert_eq!(status, 200, "accepted while the provider is down: {body}");

    // It comes back with a rotated key: tokens signed with the new key are accepted.
    op.restart_rotated(tc, "key-2").await;
    let rotated = op.token(&ext, "mcp:read mcp:execute").await;
    assert_eq!(jwt_parts(&rotated).0["kid"], "key-2");
    let (status, _, body) = rpc(&ext, Some(&rotated), tools_list()).await;
    assert_eq!(status, 200, "accepted after the rotation: {body}");
    let (status, _, body) = rpc(
        &ext,
        Some(&rotated),
        json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"mystery","arguments":{}}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn byoa_server_accepts_oidc_provider_tokens_and_survives_outage_and_rotation() {
    let Some(tc) = toolchain().await else {
        return;
    };
    let mut op = Provider::start(tc).await;
    let cfg = op.byoa_config().await;
    let ca = op.ca_file();
    let app = TestApp::builder()
        .config(move |c| {
            c.outbound.ca_files = vec![ca];
            c.outbound.allow_private_addresses = true;
        })
        .spawn()
        .await;
    let up = FakeUpstream::start().await;
    let (admin, _) = project_with_server(&app, "ext", &up.url).await;
    let project = get_as(&app, &admin, "/v1/servers/ext").await.expect(200)["data"]["projectId"]
        .as_str()
        .expect("projectId")
        .to_owned();
    add_server(&app, &admin, &project, "other", &up.url).await;
    for slug in ["ext", "other"] {
        let res = call(
            &app,
            "PATCH",
            &format!("/v1/servers/{slug}/auth"),
            Some(&admin),
            Some(&json!({"authMode": "byoa", "byoaConfig": {
                "issuer": cfg.issuer, "jwksUri": cfg.jwks_uri,
                "authorizationEndpoint": cfg.authorization_endpoint, "tokenEndpoint": cfg.token_endpoint}})),
        )
        .await;
        res.expect(200);
    }
    byoa_flow(tc, &app, &mut op, &up).await;
}

#[tokio::test]
async fn deployment_wide_byoa_with_oidc_provider() {
    let Some(tc) = toolchain().await else {
        return;
    };
    let mut op = Provider::start(tc).await;
    let cfg = op.byoa_config().await;
    let ca = op.ca_file();
    let app = TestApp::builder()
        .config(move |c| {
            c.auth.mode = ezforge::config::AuthMode::Byoa;
            c.auth.byoa = Some(cfg);
            c.outbound.ca_files = vec![ca];
            c.outbound.allow_private_addresses = true;
        })
        .spawn()
        .await;
    // The built-in authorization server is gone.
    for (method, path) in [
        ("GET", "/.well-known/oauth-authorization-server"),
        ("GET", "/.well-known/openid-configuration"),
        ("GET", "/oauth/authorize?response_type=code&client_id=x"),
        ("POST", "/oauth/token"),
        ("POST", "/oauth/register"),
        ("GET", "/oauth/jwks.json"),
        ("POST", "/api/v1/oauth/token"),
    ] {
        let res = call(&app, method, path, None, None).await;
        assert_eq!(res.status, 404, "{method} {path}: {}", res.text);
    }
    let up = FakeUpstream::start().await;
    let (admin, server) = project_with_server(&app, "ext", &up.url).await;
    assert_eq!(
        server["authMode"], "byoa",
        "servers follow auth.mode: {server}"
    );
    add_server(
        &app,
        &admin,
        server["projectId"].as_str().expect("projectId"),
        "other",
        &up.url,
    )
    .await;
    byoa_flow(tc, &app, &mut op, &up).await;
}
