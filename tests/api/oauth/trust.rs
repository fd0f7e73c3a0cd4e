//! Issue 17.5: a trusted client skips consent, so only a project's owners and instance admins may
//! register one; and an admin authorizing at a server of a project they are not a member of is
//! always asked.

use serde_json::{Value, json};

use crate::helpers::{
    TestApp, USER_PASSWORD, add_member, admin_token, as_version_10, create_project, create_user,
    get_as, login, post_as,
};
use crate::oauth::browser::{
    AuthRequest, Person, REDIRECT, api, authorize_as, session_token, world,
};

/// `POST /v1/servers/:id/clients` as `token`: (status, body).
async fn register(
    w: &crate::oauth::browser::World,
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

/// The upgrade to version 11: before it any member could mark a client trusted. Trust stays
/// only where the audit log shows a current owner of the project or an instance admin
/// registered the client trusted; the others lose it, on record.
#[tokio::test]
async fn an_upgrade_keeps_trust_only_where_a_current_owner_or_admin_set_it() {
    let mut app = TestApp::spawn().await;
    let admin = admin_token(&app).await;
    for email in [
        "owner@example.com",
        "member@example.com",
        "former@example.com",
    ] {
        create_user(&app, &admin, email, "member").await;
    }
    let owner = login(&app, "owner@example.com", USER_PASSWORD).await;
    create_project(&app, &owner, "Team").await;
    add_member(&app, &owner, "team", "member@example.com", "member").await;
    add_member(&app, &owner, "team", "former@example.com", "owner").await;
    let member = login(&app, "member@example.com", USER_PASSWORD).await;
    let former = login(&app, "former@example.com", USER_PASSWORD).await;
    post_as(
        &app,
        &owner,
        "/v1/projects/team/servers",
        json!({ "name": "tools" }),
    )
    .await
    .expect(201);
    let register = async |token: &str, name: &str, trusted: bool| {
        let r = post_as(
            &app,
            token,
            "/v1/servers/tools/clients",
            json!({ "name": name, "redirectUris": [REDIRECT], "trusted": trusted }),
        )
        .await;
        r.expect(201)["data"]["id"].as_str().expect("id").to_owned()
    };
    register(&owner, "by-owner", true).await;
    register(&admin, "by-admin", true).await;
    register(&owner, "plain", false).await;
    register(&former, "by-former-owner", true).await;
    // What the landed version let a member do: a trusted client, recorded as such.
    let by_member = register(&member, "by-member", false).await;
    // An owner who has left the project since (under version 10, which kept the clients of
    // those who left; version 12 removes them with their maker).
    let (status, me) = api(&app, "GET", "/v1/auth/session", Some(&former), None).await;
    assert_eq!(status, 200, "{me}");
    let former_id = me["data"]["user"]["id"].as_str().expect("id").to_owned();

    let data = app.take_tempdir().expect("tempdir");
    let data_dir = app.data_dir.clone();
    let db = app.db_path();
    app.stop().await;
    as_version_10(
        &db,
        &format!(
            "DELETE FROM project_members WHERE user_id = '{former_id}';
             UPDATE oauth_clients SET trusted = 1 WHERE id = '{by_member}';
             UPDATE audit_log SET details = json_set(details, '$.trusted', json('true'))
               WHERE action = 'client.create' AND target = '{by_member}';"
        ),
    );

    let app = TestApp::builder_in(&data_dir).spawn().await;
    let admin = admin_token(&app).await;
    let list = get_as(&app, &admin, "/v1/servers/tools/clients").await;
    let mut trusted: Vec<(String, bool)> = list.expect(200)["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap_or_default().to_owned(),
                c["trusted"] == true,
            )
        })
        .collect();
    trusted.sort();
    // Version 11 demoted the former owner's client; version 12 removes it (its maker left).
    assert_eq!(
        trusted,
        [
            ("by-admin".to_owned(), true),
            ("by-member".to_owned(), false),
            ("by-owner".to_owned(), true),
            ("plain".to_owned(), false),
        ]
    );
    let audit = get_as(&app, &admin, "/v1/audit?limit=100").await;
    let untrusted: Vec<&Value> = audit.expect(200)["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter(|a| a["action"] == "client.untrust")
        .collect();
    assert_eq!(untrusted.len(), 2, "{untrusted:?}");
    let removed = audit.body["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter(|a| a["action"] == "client.delete" && a["actor"] == "system")
        .count();
    assert_eq!(removed, 1, "the former owner's");
    assert!(untrusted.iter().all(|a| a["actor"] == "system"));
    assert!(untrusted.iter().any(|a| a["target"] == by_member.as_str()));
    drop(app);
    drop(data);
}
