//! Issue 19's rules, each with its refusals: one issuer per managed server (and `resource`
//! forgiving but binding), OpenID Connect, refresh rotation with a grace, `private_key_jwt`,
//! native redirect URIs.

use serde_json::{Value, json};

use crate::fakes::{ClientKey, DocServer, TestIssuer};
use crate::oauth::browser::*;
use crate::oauth::clients_tested::{Discovered, call_a_tool, discover, sign_in};

pub fn public(id: &str) -> ClientAuth {
    ClientAuth::Public(id.to_owned())
}

/// `POST /oauth/register` with a JSON body.
pub async fn register_json(w: &World, body: &Value) -> Reply {
    Reply::read(
        bare_client()
            .post(w.app.url("/oauth/register"))
            .json(body)
            .send()
            .await
            .expect("register"),
    )
    .await
}

/// The flow at the discovered issuer: (request, token reply).
async fn flow_at(w: &World, d: &Discovered, req: AuthRequest) -> (AuthRequest, Reply) {
    let out = sign_in(w, d, &req).await;
    let code = out.code();
    let reply = post_endpoint(
        &w.app,
        &d.path("token_endpoint"),
        &public(req.client_id()),
        &[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", req.redirect_uri()),
            ("code_verifier", req.verifier.as_str()),
        ],
    )
    .await;
    (req, reply)
}

// --- One issuer per server --------------------------------------------------------------------

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
        let r = Reply::read(
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
        let r = Reply::read(
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
    let r = Reply::read(
        bare_client()
            .get(&ui)
            .bearer_auth(&huge_token)
            .send()
            .await
            .expect("ui"),
    )
    .await;
    assert_eq!(r.status, 401, "{}", r.text);
    let r = Reply::read(
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
    let r = Reply::read(
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

// --- OpenID Connect ---------------------------------------------------------------------------

#[tokio::test]
async fn openid_scopes_give_an_id_token_and_userinfo() {
    let w = world().await;
    let d = discover(&w).await;
    let client_id = w.public_client().await;
    let req = AuthRequest::new(&client_id, REDIRECT, "")
        .without("resource")
        .scope("openid email profile")
        .set("nonce", "n-0S6_WzA2Mj");
    let out = sign_in(&w, &d, &req).await;
    let consent = out
        .pages
        .iter()
        .find(|p| p.consent_form().is_some())
        .expect("a consent page");
    assert!(
        consent.body.contains("your email address")
            && consent.body.contains(crate::helpers::ADMIN_EMAIL),
        "the consent page says what is shared: {}",
        consent.describe()
    );
    let code = out.code();
    let reply = post_endpoint(
        &w.app,
        &d.path("token_endpoint"),
        &public(&client_id),
        &[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", REDIRECT),
            ("code_verifier", req.verifier.as_str()),
        ],
    )
    .await;
    reply.assert_ok();
    // No MCP scope was asked for: the client's own (else the server's base scope), with the
    // OpenID ones.
    assert_eq!(
        scope_set(reply.body["scope"].as_str().expect("scope")),
        scope_set("mcp:read mcp:write offline_access openid email profile")
    );
    let (header, id) = jwt_parts(&reply.str("id_token"));
    assert_eq!(header["alg"], "ES256");
    assert_eq!(id["iss"], d.issuer);
    assert_eq!(id["sub"], w.admin_id);
    assert_eq!(id["aud"], client_id);
    assert_eq!(id["nonce"], "n-0S6_WzA2Mj");
    assert_eq!(id["email"], crate::helpers::ADMIN_EMAIL);
    assert!(id["name"].is_string() && id["auth_time"].is_i64(), "{id}");
    assert!(id.get("scope").is_none(), "not an access token: {id}");
    // The ID token is no access token at the front door.
    assert_eq!(tools_list(&w.resource, &reply.str("id_token")).await.0, 401);
    call_a_tool(&w, &reply.access_token()).await;
    // userinfo, at the issuer the client discovered.
    let ui = Reply::read(
        bare_client()
            .get(d.endpoint("userinfo_endpoint"))
            .bearer_auth(reply.access_token())
            .send()
            .await
            .expect("userinfo"),
    )
    .await;
    assert_eq!(ui.status, 200, "{}", ui.text);
    assert_eq!(ui.body["sub"], w.admin_id);
    assert_eq!(ui.body["email"], crate::helpers::ADMIN_EMAIL);
    for (bearer, status) in [("not-a-token", 401), (reply.str("id_token").as_str(), 401)] {
        let r = Reply::read(
            bare_client()
                .get(d.endpoint("userinfo_endpoint"))
                .bearer_auth(bearer)
                .send()
                .await
                .expect("userinfo"),
        )
        .await;
        assert_eq!(r.status, status, "{}", r.text);
        assert!(r.headers.get("www-authenticate").is_some());
    }
    // Without openid: 403 insufficient_scope.
    let plain = w.tokens(&client_id, "mcp:read").await;
    let r = Reply::read(
        bare_client()
            .post(w.app.url("/oauth/userinfo"))
            .bearer_auth(plain.access_token())
            .send()
            .await
            .expect("userinfo"),
    )
    .await;
    r.assert_error(403, "insufficient_scope");
    // A bad nonce is refused by redirect (a registered client).
    let bad = w
        .request(&client_id)
        .scope("openid")
        .set("nonce", "a\u{1}b");
    authorize(&w.browser(), &bad)
        .await
        .assert_redirect_error("invalid_request", &bad, w.issuer());
}

// --- Refresh rotation with a grace ------------------------------------------------------------

async fn audit_outcomes(w: &World) -> Vec<String> {
    let (status, body) = api(&w.app, "GET", "/v1/audit?limit=100", Some(&w.admin), None).await;
    assert_eq!(status, 200, "{body}");
    body["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter(|e| e["action"] == "grant.refresh_reuse")
        .map(|e| e["details"]["outcome"].as_str().unwrap_or("").to_owned())
        .collect()
}

fn reuse_metric(w: &World, outcome: &str) -> String {
    let text = ezforge::metrics::render(&w.app.state);
    text.lines()
        .find(|l| {
            l.starts_with(&format!(
                "ezforge_refresh_token_reuse_total{{outcome=\"{outcome}\"}}"
            ))
        })
        .unwrap_or("")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_refreshes_within_the_grace_get_one_successor() {
    let w = world().await;
    let client_id = w.public_client().await;
    let reply = w.tokens(&client_id, "mcp:read").await;
    let rt = reply.refresh_token();
    let auth = public(&client_id);
    let replies =
        futures_util::future::join_all((0..10).map(|_| refresh(&w.app, &auth, &rt))).await;
    let statuses: Vec<(u16, &str)> = replies.iter().map(|r| (r.status, r.error())).collect();
    assert!(replies.iter().all(|r| r.status == 200), "{statuses:?}");
    let successors: std::collections::BTreeSet<String> =
        replies.iter().map(Reply::refresh_token).collect();
    assert_eq!(successors.len(), 1, "the family never branches");
    for r in &replies {
        assert_eq!(tools_list(&w.resource, &r.access_token()).await.0, 200);
    }
    assert_eq!(
        audit_outcomes(&w)
            .await
            .iter()
            .filter(|o| *o == "grace")
            .count(),
        9
    );
    assert!(
        reuse_metric(&w, "grace").ends_with(" 9"),
        "{}",
        ezforge::metrics::render(&w.app.state)
    );
    // The successor in use, the old token again: revoked, with everything it gave.
    let next = successors.into_iter().next().expect("one");
    let third = refresh(&w.app, &auth, &next).await;
    third.assert_ok();
    refresh(&w.app, &auth, &rt)
        .await
        .assert_error(400, "invalid_grant");
    assert_eq!(tools_list(&w.resource, &third.access_token()).await.0, 401);
    refresh(&w.app, &auth, &third.refresh_token())
        .await
        .assert_error(400, "invalid_grant");
    assert!(audit_outcomes(&w).await.contains(&"revoked".to_owned()));
    assert!(reuse_metric(&w, "revoked").ends_with(" 1"));
}

#[tokio::test]
async fn a_replay_after_the_grace_revokes_the_grant() {
    let w = world().await;
    let client_id = w.public_client().await;
    let reply = w.tokens(&client_id, "mcp:read").await;
    let rt = reply.refresh_token();
    let second = refresh(&w.app, &public(&client_id), &rt).await;
    second.assert_ok();
    // Two minutes later (the default grace is 60 s).
    let hash = crate::helpers::sha256_hex(&rt);
    w.app
        .state
        .store
        .run(move |c| {
            c.execute(
                "UPDATE refresh_tokens SET rotated_at = rotated_at - 120 WHERE token_hash = ?1",
                [hash],
            )
            .map_err(ezforge::store::StoreError::from)
        })
        .await
        .expect("age the rotation");
    refresh(&w.app, &public(&client_id), &rt)
        .await
        .assert_error(400, "invalid_grant");
    assert_eq!(tools_list(&w.resource, &second.access_token()).await.0, 401);
    // Another client replaying it gets nothing either way.
    let other = w.public_client_named("Other").await;
    refresh(&w.app, &public(&other), &second.refresh_token())
        .await
        .assert_error(400, "invalid_grant");
}

// --- private_key_jwt ----------------------------------------------------------------------------

/// A world with a dynamic `private_key_jwt` client holding `key` inline; (world, client_id).
pub async fn jwt_client(key: &ClientKey, private: bool) -> (World, String) {
    let w = world_with(move |c| c.outbound.allow_private_addresses = private).await;
    let body = json!({
        "redirect_uris": [REDIRECT], "client_name": "Signed",
        "token_endpoint_auth_method": "private_key_jwt", "jwks": key.jwks(),
    });
    let reg = register_json(&w, &body).await;
    assert_eq!(reg.status, 201, "{}", reg.text);
    assert!(
        reg.body.get("client_secret").is_none(),
        "no secret: {}",
        reg.text
    );
    (w, reg.str("client_id"))
}

#[tokio::test]
async fn private_key_jwt_with_each_algorithm() {
    use jsonwebtoken::Algorithm::*;
    for alg in [RS256, PS256, ES256, EdDSA] {
        let key = ClientKey::generate(alg, &format!("k-{alg:?}"));
        let (w, client_id) = jwt_client(&key, false).await;
        let req = w.request(&client_id);
        let code = authorize(&w.browser(), &req).await.code();
        let jwt = key.assertion(&client_id, &w.app.url("/oauth/token"), |_| {});
        let reply = exchange(
            &w.app,
            &ClientAuth::Assertion(client_id.clone(), jwt),
            &req,
            &code,
        )
        .await;
        assert_eq!(reply.status, 200, "{alg:?}: {}", reply.text);
        // Without its assertion the client is refused.
        let code = authorize(&w.browser(), &req).await.code();
        exchange(&w.app, &public(&client_id), &req, &code)
            .await
            .assert_error(401, "invalid_client");
    }
}

#[tokio::test]
async fn bad_client_assertions_are_invalid_client_never_500() {
    let key = ClientKey::generate(jsonwebtoken::Algorithm::ES256, "good");
    let (w, client_id) = jwt_client(&key, false).await;
    let aud = w.app.url("/oauth/token");
    let other = ClientKey::generate(jsonwebtoken::Algorithm::ES256, "good");
    let now = ezforge::domain::now();
    let hs256 = {
        let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        let claims =
            json!({"iss": client_id, "sub": client_id, "aud": aud, "exp": now + 60, "jti": "h"});
        jsonwebtoken::encode(
            &header,
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(b"secret"),
        )
        .expect("hs")
    };
    let none = {
        use base64::Engine;
        let b = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        format!(
            "{}.{}.",
            b(json!({"alg": "none", "typ": "JWT"})),
            b(json!({"iss": client_id, "sub": client_id, "aud": aud, "exp": now + 60, "jti": "n"}))
        )
    };
    let replayed = key.assertion(&client_id, &aud, |_| {});
    let cases: Vec<(&str, String)> = vec![
        ("another key", other.assertion(&client_id, &aud, |_| {})),
        (
            "expired",
            key.assertion(&client_id, &aud, |c| c["exp"] = json!(now - 600)),
        ),
        (
            "too long-lived",
            key.assertion(&client_id, &aud, |c| c["exp"] = json!(now + 86_400)),
        ),
        (
            "another audience",
            key.assertion(&client_id, "https://elsewhere.example/token", |_| {}),
        ),
        (
            "iss is not sub",
            key.assertion(&client_id, &aud, |c| c["sub"] = json!("someone")),
        ),
        (
            "no jti",
            key.assertion(&client_id, &aud, |c| {
                c.as_object_mut().expect("object").remove("jti");
            }),
        ),
        ("alg none", none),
        ("HS256", hs256),
        ("garbage", "a.b.c".into()),
        ("huge", "x".repeat(20_000)),
    ];
    for (what, jwt) in cases {
        let r = token(
            &w.app,
            &ClientAuth::Assertion(client_id.clone(), jwt),
            &[
                ("grant_type", "authorization_code"),
                ("code", "x"),
                ("code_verifier", "y"),
            ],
        )
        .await;
        assert_eq!(
            (r.status, r.error()),
            (401, "invalid_client"),
            "{what}: {}",
            r.text
        );
    }
    // A good one works once; its replay is refused, also after a restart.
    let form = [
        ("grant_type", "authorization_code"),
        ("code", "x"),
        ("code_verifier", "y"),
    ];
    let first = token(
        &w.app,
        &ClientAuth::Assertion(client_id.clone(), replayed.clone()),
        &form,
    )
    .await;
    first.assert_error(400, "invalid_grant");
    let again = token(
        &w.app,
        &ClientAuth::Assertion(client_id.clone(), replayed.clone()),
        &form,
    )
    .await;
    again.assert_error(401, "invalid_client");
    let data_dir = w.app.data_dir.clone();
    let World { mut app, .. } = w;
    let tmp = app.take_tempdir();
    app.stop().await;
    let app = crate::helpers::TestApp::builder_in(&data_dir).spawn().await;
    let after = token(
        &app,
        &ClientAuth::Assertion(client_id.clone(), replayed),
        &form,
    )
    .await;
    after.assert_error(401, "invalid_client");
    // Another type, or half of the pair: refused too.
    let r = post_endpoint(
        &app,
        "/oauth/token",
        &ClientAuth::None,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", "x"),
            ("client_assertion", "a.b.c"),
        ],
    )
    .await;
    r.assert_error(400, "invalid_request");
    let r = post_endpoint(
        &app,
        "/oauth/token",
        &ClientAuth::None,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", "x"),
            ("client_assertion_type", "urn:example:other"),
            ("client_assertion", "a.b.c"),
        ],
    )
    .await;
    r.assert_error(401, "invalid_client");
    drop(tmp);
}

#[tokio::test]
async fn a_jwks_uri_on_a_private_address_is_never_fetched() {
    let docs = DocServer::start().await;
    let key = ClientKey::generate(jsonwebtoken::Algorithm::RS256, "k");
    let jwks_uri = docs.set("/jwks.json", key.jwks());
    // The SSRF guard is on (the default): loopback is out of reach.
    let w = world().await;
    let reg = register_json(
        &w,
        &json!({
            "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "private_key_jwt",
            "jwks_uri": jwks_uri,
        }),
    )
    .await;
    assert_eq!(reg.status, 201, "{}", reg.text);
    let client_id = reg.str("client_id");
    let jwt = key.assertion(&client_id, &w.app.url("/oauth/token"), |_| {});
    let r = token(
        &w.app,
        &ClientAuth::Assertion(client_id, jwt),
        &[
            ("grant_type", "authorization_code"),
            ("code", "x"),
            ("code_verifier", "y"),
        ],
    )
    .await;
    r.assert_error(401, "invalid_client");
    assert_eq!(docs.fetches_of("/jwks.json"), 0, "never fetched");
    // Registration refuses what cannot be a key source.
    for (body, why) in [
        (
            json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "private_key_jwt"}),
            "no keys",
        ),
        (
            json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "private_key_jwt", "jwks_uri": "http://x.example/j"}),
            "http",
        ),
        (
            json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "private_key_jwt", "jwks": {"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}}),
            "a secret key",
        ),
        (
            json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none", "jwks": key.jwks()}),
            "keys for a public client",
        ),
    ] {
        let r = register_json(&w, &body).await;
        assert_eq!(
            (r.status, r.error()),
            (400, "invalid_client_metadata"),
            "{why}: {}",
            r.text
        );
    }
}

// --- Native redirect URIs ---------------------------------------------------------------------

#[tokio::test]
async fn native_schemes_register_and_dangerous_ones_do_not() {
    let w = world().await;
    for (uris, app_type) in [
        (
            json!(["cursor://anysphere.cursor-mcp/oauth/callback"]),
            "native",
        ),
        (json!(["myapp:/callback"]), "native"),
        (json!(["http://localhost:8787/callback"]), "native"),
        (json!(["https://app.example/cb"]), "web"),
    ] {
        let r = register_json(&w, &json!({ "redirect_uris": uris })).await;
        assert_eq!(r.status, 201, "{uris}: {}", r.text);
        assert_eq!(r.body["application_type"], app_type, "{uris}");
    }
    for bad in [
        json!({ "redirect_uris": ["javascript:alert(1)"] }),
        json!({ "redirect_uris": ["data:text/html,hi"] }),
        json!({ "redirect_uris": ["file:///etc/passwd"] }),
        json!({ "redirect_uris": ["vbscript:x"] }),
        json!({ "redirect_uris": ["blob:https://a.example/x"] }),
        json!({ "redirect_uris": ["about:blank"] }),
        json!({ "redirect_uris": ["http://evil.example/cb"] }),
        json!({ "redirect_uris": ["cursor://anysphere.cursor-mcp/oauth/callback"], "application_type": "web" }),
    ] {
        let r = register_json(&w, &bad).await;
        assert_eq!(
            (r.status, r.error()),
            (400, "invalid_redirect_uri"),
            "{bad}: {}",
            r.text
        );
    }
}

#[tokio::test]
async fn under_host_routing_a_servers_issuer_stays_on_the_public_url() {
    let w = world_with(|c| {
        c.gateway.routing = ezforge::config::Routing::Host;
        c.gateway.server_domain = Some("mcp.example.test".into());
    })
    .await;
    assert_eq!(w.resource, "https://weather.mcp.example.test");
    let prm: Value = bare_client()
        .get(w.app.url("/.well-known/oauth-protected-resource"))
        .header("host", "weather.mcp.example.test")
        .send()
        .await
        .expect("prm")
        .json()
        .await
        .expect("json");
    let issuer = prm["authorization_servers"][0]
        .as_str()
        .expect("issuer")
        .to_owned();
    assert_eq!(issuer, format!("{}/oauth/mcp/weather", w.issuer()));
    let meta: Value = bare_client()
        .get(
            w.app
                .url("/.well-known/oauth-authorization-server/oauth/mcp/weather"),
        )
        .send()
        .await
        .expect("meta")
        .json()
        .await
        .expect("json");
    assert_eq!(meta["issuer"], issuer);
    let d = Discovered {
        challenge_scope: "mcp:read".into(),
        prm,
        issuer,
        meta,
    };
    let client_id = w.public_client().await;
    for resource in [None, Some("https://WEATHER.mcp.example.test:443/")] {
        let req = match resource {
            Some(r) => AuthRequest::new(&client_id, REDIRECT, r),
            None => AuthRequest::new(&client_id, REDIRECT, "").without("resource"),
        };
        let (_, reply) = flow_at(&w, &d, req).await;
        reply.assert_ok();
        assert_eq!(
            jwt_parts(&reply.access_token()).1["aud"],
            "https://weather.mcp.example.test"
        );
        let res = bare_client()
            .post(w.app.url("/mcp"))
            .header("host", "weather.mcp.example.test")
            .bearer_auth(reply.access_token())
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}).to_string())
            .send()
            .await
            .expect("front door");
        assert_eq!(res.status(), 200, "{resource:?}");
    }
}
