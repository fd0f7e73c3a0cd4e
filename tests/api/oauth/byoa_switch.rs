//! Issue 20: switching a server to an external issuer looks at the issuer and says what is
//! wrong (the switch still happens); our own tokens at a BYOA server are refused as such; the
//! issuer's keys failing is in the server's log.

use serde_json::{Value, json};

use crate::fakes::{FakeUpstream, TestIssuer};
use crate::gateway::front_door::{app_trusting, managed_token, resource};
use crate::helpers::{admin_token, create_project, get_as, patch_as, post_as};

fn byoa_body(issuer: &TestIssuer) -> Value {
    let cfg = issuer.byoa_config();
    json!({"authMode": "byoa", "byoaConfig": {
        "issuer": cfg.issuer, "jwksUri": cfg.jwks_uri,
        "authorizationEndpoint": cfg.authorization_endpoint, "tokenEndpoint": cfg.token_endpoint,
    }})
}

#[tokio::test]
async fn a_switch_to_an_issuer_says_what_fails_and_tokens_fail_clearly() {
    let good = TestIssuer::start().await;
    let down = TestIssuer::start().await;
    let app = app_trusting(&[&good, &down]).await;
    let admin = admin_token(&app).await;
    let up = FakeUpstream::start().await;
    let project = create_project(&app, &admin, "byoa").await;
    let pid = project["id"].as_str().expect("id");
    for slug in ["fine", "broken"] {
        let r = post_as(
            &app,
            &admin,
            &format!("/v1/projects/{pid}/servers"),
            json!({"name": slug, "slug": slug, "upstreamUrl": up.url}),
        )
        .await;
        assert_eq!(r.status, 201, "{}", r.text);
    }
    // A managed token, minted while the server is still ours.
    let ours = managed_token(&app, "broken", "mcp:read", json!({}));

    // A reachable issuer whose documents agree: no warning.
    let r = patch_as(&app, &admin, "/v1/servers/fine/auth", byoa_body(&good)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.body.get("warnings").is_none(), "{}", r.text);

    // One that is down: switched all the same, with warnings naming what failed.
    down.stop().await;
    let r = patch_as(&app, &admin, "/v1/servers/broken/auth", byoa_body(&down)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["data"]["authMode"], "byoa");
    let warnings = r.body["warnings"].as_array().expect("warnings").clone();
    assert!(
        warnings
            .iter()
            .any(|w| w.as_str().is_some_and(|w| w.contains("discovery document"))),
        "{warnings:?}"
    );
    assert!(
        warnings.iter().any(|w| w
            .as_str()
            .is_some_and(|w| w.contains("keys cannot be fetched"))),
        "{warnings:?}"
    );

    // Our own token there: 401 invalid_token (sign in again), not "try again later".
    let ping = json!({"jsonrpc": "2.0", "id": 1, "method": "ping"});
    let res = app.mcp("broken").bearer(&ours).send(ping.clone()).await;
    assert_eq!(res.status, 401);
    let challenge = res.headers["www-authenticate"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(challenge.contains("invalid_token"), "{challenge}");

    // A token of that issuer: its keys cannot be had, so 503, and the server's log says why.
    let theirs = down.sign(&json!({
        "iss": down.issuer, "sub": "u", "aud": resource(&app, "broken"),
        "scp": ["mcp:read"], "exp": ezforge::domain::now() + 600,
    }));
    let res = app.mcp("broken").bearer(&theirs).send(ping).await;
    assert_eq!(res.status, 503);
    let logs = crate::deploy::deployments::poll_get(
        &app,
        &admin,
        "/v1/servers/broken/logs?search=cannot%20be%20fetched",
        "the key failure in the server's log",
        |r| {
            let entries = r.expect(200)["data"].as_array()?.clone();
            entries
                .iter()
                .any(|e| {
                    e["message"]
                        .as_str()
                        .is_some_and(|m| m.starts_with("tokens cannot be checked"))
                })
                .then_some(entries)
        },
    )
    .await;
    assert!(!logs.is_empty());
    let s = get_as(&app, &admin, "/v1/servers/broken/logs?search=BYOA%20issuer").await;
    assert!(s.text.contains("discovery document"), "{}", s.text);
}

/// A server the config file puts behind an issuer that is down: said at start, in its log.
#[tokio::test]
async fn a_config_declared_byoa_server_is_checked_at_start() {
    let down = TestIssuer::start().await;
    down.stop().await;
    let up = FakeUpstream::start().await;
    let cfg = down.byoa_config();
    let ca = down.ca_file.clone();
    let app = crate::helpers::TestApp::builder()
        .config(move |c| {
            c.outbound.ca_files = vec![ca];
            c.outbound.allow_private_addresses = true;
            c.servers = vec![ezforge::config::ServerDecl {
                project: "declared".into(),
                slug: "ext".into(),
                name: None,
                upstream: Some(up.url.clone()),
                auth_mode: Some("byoa".into()),
                byoa: Some(cfg),
                tool_scopes: Default::default(),
                rate_limit: None,
            }];
        })
        .spawn()
        .await;
    let admin = admin_token(&app).await;
    crate::deploy::deployments::poll_get(
        &app,
        &admin,
        "/v1/servers/ext/logs?search=BYOA%20issuer",
        "the start-up check in the server's log",
        |r| r.text.contains("keys cannot be fetched").then_some(()),
    )
    .await;
}
