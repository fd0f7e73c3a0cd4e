//! Issue 17.4: every proxied request carries `X-Ezforge-Assertion`, a JWT the upstream verifies
//! with ezforge's published assertion keys, bound to its own server by `aud`, in both auth modes.

use serde_json::{Value, json};

use crate::fakes::{FakeUpstream, TestIssuer};
use crate::helpers::{TestApp, admin_token, create_project, post_as};

const JWKS: &str = "/.well-known/ezforge-assertion-jwks.json";

/// What an upstream does: fetch the JWKS, pick the key by `kid`, check the signature, `typ`,
/// `iss`, `aud` and the lifetime. Returns the claims, or why it refused.
pub(crate) async fn verify(app: &TestApp, token: &str, audience: &str) -> Result<Value, String> {
    let res = app.get(JWKS).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/json");
    let jwks: jsonwebtoken::jwk::JwkSet = res.json().await.expect("jwks");
    let header = jsonwebtoken::decode_header(token).map_err(|e| e.to_string())?;
    if header.typ.as_deref() != Some("ezforge-assertion+jwt") {
        return Err(format!("typ {:?}", header.typ));
    }
    let kid = header.kid.ok_or("no kid")?;
    let jwk = jwks.find(&kid).ok_or("unknown kid")?;
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    v.set_audience(&[audience]);
    v.set_issuer(&[app.address.as_str()]);
    v.leeway = 0;
    jsonwebtoken::decode::<Value>(token, &key, &v)
        .map(|d| d.claims)
        .map_err(|e| e.to_string())
}

/// The assertion(s) the upstream received with its last request.
pub(crate) fn assertions(up: &FakeUpstream) -> Vec<String> {
    up.last_headers()
        .into_iter()
        .filter(|(k, _)| k == "x-ezforge-assertion")
        .map(|(_, v)| v)
        .collect()
}

/// A ping at `slug` with `token` (and, `forged`, the identity headers a client may try): the
/// status.
pub(crate) async fn call(app: &TestApp, slug: &str, token: &str, forged: bool) -> u16 {
    let mut req = app.mcp(slug).bearer(token);
    if forged {
        req = req
            .header("x-ezforge-assertion", "forged.by.client")
            .header("x-ezforge-subject", "usr_admin");
    }
    req.call("ping", Value::Null).await.status
}

/// A project with one server routed to `up`; (server id, project id, resource URI).
async fn server(
    app: &TestApp,
    admin: &str,
    project: &str,
    name: &str,
    up: &FakeUpstream,
) -> (String, String, String) {
    let p = create_project(app, admin, project).await;
    let pid = p["id"].as_str().expect("id");
    let s = post_as(
        app,
        admin,
        &format!("/v1/projects/{pid}/servers"),
        json!({ "name": name, "upstreamUrl": up.url }),
    )
    .await;
    let s = &s.expect(201)["data"];
    (
        s["id"].as_str().expect("id").to_owned(),
        pid.to_owned(),
        s["url"].as_str().expect("url").to_owned(),
    )
}

#[tokio::test]
async fn every_proxied_request_carries_a_verifiable_assertion_bound_to_its_server() {
    let app = TestApp::spawn().await;
    let admin = admin_token(&app).await;
    let up = FakeUpstream::start().await;
    let (sid, pid, resource) = server(&app, &admin, "Team A", "weather", &up).await;
    let token = crate::gateway::front_door::managed_token(
        &app,
        "weather",
        "mcp:read mcp:execute",
        json!({}),
    );

    // A client's own X-Ezforge-* headers never reach the upstream.
    assert_eq!(call(&app, "weather", &token, true).await, 200);
    let sent = assertions(&up);
    assert_eq!(sent.len(), 1, "exactly ours: {sent:?}");
    assert_ne!(sent[0], "forged.by.client");
    let subjects: Vec<_> = up
        .last_headers()
        .into_iter()
        .filter(|(k, _)| k == "x-ezforge-subject")
        .collect();
    assert_eq!(
        subjects,
        vec![("x-ezforge-subject".to_owned(), "usr_alice".to_owned())]
    );

    let claims = verify(&app, &sent[0], &resource).await.expect("verifies");
    assert_eq!(claims["iss"], app.address);
    assert_eq!(claims["aud"], resource);
    assert_eq!(claims["sub"], "usr_alice");
    assert_eq!(claims["client_id"], "client_test");
    assert_eq!(claims["scope"], "mcp:read mcp:execute");
    assert_eq!(claims["server_id"], sid);
    assert_eq!(claims["project_id"], pid);
    let (iat, exp) = (
        claims["iat"].as_i64().expect("iat"),
        claims["exp"].as_i64().expect("exp"),
    );
    assert_eq!(exp - iat, 60, "lives 60 s");
    assert!((iat - ezforge::domain::now()).abs() <= 5);

    // Reused while fresh: the front door does not sign per request.
    assert_eq!(call(&app, "weather", &token, false).await, 200);
    assert_eq!(assertions(&up), sent);

    // Not an access token, and not signed with the access-token keys.
    let oauth_jwks: Value = app
        .get("/oauth/jwks.json")
        .await
        .json()
        .await
        .expect("jwks");
    let kid = jsonwebtoken::decode_header(&sent[0])
        .expect("header")
        .kid
        .expect("kid");
    assert!(
        oauth_jwks["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .all(|k| k["kid"] != kid.as_str()),
        "{oauth_jwks}"
    );
    let res = app
        .client
        .post(format!("{}/mcp/weather", app.address))
        .bearer_auth(&sent[0])
        .header("content-type", "application/json")
        .body(json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}).to_string())
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 401, "an assertion is no bearer token");

    // Another project's server: its upstream gets an assertion naming its own server; an
    // upstream checking `aud` refuses the one meant for the other.
    let other = FakeUpstream::start().await;
    let (other_sid, _, other_resource) = server(&app, &admin, "Team B", "billing", &other).await;
    let token_b = crate::gateway::front_door::managed_token(&app, "billing", "mcp:read", json!({}));
    assert_eq!(call(&app, "billing", &token_b, false).await, 200);
    let b = assertions(&other);
    let claims_b = verify(&app, &b[0], &other_resource)
        .await
        .expect("verifies");
    assert_eq!(claims_b["server_id"], other_sid);
    let err = verify(&app, &b[0], &resource)
        .await
        .expect_err("wrong audience");
    assert!(err.contains("Audience") || err.contains("aud"), "{err}");
    let err = verify(&app, &sent[0], &other_resource)
        .await
        .expect_err("wrong audience");
    assert!(err.contains("Audience") || err.contains("aud"), "{err}");

    // A forged one, signed by anyone else, does not verify.
    let mut tampered = sent[0].clone();
    tampered.replace_range(tampered.len() - 4.., "AAAA");
    assert!(verify(&app, &tampered, &resource).await.is_err());
}

#[tokio::test]
async fn assertion_keys_rotate_with_the_signing_keys_and_stay_published_while_needed() {
    let app = TestApp::spawn().await;
    let admin = admin_token(&app).await;
    let up = FakeUpstream::start().await;
    let (_, _, resource) = server(&app, &admin, "Rotating", "rot", &up).await;
    let alice = crate::gateway::front_door::managed_token(&app, "rot", "mcp:read", json!({}));
    assert_eq!(call(&app, "rot", &alice, false).await, 200);
    let before = assertions(&up).remove(0);
    let kid_before = jsonwebtoken::decode_header(&before)
        .expect("h")
        .kid
        .expect("kid");

    // `ezforge keys rotate`, then the running server notices (SIGHUP here).
    let st = app.state.clone();
    app.state
        .store
        .run(move |c| {
            ezforge::services::keys::rotate(c, &st.master_key, ezforge::domain::now(), 900)
        })
        .await
        .expect("rotate");
    app.reload().await;

    let bob = crate::gateway::front_door::managed_token(
        &app,
        "rot",
        "mcp:read",
        json!({ "sub": "usr_bob" }),
    );
    assert_eq!(call(&app, "rot", &bob, false).await, 200);
    let after = assertions(&up).remove(0);
    let kid_after = jsonwebtoken::decode_header(&after)
        .expect("h")
        .kid
        .expect("kid");
    assert_ne!(kid_after, kid_before, "the new key signs");
    // Both verify: the retired key stays published.
    assert_eq!(
        verify(&app, &after, &resource).await.expect("new")["sub"],
        "usr_bob"
    );
    assert_eq!(
        verify(&app, &before, &resource).await.expect("old")["sub"],
        "usr_alice"
    );
}

#[tokio::test]
async fn byoa_mode_publishes_assertion_keys_without_an_authorization_server() {
    let issuer = TestIssuer::start().await;
    let cfg = issuer.byoa_config();
    let ca = issuer.ca_file.clone();
    let app = TestApp::builder()
        .config(move |c| {
            c.auth.mode = ezforge::config::AuthMode::Byoa;
            c.auth.byoa = Some(cfg);
            c.outbound.ca_files = vec![ca];
            c.outbound.allow_private_addresses = true;
        })
        .spawn()
        .await;
    assert_eq!(
        app.get("/oauth/jwks.json").await.status(),
        404,
        "no authorization server"
    );
    let admin = admin_token(&app).await;
    let up = FakeUpstream::start().await;
    let (sid, pid, resource) = server(&app, &admin, "External", "ext", &up).await;
    let now = ezforge::domain::now();
    let token = issuer.sign(&json!({
        "iss": issuer.issuer, "sub": "idp-user-42", "aud": resource, "client_id": "idp-client",
        "scope": "mcp:read", "iat": now, "exp": now + 300,
    }));
    assert_eq!(call(&app, "ext", &token, true).await, 200);
    let sent = assertions(&up);
    assert_eq!(sent.len(), 1);
    let claims = verify(&app, &sent[0], &resource).await.expect("verifies");
    // Signed by ezforge (iss), about the external issuer's subject, for this server.
    assert_eq!(claims["iss"], app.address);
    assert_eq!(claims["sub"], "idp-user-42");
    assert_eq!(claims["client_id"], "idp-client");
    assert_eq!(claims["scope"], "mcp:read");
    assert_eq!(claims["server_id"], sid);
    assert_eq!(claims["project_id"], pid);
}
