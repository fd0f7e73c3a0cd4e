//! OpenID Connect, and refresh rotation with a grace.

use super::*;

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
    let ui = ApiResponse::read(
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
        let r = ApiResponse::read(
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
    let r = ApiResponse::read(
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

/// The page Prometheus scrapes (the world must have `metrics.enabled`).
async fn metrics_page(w: &World) -> String {
    w.app.get("/metrics").await.text().await.expect("metrics")
}

async fn reuse_metric(w: &World, outcome: &str) -> String {
    let text = metrics_page(w).await;
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
    let w = world_with(|c| c.metrics.enabled = true).await;
    let client_id = w.public_client().await;
    let reply = w.tokens(&client_id, "mcp:read").await;
    let rt = reply.refresh_token();
    let auth = public(&client_id);
    let replies =
        futures_util::future::join_all((0..10).map(|_| refresh(&w.app, &auth, &rt))).await;
    let statuses: Vec<(u16, &str)> = replies.iter().map(|r| (r.status, r.error())).collect();
    assert!(replies.iter().all(|r| r.status == 200), "{statuses:?}");
    let successors: std::collections::BTreeSet<String> =
        replies.iter().map(ApiResponse::refresh_token).collect();
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
        reuse_metric(&w, "grace").await.ends_with(" 9"),
        "{}",
        metrics_page(&w).await
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
    assert!(reuse_metric(&w, "revoked").await.ends_with(" 1"));
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
