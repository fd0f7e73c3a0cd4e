//! Refusals found by an attacker's review of issue 19, each with the request that proved it:
//! tool scopes named like OpenID's, error redirects to schemes that open a browser, a
//! key-authenticated grant refreshed without the key, key sets that can never verify, and the
//! audiences a client assertion may name.

use serde_json::{Value, json};

use crate::fakes::{ClientKey, DocServer};
use crate::helpers::ApiResponse;
use crate::oauth::browser::*;
use crate::oauth::issuers::{jwt_client, public, register_json};

/// A world whose outbound fetches reach `docs` (on loopback, its own certificate).
async fn world_reaching(docs: &DocServer) -> World {
    let ca = docs.ca_file.clone();
    world_with(move |c| {
        c.outbound.allow_private_addresses = true;
        c.outbound.ca_files = vec![ca];
    })
    .await
}

/// Runs `sql` against the server's database (what an older version may have stored).
async fn sql(w: &World, sql: &'static str, arg: String) {
    w.app
        .state
        .store
        .run(move |c| {
            c.execute(sql, [arg])
                .map_err(ezforge::store::StoreError::from)
        })
        .await
        .expect("sql");
}

/// A token request at `path` authenticated by `jwt`, for a code that does not exist: 401
/// `invalid_client` when the assertion is refused, else 400 `invalid_grant`.
async fn with_assertion(w: &World, path: &str, client_id: &str, jwt: String) -> ApiResponse {
    let form = [
        ("grant_type", "authorization_code"),
        ("code", "x"),
        ("code_verifier", "y"),
    ];
    let auth = ClientAuth::Assertion(client_id.to_owned(), jwt);
    post_endpoint(&w.app, path, &auth, &form).await
}

/// `tools/call` of `tool` through the front door: (status, body).
async fn tool_call(resource: &str, token: &str, tool: &str) -> (u16, String) {
    let res = bare_client()
        .post(resource)
        .bearer_auth(token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(
            json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":tool,"arguments":{}}})
                .to_string(),
        )
        .send()
        .await
        .expect("tools/call");
    let s = res.status().as_u16();
    (s, res.text().await.unwrap_or_default())
}

const RESERVED: [&str; 6] = [
    "openid",
    "profile",
    "email",
    "offline_access",
    "address",
    "phone",
];

// --- Tool scopes never take OpenID's or refresh's names ----------------------------------------

#[tokio::test]
async fn a_tool_scope_never_takes_an_openid_or_refresh_name() {
    let w = world().await;
    let path = format!("/v1/servers/{}", w.server_id);
    for reserved in RESERVED {
        let r = crate::helpers::patch_as(
            &w.app,
            &w.admin,
            &path,
            json!({"toolScopes": {"delete_repo": reserved}}),
        )
        .await;
        r.assert_invalid("toolScopes.delete_repo");
        assert!(r.text.contains("reserved"), "{}", r.text);
        let r = crate::helpers::post_as(
            &w.app,
            &w.admin,
            &format!("/v1/projects/{}/servers", w.project),
            json!({"name": format!("other-{reserved}"), "toolScopes": {"delete_repo": reserved}}),
        )
        .await;
        r.assert_invalid("toolScopes.delete_repo");
    }
    // Nothing was written: the server has no override, no server was created.
    let (status, body) = api(&w.app, "GET", &path, Some(&w.admin), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["toolScopes"], json!({}));
    let (_, list) = api(
        &w.app,
        "GET",
        &format!("/v1/projects/{}/servers", w.project),
        Some(&w.admin),
        None,
    )
    .await;
    assert_eq!(list["data"].as_array().map(Vec::len), Some(1), "{list}");
    // An ordinary name is fine.
    let r = crate::helpers::patch_as(
        &w.app,
        &w.admin,
        &path,
        json!({"toolScopes": {"delete_repo": "repo:delete"}}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
}

/// Stored before the names were refused: `email` on a tool stands for `mcp:execute`, so a
/// client restricted to `mcp:read` that asks for `email` (which any client may) still cannot
/// reach the tool.
#[tokio::test]
async fn a_stored_openid_named_tool_scope_is_never_reached_through_identity_scopes() {
    let w = world().await;
    sql(
        &w,
        r#"UPDATE servers SET tool_scopes = '{"delete_repo":"email","keep_going":"offline_access"}' WHERE id = ?1"#,
        w.server_id.clone(),
    )
    .await;
    // Any change rebuilds the routing table from the stored row.
    let (status, body) = api(
        &w.app,
        "PATCH",
        &format!("/v1/servers/{}", w.server_id),
        Some(&w.admin),
        Some(json!({"name": "Weather"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["toolScopes"]["delete_repo"], "email");
    let c = w
        .register(json!({"name": "Reader", "redirectUris": [REDIRECT], "scopes": ["mcp:read", "offline_access"]}))
        .await;
    let client_id = c["clientId"].as_str().expect("id").to_owned();
    let req = w.request(&client_id).scope("mcp:read email offline_access");
    let out = authorize(&w.browser(), &req).await;
    let consent = out
        .pages
        .iter()
        .find(|p| p.consent_form().is_some())
        .expect("a consent page");
    assert!(!consent.body.contains("delete_repo"), "{}", consent.body);
    let reply = exchange(&w.app, &public(&client_id), &req, &out.code()).await;
    reply.assert_ok();
    assert_eq!(
        scope_set(&reply.str("scope")),
        scope_set("mcp:read email offline_access")
    );
    for tool in ["delete_repo", "keep_going"] {
        let (s, b) = tool_call(&w.resource, &reply.access_token(), tool).await;
        assert_eq!(s, 403, "{tool}: {b}");
    }
    // The protected-resource metadata does not offer `email` as the server's scope.
    let prm: Value = bare_client()
        .get(w.app.url(&format!(
            "/.well-known/oauth-protected-resource/mcp/{}",
            w.slug
        )))
        .send()
        .await
        .expect("prm")
        .json()
        .await
        .expect("json");
    let offered: Vec<&str> = prm["scopes_supported"]
        .as_array()
        .expect("scopes")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(!offered.contains(&"email"), "{prm}");
    // The tool is not closed to everyone: a token for every tool reaches it.
    let full = w
        .register(
            json!({"name": "Admin tool", "redirectUris": [REDIRECT], "scopes": ["mcp:execute"]}),
        )
        .await;
    let full_id = full["clientId"].as_str().expect("id").to_owned();
    let full_token = w.tokens(&full_id, "mcp:execute").await.access_token();
    for tool in ["delete_repo", "keep_going"] {
        let (s, b) = tool_call(&w.resource, &full_token, tool).await;
        assert_eq!(s, 200, "{tool}: {b}");
    }
}

// --- Error redirects reach the user's own machine only ------------------------------------------

#[tokio::test]
async fn schemes_that_open_a_browser_are_refused_at_registration_and_in_documents() {
    let schemes = [
        "intent://evil.example/x",
        "microsoft-edge:https://evil.example/phish",
        "microsoft-edge-holographic:https://evil.example/phish",
        "x-safari-http://evil.example/phish",
        "x-safari-https://evil.example/phish",
        "googlechrome://evil.example/phish",
        "googlechromes://evil.example/phish",
        "firefox://open-url?url=https://evil.example/phish",
        "opera-http://evil.example/phish",
        "opera-https://evil.example/phish",
        "ftp://evil.example/phish",
        "jar:https://evil.example/a.jar!/x",
        "view-source:https://evil.example/phish",
        "filesystem:https://evil.example/temporary/x",
        "ws://evil.example/x",
        "wss://evil.example/x",
    ];
    let docs = DocServer::start().await;
    let w = world_reaching(&docs).await;
    for (i, target) in schemes.into_iter().enumerate() {
        let r = register_json(&w, &json!({"redirect_uris": [target], "client_name": "x"})).await;
        r.assert_error(400, "invalid_redirect_uri");
        // A metadata document naming it cannot be used at all.
        let client_id = format!("{}/client-{i}.json", docs.origin);
        docs.set(
            &format!("/client-{i}.json"),
            json!({"client_id": client_id, "redirect_uris": [target]}),
        );
        let req = AuthRequest::new(&client_id, target, &w.resource).without("response_type");
        let out = authorize(&w.browser(), &req).await;
        out.assert_error_page(400);
        assert!(
            out.last().body.contains("metadata document cannot be used"),
            "{target}: {}",
            out.describe()
        );
    }
}

#[tokio::test]
async fn errors_redirect_to_loopback_and_to_apps_that_name_themselves_only() {
    let w = world().await;
    let register = |uri: &'static str| {
        let w = &w;
        async move {
            let r = register_json(w, &json!({"redirect_uris": [uri], "client_name": "app"})).await;
            assert_eq!(r.status, 201, "{uri}: {}", r.text);
            r.str("client_id")
        }
    };
    // Loopback, a reverse-domain scheme, and the known MCP clients' schemes: the error goes
    // back to the app waiting for it.
    for uri in [
        "http://127.0.0.1:43111/callback",
        "com.example.app:/oauth/callback",
        "cursor://anysphere.cursor-mcp/oauth/callback",
        "vscode://vscode.github-authentication/did-authenticate",
        "windsurf://codeium.windsurf/oauth/callback",
        "claude://claude.ai/oauth/callback",
    ] {
        let client_id = register(uri).await;
        let req = AuthRequest::new(&client_id, uri, &w.resource).without("response_type");
        let out = authorize(&w.browser(), &req).await;
        out.assert_redirect_error("invalid_request", &req, w.issuer());
        assert!(
            out.redirect
                .as_ref()
                .is_some_and(|u| u.as_str().starts_with(uri))
        );
    }
    // Another scheme without a dot may be one a system hands to a browser: a page, with a link
    // the user may follow back to the app.
    let uri = "myapp:/callback";
    let client_id = register(uri).await;
    let req = AuthRequest::new(&client_id, uri, &w.resource).without("response_type");
    let out = authorize(&w.browser(), &req).await;
    out.assert_error_page(400);
    let body = &out.last().body;
    assert!(
        body.contains("href=\"myapp:/callback?error=invalid_request&amp;"),
        "{body}"
    );
    // A client stored before its scheme was refused: a page, and no link.
    let client_id = register("com.example.old:/cb").await;
    sql(
        &w,
        r#"UPDATE oauth_clients SET redirect_uris = '["microsoft-edge:https://evil.example/phish"]' WHERE client_id = ?1"#,
        client_id.clone(),
    )
    .await;
    let req = AuthRequest::new(
        &client_id,
        "microsoft-edge:https://evil.example/phish",
        &w.resource,
    )
    .without("response_type");
    let res = bare_client()
        .get(req.url(w.issuer()))
        .send()
        .await
        .expect("authorize");
    assert_eq!(res.status(), 400);
    assert!(res.headers().get("location").is_none());
    let text = res.text().await.unwrap_or_default();
    assert!(!text.contains("evil.example"), "{text}");
    // An invalid scope after the request is otherwise valid: the same rule.
    let client_id = register("myapp:/callback").await;
    let req = AuthRequest::new(&client_id, "myapp:/callback", &w.resource).scope("nope");
    authorize(&w.browser(), &req).await.assert_error_page(400);
}

// --- A grant is refreshed as it was obtained ----------------------------------------------------

#[tokio::test]
async fn a_key_authenticated_grant_is_never_refreshed_without_the_key() {
    let docs = DocServer::start().await;
    let key = ClientKey::generate(jsonwebtoken::Algorithm::RS256, "k1");
    let jwks_uri = docs.set("/jwks.json", key.jwks());
    let client_id = format!("{}/client.json", docs.origin);
    let redirect = "https://chatgpt.example/cb";
    docs.set(
        "/client.json",
        json!({
            "client_id": client_id, "redirect_uris": [redirect],
            "token_endpoint_auth_method": "private_key_jwt",
            "token_endpoint_auth_methods_supported": ["none", "private_key_jwt"],
            "grant_types": ["authorization_code", "refresh_token"], "jwks_uri": jwks_uri,
        }),
    );
    let w = world_reaching(&docs).await;
    let aud = w.app.url("/oauth/token");
    let signed = |key: &ClientKey| {
        ClientAuth::Assertion(client_id.clone(), key.assertion(&client_id, &aud, |_| {}))
    };
    let req = AuthRequest::new(&client_id, redirect, &w.resource);
    let code = authorize(&w.browser(), &req).await.code();
    let reply = exchange(&w.app, &signed(&key), &req, &code).await;
    reply.assert_ok();
    let rt = reply.refresh_token();
    // The refresh token alone: refused, and nothing is spent or revoked.
    refresh(&w.app, &public(&client_id), &rt)
        .await
        .assert_error(401, "invalid_client");
    assert_eq!(tools_list(&w.resource, &reply.access_token()).await.0, 200);
    // With the key: the same token still works.
    let next = refresh(&w.app, &signed(&key), &rt).await;
    next.assert_ok();
    refresh(&w.app, &public(&client_id), &next.refresh_token())
        .await
        .assert_error(401, "invalid_client");
    // A grant obtained without the key (the document lists `none`) refreshes without it.
    let code = authorize(&w.browser(), &req).await.code();
    let plain = exchange(&w.app, &public(&client_id), &req, &code).await;
    plain.assert_ok();
    refresh(&w.app, &public(&client_id), &plain.refresh_token())
        .await
        .assert_ok();
    // A key-holding client's grant recorded before the method was: the key, fail closed.
    let code = authorize(&w.browser(), &req).await.code();
    let old = exchange(&w.app, &signed(&key), &req, &code).await;
    old.assert_ok();
    let rt_hash = ezforge::crypto::token_hash(&old.refresh_token());
    sql(
        &w,
        "UPDATE grants SET auth_method = NULL WHERE id = (SELECT grant_id FROM refresh_tokens WHERE token_hash = ?1)",
        rt_hash,
    )
    .await;
    refresh(&w.app, &public(&client_id), &old.refresh_token())
        .await
        .assert_error(401, "invalid_client");
    refresh(&w.app, &signed(&key), &old.refresh_token())
        .await
        .assert_ok();
}

#[tokio::test]
async fn a_public_grant_recorded_before_the_method_still_refreshes() {
    let w = world().await;
    let client_id = w.public_client().await;
    let reply = w.tokens(&client_id, "mcp:read offline_access").await;
    sql(
        &w,
        "UPDATE grants SET auth_method = NULL WHERE client_id = ?1",
        client_id.clone(),
    )
    .await;
    refresh(&w.app, &public(&client_id), &reply.refresh_token())
        .await
        .assert_ok();
}

// --- Key sets are read as verification reads them -----------------------------------------------

const NEVER_VERIFY: [&str; 9] = [
    r#"{"keys":[1,"x"]}"#,
    r#"{"keys":[{"kty":"EC","crv":"P-384","x":"AAAA","y":"AAAA","kid":"k"}]}"#,
    r#"{"keys":[{"kty":"EC","crv":"P-256","x":"","y":"","kid":"k"}]}"#,
    r#"{"keys":[{"kty":"RSA","n":"","e":"","kid":"r"}]}"#,
    r#"{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB","kid":"r"}]}"#,
    r#"{"keys":[{"kty":"OKP","crv":"X25519","x":"3p7bfXt9wbTTW2HC7OQ1Nz-DQ8hbeGdNrfx-FG-IK08","kid":"o"}]}"#,
    r#"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"","kid":"o"}]}"#,
    r#"{"keys":[{"kty":"EC","crv":"P-256","x":"AAAA","y":"AAAA","kid":"o"}]}"#,
    r#"{"keys":[{"kty":"EC","crv":"P-256","x":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","y":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","use":"sig"}]}"#,
];

#[tokio::test]
async fn key_sets_that_can_never_verify_are_refused() {
    let docs = DocServer::start().await;
    let w = world_reaching(&docs).await;
    for (i, set) in NEVER_VERIFY.iter().enumerate() {
        let set: Value = serde_json::from_str(set).expect("json");
        let r = register_json(
            &w,
            &json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "private_key_jwt", "jwks": set}),
        )
        .await;
        r.assert_error(400, "invalid_client_metadata");
        assert!(
            r.text.contains("no key that can verify"),
            "{set}: {}",
            r.text
        );
        // A metadata document holding it cannot be used.
        let client_id = format!("{}/signed-{i}.json", docs.origin);
        docs.set(
            &format!("/signed-{i}.json"),
            json!({"client_id": client_id, "redirect_uris": [REDIRECT],
                   "token_endpoint_auth_method": "private_key_jwt", "jwks": set}),
        );
        let key = ClientKey::generate(jsonwebtoken::Algorithm::ES256, "k");
        let jwt = key.assertion(&client_id, &w.app.url("/oauth/token"), |_| {});
        let r = with_assertion(&w, "/oauth/token", &client_id, jwt).await;
        r.assert_error(401, "invalid_client");
        assert!(
            r.text.contains("no key that can verify"),
            "{set}: {}",
            r.text
        );
    }
    // Junk beside a usable key is ignored (RFC 7517 §5), the usable key is what counts.
    let key = ClientKey::generate(jsonwebtoken::Algorithm::ES256, "k");
    let r = register_json(
        &w,
        &json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "private_key_jwt",
                "jwks": {"keys": [1, {"kty":"OKP","crv":"X25519","x":"AAAA"}, key.jwk]}}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
}

/// Whatever the claims of an assertion signed by the client's own key: 401 or, when it is a
/// good one, the code's own error; never 500.
#[tokio::test]
async fn hostile_assertion_claims_and_token_paths_never_answer_500() {
    let key = ClientKey::generate(jsonwebtoken::Algorithm::ES256, "k");
    let (w, cid) = jwt_client(&key, false).await;
    let aud = w.app.url("/oauth/token");
    for (tweak, accepted) in [
        (json!({"aud": {"a": 1}}), false),
        (json!({"aud": [aud, "https://x.example"]}), true),
        (json!({"exp": 1.5e12}), false),
        (json!({"exp": "soon"}), false),
        (json!({"exp": i64::MAX}), false),
        (json!({"exp": -i64::MAX}), false),
        (json!({"jti": 5}), false),
        (json!({"jti": ""}), false),
        (json!({"iat": "x"}), false),
        (json!({"iat": i64::MAX}), false),
        (json!({"nbf": -1e300}), false),
        (json!({"nbf": i64::MAX}), false),
        (json!({"sub": null}), false),
    ] {
        let jwt = key.assertion(&cid, &aud, |c| {
            for (k, v) in tweak.as_object().expect("object") {
                c[k] = v.clone();
            }
        });
        let r = with_assertion(&w, "/oauth/token", &cid, jwt).await;
        if accepted {
            r.assert_error(400, "invalid_grant");
        } else {
            r.assert_error(401, "invalid_client");
        }
    }
    for p in [
        "/oauth/mcp/..%2f/token",
        "/oauth/mcp/%00/token",
        "/oauth/mcp/weather%2F..%2F/token",
        "/oauth/mcp//token",
    ] {
        let r = post_endpoint(
            &w.app,
            p,
            &public("c"),
            &[("grant_type", "refresh_token"), ("refresh_token", "x")],
        )
        .await;
        assert!(
            (400..500).contains(&r.status) && !r.error().is_empty(),
            "{p}: {} {}",
            r.status,
            r.text
        );
    }
}

// --- The audiences of a client assertion --------------------------------------------------------

#[tokio::test]
async fn a_client_assertion_names_this_authorization_server_and_this_endpoint() {
    let key = ClientKey::generate(jsonwebtoken::Algorithm::EdDSA, "k");
    let (w, cid) = jwt_client(&key, false).await;
    let root = w.issuer().to_owned();
    let own = format!("{root}/oauth/mcp/{}", w.slug);
    // (endpoint posted to, aud, accepted)
    let cases: Vec<(String, String, bool)> = vec![
        ("/oauth/token".into(), format!("{root}/oauth/token"), true),
        ("/oauth/token".into(), root.clone(), true),
        ("/oauth/token".into(), format!("{root}/oauth/revoke"), false),
        (
            "/oauth/token".into(),
            format!("{root}/oauth/introspect"),
            false,
        ),
        (
            "/oauth/token".into(),
            format!("{root}/oauth/register"),
            false,
        ),
        ("/oauth/token".into(), format!("{root}/v1/servers"), false),
        ("/oauth/token".into(), own.clone(), false),
        (
            "/api/v1/oauth/token".into(),
            format!("{root}/api/v1/oauth/token"),
            false,
        ),
        (
            "/api/v1/oauth/token".into(),
            format!("{root}/oauth/token"),
            true,
        ),
        (
            format!("/oauth/mcp/{}/token", w.slug),
            format!("{own}/token"),
            true,
        ),
        (format!("/oauth/mcp/{}/token", w.slug), own.clone(), true),
        (
            format!("/oauth/mcp/{}/token", w.slug),
            format!("{root}/oauth/token"),
            true,
        ),
        (
            format!("/oauth/mcp/{}/token", w.slug),
            format!("{own}/revoke"),
            false,
        ),
        ("/oauth/revoke".into(), format!("{root}/oauth/revoke"), true),
        ("/oauth/revoke".into(), format!("{root}/oauth/token"), true),
        (
            "/oauth/revoke".into(),
            format!("{root}/oauth/introspect"),
            false,
        ),
        (
            format!("/oauth/mcp/{}/revoke", w.slug),
            format!("{own}/revoke"),
            true,
        ),
        (
            format!("/oauth/mcp/{}/revoke", w.slug),
            format!("{root}/oauth/revoke"),
            false,
        ),
        (
            "/oauth/introspect".into(),
            format!("{root}/oauth/introspect"),
            true,
        ),
        (
            "/oauth/introspect".into(),
            format!("{root}/oauth/revoke"),
            false,
        ),
    ];
    for (endpoint, aud, accepted) in cases {
        let jwt = key.assertion(&cid, &aud, |_| {});
        let r = if endpoint.ends_with("/token") {
            with_assertion(&w, &endpoint, &cid, jwt).await
        } else {
            let auth = ClientAuth::Assertion(cid.clone(), jwt);
            post_endpoint(&w.app, &endpoint, &auth, &[("token", "x")]).await
        };
        let authenticated = r.status != 401;
        assert_eq!(
            authenticated, accepted,
            "{endpoint} aud={aud}: {} {}",
            r.status, r.text
        );
        assert!(r.status < 500, "{endpoint}: {}", r.text);
    }
}
