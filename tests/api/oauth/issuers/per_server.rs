//! One issuer per managed server, `resource` forgiving but binding, machine clients.

use super::*;

#[tokio::test]
async fn a_servers_own_issuer_binds_tokens_to_it_whatever_resource_looks_like() {
    let w = world().await;
    let d = discover(&w).await;
    let client_id = w.public_client().await;
    let u = url::Url::parse(&w.resource).expect("url");
    let upper = format!(
        "HTTP://{}{}",
        u.host_str().expect("host").to_uppercase(),
        &w.resource[u.origin().ascii_serialization().len()..]
    )
    .replace(
        "127.0.0.1",
        &format!("127.0.0.1:{}", u.port().expect("port")),
    );
    for resource in [
        None,
        Some(w.resource.clone()),
        Some(format!("{}/", w.resource)),
        Some(upper),
        Some(u.origin().ascii_serialization()),
        Some(format!("{}/", u.origin().ascii_serialization())),
    ] {
        let req = match &resource {
            Some(r) => AuthRequest::new(&client_id, REDIRECT, r),
            None => AuthRequest::new(&client_id, REDIRECT, "").without("resource"),
        };
        let (_, reply) = flow_at(&w, &d, req).await;
        reply.assert_ok();
        let (_, claims) = jwt_parts(&reply.access_token());
        assert_eq!(claims["aud"], json!(w.resource), "{resource:?}");
        assert_eq!(claims["iss"], d.issuer, "{resource:?}");
        assert_eq!(tools_list(&w.resource, &reply.access_token()).await.0, 200);
    }
    // Another server of this deployment is another issuer's: invalid_target, by redirect (the
    // client is registered here). So is a URI that names no server.
    let other = w.add_server("other").await;
    let other_url = other["url"].as_str().expect("url").to_owned();
    for bad in [other_url.clone(), format!("{}/mcp/nope", w.issuer())] {
        let req = AuthRequest::new(&client_id, REDIRECT, &bad);
        sign_in(&w, &d, &req)
            .await
            .assert_redirect_error("invalid_target", &req, &d.issuer);
    }
    // Its tokens are refused at the other server.
    let (_, reply) = flow_at(&w, &d, AuthRequest::new(&client_id, REDIRECT, &w.resource)).await;
    assert_eq!(tools_list(&other_url, &reply.access_token()).await.0, 401);
}

#[tokio::test]
async fn codes_and_refresh_tokens_stay_with_their_issuer() {
    let w = world().await;
    let d = discover(&w).await;
    let other = w.add_server("other").await;
    let other_slug = other["slug"].as_str().expect("slug");
    let other_token = format!("/oauth/mcp/{other_slug}/token");
    let c = post_endpoint(
        &w.app,
        &d.path("registration_endpoint"),
        &ClientAuth::None,
        &[],
    )
    .await;
    assert_eq!(c.status, 400, "registration takes JSON: {}", c.text);
    let client_id = {
        let r = ApiResponse::read(
            bare_client()
                .post(d.endpoint("registration_endpoint"))
                .json(&json!({ "redirect_uris": [REDIRECT], "client_name": "Dyn" }))
                .send()
                .await
                .expect("register"),
        )
        .await;
        assert_eq!(r.status, 201, "{}", r.text);
        r.str("client_id")
    };
    let req = AuthRequest::new(&client_id, REDIRECT, "").without("resource");
    let code = sign_in(&w, &d, &req).await.code();
    let form = |code: &str| {
        vec![
            ("grant_type".to_owned(), "authorization_code".to_owned()),
            ("code".to_owned(), code.to_owned()),
            ("redirect_uri".to_owned(), REDIRECT.to_owned()),
            ("code_verifier".to_owned(), req.verifier.clone()),
        ]
    };
    let pairs = form(&code);
    let refs: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    post_endpoint(&w.app, &other_token, &public(&client_id), &refs)
        .await
        .assert_error(400, "invalid_grant");
    // Spent by that attempt, as any code a token request fails on.
    let code = sign_in(&w, &d, &req).await.code();
    let pairs = form(&code);
    let refs: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let reply = post_endpoint(
        &w.app,
        &d.path("token_endpoint"),
        &public(&client_id),
        &refs,
    )
    .await;
    reply.assert_ok();
    let rt = reply.refresh_token();
    let at_other = post_endpoint(
        &w.app,
        &other_token,
        &public(&client_id),
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", rt.as_str()),
        ],
    )
    .await;
    at_other.assert_error(400, "invalid_grant");
    // That did not spend it; naming another resource is invalid_target.
    let named = post_endpoint(
        &w.app,
        "/oauth/token",
        &public(&client_id),
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", rt.as_str()),
            ("resource", other["url"].as_str().expect("url")),
        ],
    )
    .await;
    named.assert_error(400, "invalid_target");
    // The root issuer still serves a refresh for it (clients from before the upgrade).
    let root = refresh(&w.app, &public(&client_id), &rt).await;
    root.assert_ok();
    assert_eq!(jwt_parts(&root.access_token()).1["iss"], w.issuer());
    assert_eq!(tools_list(&w.resource, &root.access_token()).await.0, 200);
}

/// Makes a server BYOA with `cfg`'s endpoints and `issuer`.
async fn set_byoa(
    w: &World,
    server_id: &str,
    issuer: &str,
    cfg: &ezforge::config::ByoaConfig,
) -> (u16, Value) {
    let body = json!({ "authMode": "byoa", "byoaConfig": {
        "issuer": issuer, "jwksUri": cfg.jwks_uri,
        "authorizationEndpoint": cfg.authorization_endpoint, "tokenEndpoint": cfg.token_endpoint,
    }});
    let path = format!("/v1/servers/{server_id}/auth");
    api(&w.app, "PATCH", &path, Some(&w.admin), Some(body)).await
}

#[tokio::test]
async fn no_issuer_for_byoa_or_unknown_servers_and_none_of_ours_for_byoa() {
    let issuer = TestIssuer::start().await;
    let w = world().await;
    let byoa = w.add_server("external").await;
    let id = byoa["id"].as_str().expect("id");
    let cfg = issuer.byoa_config();
    let (status, res) = set_byoa(&w, id, &cfg.issuer, &cfg).await;
    assert_eq!(status, 200, "{res}");
    let slug = byoa["slug"].as_str().expect("slug");
    for path in [
        format!("/.well-known/oauth-authorization-server/oauth/mcp/{slug}"),
        "/.well-known/oauth-authorization-server/oauth/mcp/nope".to_owned(),
        "/oauth/mcp/nope/.well-known/openid-configuration".to_owned(),
    ] {
        let r = ApiResponse::read(
            bare_client()
                .get(w.app.url(&path))
                .send()
                .await
                .expect("get"),
        )
        .await;
        assert_eq!(r.status, 404, "{path}: {}", r.text);
    }
    let client_id = w.public_client().await;
    let page = w
        .browser()
        .get(
            &AuthRequest::new(&client_id, REDIRECT, &w.resource)
                .url_at(&w.app.url(&format!("/oauth/mcp/{slug}/authorize"))),
        )
        .await;
    assert_eq!(page.status, 404, "{}", page.describe());
    let r = token(
        &w.app,
        &public(&client_id),
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert!(r.status < 500, "{}", r.text);
    let r = post_endpoint(
        &w.app,
        "/oauth/mcp/nope/token",
        &public(&client_id),
        &[("grant_type", "authorization_code")],
    )
    .await;
    assert_eq!(r.status, 404, "{}", r.text);
    // At the root issuer, a BYOA server is no target.
    let req = w
        .request(&client_id)
        .set("resource", byoa["url"].as_str().expect("url"));
    authorize(&w.browser(), &req)
        .await
        .assert_redirect_error("invalid_target", &req, w.issuer());
    // A BYOA server may not claim one of our issuers.
    let other = w.add_server("impostor").await;
    let oid = other["id"].as_str().expect("id");
    let ours = format!("{}/oauth/mcp/{}", w.issuer(), w.slug);
    let (status, res) = set_byoa(&w, oid, &ours, &cfg).await;
    assert_eq!(status, 422, "{res}");
}

#[tokio::test]
async fn hostile_input_at_the_new_endpoints_is_a_4xx() {
    let w = world().await;
    let d = discover(&w).await;
    let client_id = w.public_client().await;
    // Two resources, or an oversized one, at a server's issuer: invalid_target by redirect.
    let other = format!("{}/mcp/other", w.issuer());
    let huge = format!("{}/{}", w.resource, "r".repeat(10 * 1024));
    for req in [
        AuthRequest::new(&client_id, REDIRECT, &w.resource).add("resource", &other),
        AuthRequest::new(&client_id, REDIRECT, &huge),
    ] {
        sign_in(&w, &d, &req)
            .await
            .assert_redirect_error("invalid_target", &req, &d.issuer);
    }
    let token_path = d.path("token_endpoint");
    for form in [
        vec![
            ("grant_type", "refresh_token"),
            ("refresh_token", "x"),
            ("resource", "::"),
        ],
        vec![
            ("grant_type", "authorization_code"),
            ("code", "x"),
            ("resource", huge.as_str()),
        ],
        vec![("grant_type", "nope")],
    ] {
        let r = post_endpoint(&w.app, &token_path, &public(&client_id), &form).await;
        assert!((400..500).contains(&r.status), "{form:?}: {}", r.text);
        assert!(r.body["error"].is_string(), "{}", r.text);
    }
    // userinfo: a huge token, a token twice, a form that is not one.
    let ui = d.endpoint("userinfo_endpoint");
    let huge_token = "t".repeat(64 * 1024);
    let r = ApiResponse::read(
        bare_client()
            .get(&ui)
            .bearer_auth(&huge_token)
            .send()
            .await
            .expect("ui"),
    )
    .await;
    assert_eq!(r.status, 401, "{}", r.text);
    let r = ApiResponse::read(
        bare_client()
            .post(&ui)
            .bearer_auth("a")
            .form(&[("access_token", "b")])
            .send()
            .await
            .expect("ui"),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text);
    let r = ApiResponse::read(
        bare_client()
            .post(&ui)
            .body(vec![0xff; 100])
            .send()
            .await
            .expect("ui"),
    )
    .await;
    assert_eq!(r.status, 401, "{}", r.text);
    // Registration: keys that are no key set.
    for body in [
        json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "private_key_jwt", "jwks": "x"}),
        json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "private_key_jwt", "jwks": {"keys": []}}),
        json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "private_key_jwt", "jwks_uri": 5}),
    ] {
        let r = register_json(&w, &body).await;
        assert_eq!(r.status, 400, "{body}: {}", r.text);
    }
}

#[tokio::test]
async fn machine_clients_use_a_servers_issuer_without_resource() {
    let w = world().await;
    let d = discover(&w).await;
    let (id, secret) = w.confidential_client().await;
    let r = post_endpoint(
        &w.app,
        &d.path("token_endpoint"),
        &ClientAuth::Basic(id.clone(), secret.clone()),
        &[("grant_type", "client_credentials"), ("scope", "mcp:read")],
    )
    .await;
    r.assert_ok();
    assert_eq!(jwt_parts(&r.access_token()).1["aud"], json!(w.resource));
    assert_eq!(tools_list(&w.resource, &r.access_token()).await.0, 200);
    // The root issuer still wants the resource.
    token(
        &w.app,
        &ClientAuth::Basic(id, secret),
        &[("grant_type", "client_credentials")],
    )
    .await
    .assert_error(400, "invalid_target");
}
