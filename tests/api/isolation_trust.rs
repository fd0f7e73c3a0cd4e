//! Issue 17.5: a trusted client skips consent, so only a project's owners and instance admins may
//! register one; and an admin authorizing at a server of a project they are not a member of is
//! always asked.

use serde_json::{Value, json};

use crate::browser::{AuthRequest, Person, REDIRECT, api, authorize_as, session_token, world};

/// `POST /v1/servers/:id/clients` as `token`: (status, body).
async fn register(
    w: &crate::browser::World,
    token: &str,
    server: &str,
    trusted: Option<bool>,
) -> (u16, Value) {
    let mut spec =
        json!({ "name": "First party", "redirectUris": [REDIRECT], "scopes": ["mcp:read"] });
    if let Some(t) = trusted {
        spec["trusted"] = json!(t);
    }
    api(
        &w.app,
        "POST",
        &format!("/v1/servers/{server}/clients"),
        Some(token),
        Some(spec),
    )
    .await
}

#[tokio::test]
async fn only_owners_and_admins_register_trusted_clients_and_admins_outside_a_project_are_asked() {
    let w = world().await;
    let (_, member_pw) = w.user("member@example.com", "member").await;
    let (_, owner_pw) = w.user("owner@example.com", "member").await;
    let owner = session_token(&w.app, "owner@example.com", &owner_pw).await;
    let member = session_token(&w.app, "member@example.com", &member_pw).await;

    // The owner's own project, which the admin is not a member of.
    let (status, p) = api(
        &w.app,
        "POST",
        "/v1/projects",
        Some(&owner),
        Some(json!({ "name": "Team" })),
    )
    .await;
    assert_eq!(status, 201, "{p}");
    let team = p["data"]["slug"].as_str().expect("slug").to_owned();
    let (status, body) = api(
        &w.app,
        "POST",
        &format!("/v1/projects/{team}/members"),
        Some(&owner),
        Some(json!({ "email": "member@example.com", "role": "member" })),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    // Members join by accepting their invitation.
    let (status, accepted) = api(
        &w.app,
        "POST",
        "/v1/invitations/accept",
        Some(&member),
        Some(json!({ "token": body["data"]["inviteToken"] })),
    )
    .await;
    assert_eq!(status, 200, "{accepted}");
    let (status, s) = api(
        &w.app,
        "POST",
        &format!("/v1/projects/{team}/servers"),
        Some(&owner),
        Some(json!({ "name": "tools", "upstreamUrl": w.up.url })),
    )
    .await;
    assert_eq!(status, 201, "{s}");
    let resource = s["data"]["url"].as_str().expect("url").to_owned();

    // A member: ordinary clients yes, trusted no (403 naming the field and the rule).
    let (status, body) = register(&w, &member, "tools", Some(true)).await;
    assert_eq!(status, 403, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("trusted") && message.contains("owner"),
        "{message}"
    );
    let (status, body) = register(&w, &member, "tools", Some(false)).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["data"]["trusted"], false);
    let (status, _) = register(&w, &member, "tools", None).await;
    assert_eq!(status, 201);
    // Nothing trusted was written for the member.
    let (_, list) = api(
        &w.app,
        "GET",
        "/v1/servers/tools/clients",
        Some(&owner),
        None,
    )
    .await;
    assert!(
        list["data"]
            .as_array()
            .expect("list")
            .iter()
            .all(|c| c["trusted"] == false),
        "{list}"
    );

    // The project's owner, and an instance admin, may.
    let (status, body) = register(&w, &owner, "tools", Some(true)).await;
    assert_eq!(status, 201, "{body}");
    let trusted = body["data"]["clientId"]
        .as_str()
        .expect("clientId")
        .to_owned();
    let (status, body) = register(&w, &w.admin, "tools", Some(true)).await;
    assert_eq!(status, 201, "{body}");

    // The owner, a member of the project: consent skipped.
    let req = AuthRequest::new(&trusted, REDIRECT, &resource).scope("mcp:read");
    let out = authorize_as(
        &w.browser(),
        &req,
        &Person::new("owner@example.com", &owner_pw),
    )
    .await;
    assert!(out.saw_login && !out.saw_consent, "{}", out.describe());
    out.code();

    // The admin, not a member of it: asked, every time, even after approving and remembering.
    for round in 0..2 {
        let out = authorize_as(&w.browser(), &req, &Person::admin()).await;
        assert!(out.saw_consent, "round {round}: {}", out.describe());
        out.code();
    }
    // Denying works as anywhere.
    let out = authorize_as(&w.browser(), &req, &Person::admin().deny()).await;
    assert!(out.saw_consent, "{}", out.describe());
    out.assert_redirect_error("access_denied", &req, w.issuer());

    // In a project the admin is a member of (it made it), its trusted clients skip consent.
    let (status, body) = register(&w, &w.admin, &w.server_id, Some(true)).await;
    assert_eq!(status, 201, "{body}");
    let own = body["data"]["clientId"]
        .as_str()
        .expect("clientId")
        .to_owned();
    let out = authorize_as(
        &w.browser(),
        &w.request(&own).scope("mcp:read"),
        &Person::admin(),
    )
    .await;
    assert!(!out.saw_consent, "{}", out.describe());
    out.code();
}
