//! Metadata and JWKS, `/api/v1`, grants, and deleted clients' and servers' tokens after a restart.

use super::*;

#[tokio::test]
async fn jwks_publishes_the_key_of_issued_tokens() {
    let w = world().await;
    let client_id = w.public_client().await;
    let reply = w.tokens(&client_id, "mcp:read").await;
    let (header, _) = jwt_parts(&reply.access_token());
    for path in ["/oauth/jwks.json", "/api/v1/oauth/jwks.json"] {
        let r = send(&w, "GET", &w.app.url(path), None, None).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text);
        let keys = r.body["keys"].as_array().expect("keys");
        let key = keys
            .iter()
            .find(|k| k["kid"] == header["kid"])
            .unwrap_or_else(|| panic!("{path} has kid {}: {}", header["kid"], r.text));
        assert_eq!(key["kty"], "EC");
        assert_eq!(key["crv"], "P-256");
        for k in keys {
            assert!(k.get("d").is_none(), "no private parts: {k}");
        }
    }
}

#[tokio::test]
async fn metadata_matches_the_contract() {
    let w = world().await;
    let iss = w.issuer().to_owned();
    let expected = json!({
        "issuer": iss,
        "authorization_endpoint": format!("{iss}/oauth/authorize"),
        "token_endpoint": format!("{iss}/oauth/token"),
        "registration_endpoint": format!("{iss}/oauth/register"),
        "revocation_endpoint": format!("{iss}/oauth/revoke"),
        "introspection_endpoint": format!("{iss}/oauth/introspect"),
        "userinfo_endpoint": format!("{iss}/oauth/userinfo"),
        "jwks_uri": format!("{iss}/oauth/jwks.json"),
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post", "private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS256", "PS256", "ES256", "EdDSA"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "client_id_metadata_document_supported": true,
        "authorization_response_iss_parameter_supported": true,
    });
    let mut docs = Vec::new();
    for path in [
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
    ] {
        let r = send(&w, "GET", &w.app.url(path), None, None).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text);
        for (field, want) in expected.as_object().expect("object") {
            assert_eq!(
                &r.body[field], want,
                "{path}: {field}; document: {}",
                r.text
            );
        }
        let scopes: Vec<&str> = r.body["scopes_supported"]
            .as_array()
            .unwrap_or_else(|| panic!("{path}: scopes_supported: {}", r.text))
            .iter()
            .filter_map(Value::as_str)
            .collect();
        for s in [
            "mcp:read",
            "mcp:write",
            "mcp:execute",
            "offline_access",
            "openid",
            "profile",
            "email",
        ] {
            assert!(
                scopes.contains(&s),
                "{path}: scopes_supported has {s}: {scopes:?}"
            );
        }
        docs.push(r.body);
    }
    assert_eq!(docs[0], docs[1], "both documents say the same");
}

#[tokio::test]
async fn issuer_is_byte_identical_in_both_metadata_documents() {
    let w = world().await;
    // The root issuer is the public URL.
    let root = send(
        &w,
        "GET",
        &w.app.url("/.well-known/oauth-authorization-server"),
        None,
        None,
    )
    .await;
    assert_eq!(root.status, 200, "{}", root.text);
    assert_eq!(root.body["issuer"], w.issuer());
    // A server's protected-resource metadata names its own issuer, whose RFC 8414 metadata
    // (path inserted) says the same issuer, byte for byte.
    let prm = send(
        &w,
        "GET",
        &w.app.url(&format!(
            "/.well-known/oauth-protected-resource/mcp/{}",
            w.slug
        )),
        None,
        None,
    )
    .await;
    assert_eq!(prm.status, 200, "{}", prm.text);
    let b = prm.body["authorization_servers"][0]
        .as_str()
        .expect("authorization_servers[0]");
    assert_eq!(b, format!("{}/oauth/mcp/{}", w.issuer(), w.slug));
    let path = url::Url::parse(b).expect("issuer").path().to_owned();
    for doc in [
        format!("/.well-known/oauth-authorization-server{path}"),
        format!("/.well-known/openid-configuration{path}"),
        format!("{path}/.well-known/openid-configuration"),
    ] {
        let asm = send(&w, "GET", &w.app.url(&doc), None, None).await;
        assert_eq!(asm.status, 200, "{doc}: {}", asm.text);
        let a = asm.body["issuer"].as_str().expect("issuer");
        assert_eq!(a.as_bytes(), b.as_bytes(), "{doc}");
        assert!(!a.ends_with('/'));
        assert_eq!(asm.body["authorization_endpoint"], format!("{b}/authorize"));
        assert_eq!(asm.body["token_endpoint"], format!("{b}/token"));
    }
}

#[tokio::test]
async fn endpoints_answer_under_api_v1_too() {
    let w = world().await;
    let client_id = w.public_client().await;
    let req = w.request(&client_id);
    let code = authorize(&w.browser(), &req).await.code();
    let reply = post_endpoint(
        &w.app,
        "/api/v1/oauth/token",
        &public(&client_id),
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &req.verifier),
        ],
    )
    .await;
    reply.assert_ok();
    let r = post_json(
        &w,
        "/api/v1/oauth/register",
        None,
        json!({ "redirect_uris": [REDIRECT] }),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let page = w
        .browser()
        .get(
            &req.url(w.issuer())
                .replace("/oauth/authorize", "/api/v1/oauth/authorize"),
        )
        .await;
    assert_eq!(page.status, 200, "{}", page.describe());
    assert!(page.login_form().is_some(), "{}", page.describe());
}

#[tokio::test]
async fn grants_are_listed_and_deleting_one_ends_it() {
    let w = world().await;
    let client_id = w.public_client_named("Grant Viewer").await;
    let reply = w.tokens(&client_id, "mcp:read offline_access").await;
    let (_, claims) = jwt_parts(&reply.access_token());

    let (status, list) = api(&w.app, "GET", "/v1/grants", Some(&w.admin), None).await;
    assert_eq!(status, 200, "{list}");
    let grants = list["data"].as_array().expect("data");
    let g = grants
        .iter()
        .find(|g| g["clientId"] == client_id)
        .unwrap_or_else(|| panic!("the grant is listed: {list}"));
    assert_eq!(g["id"], claims["gid"], "the token's gid is the grant's id");
    assert_eq!(g["clientName"], "Grant Viewer");
    assert_eq!(g["serverId"], w.server_id);
    assert_eq!(g["resource"], w.resource);
    assert!(g["scopes"].is_array() && g["createdAt"].is_string(), "{g}");
    assert!(list["meta"].is_object(), "{list}");

    let gid = g["id"].as_str().expect("id");
    let (status, body) = api(
        &w.app,
        "DELETE",
        &format!("/v1/grants/{gid}"),
        Some(&w.admin),
        None,
    )
    .await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(tools_list(&w.resource, &reply.access_token()).await.0, 401);
    refresh(&w.app, &public(&client_id), &reply.refresh_token())
        .await
        .assert_error(400, "invalid_grant");
}

#[tokio::test]
async fn a_deleted_clients_tokens_stay_refused_after_a_restart() {
    machine_token_refused_after(Deleted::Client).await;
}

#[tokio::test]
async fn a_deleted_servers_machine_tokens_stay_refused_even_where_its_slug_returns() {
    machine_token_refused_after(Deleted::Server).await;
}
