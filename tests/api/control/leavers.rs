//! What a person made goes when they lose access: removed from a project, their API keys there
//! (and the keys made with them) and the clients they registered on its servers; deleted, the
//! same in every project.

use serde_json::{Value, json};

use crate::fakes::FakeUpstream;
use crate::helpers::{
    ApiResponse, TestApp, add_member, create_key, delete_as, get_as, post_as, user_session,
};
use crate::oauth::browser::{ClientAuth, token};

/// A confidential client registered by `session` on `slug`; (clientId, clientSecret).
async fn machine_client(app: &TestApp, session: &str, slug: &str) -> (String, String) {
    let body = json!({ "name": "agent", "redirectUris": ["https://agent.example/cb"], "confidential": true });
    let r = post_as(app, session, &format!("/v1/servers/{slug}/clients"), body).await;
    let data = r.expect(201)["data"].clone();
    let field = |f: &str| data[f].as_str().expect("field").to_owned();
    (field("clientId"), field("clientSecret"))
}

async fn machine_token(app: &TestApp, (id, secret): &(String, String), slug: &str) -> ApiResponse {
    let resource = format!("{}/mcp/{slug}", app.address);
    let auth = ClientAuth::Basic(id.clone(), secret.clone());
    token(
        app,
        &auth,
        &[
            ("grant_type", "client_credentials"),
            ("resource", &resource),
        ],
    )
    .await
}

/// Bob, a member of `slug`'s project: a key, a key made with it, a machine client and a token
/// of that client that works.
struct Made {
    key: String,
    minted: String,
    client: (String, String),
    access: String,
}

async fn bob_makes(app: &TestApp, bob: &str, project: &str, slug: &str) -> Made {
    let key = create_key(app, bob, project, &["servers:read", "servers:write"]).await;
    let minted = create_key(app, &key, project, &["servers:read"]).await;
    let client = machine_client(app, bob, slug).await;
    let reply = machine_token(app, &client, slug).await;
    reply.expect(200);
    let access = reply.body["access_token"]
        .as_str()
        .expect("token")
        .to_owned();
    assert_eq!(app.mcp(slug).bearer(&access).tools_list().await.status, 200);
    for k in [&key, &minted] {
        get_as(app, k, "/v1/servers").await.expect(200);
    }
    Made {
        key,
        minted,
        client,
        access,
    }
}

async fn assert_gone(app: &TestApp, made: &Made, slug: &str) {
    for k in [&made.key, &made.minted] {
        assert_eq!(get_as(app, k, "/v1/servers").await.status, 401, "key {k}");
    }
    let r = machine_token(app, &made.client, slug).await;
    assert_eq!(r.status, 401, "{}", r.text);
    assert_eq!(r.body["error"], "invalid_client");
    let r = app.mcp(slug).bearer(&made.access).tools_list().await;
    assert_eq!(r.status, 401, "the client's token is refused at once");
}

fn project_of(server: &Value) -> String {
    server["projectId"].as_str().expect("project").to_owned()
}

#[tokio::test]
async fn a_removed_members_keys_and_clients_go_and_the_owners_stay() {
    let app = TestApp::spawn().await;
    let up = FakeUpstream::start().await;
    let admin = app.admin().await;
    let project = project_of(&app.new_server("weather", &up.url).create().await);
    let (bob_id, bob) = user_session(&app, &admin, "bob@example.com").await;
    add_member(&app, &admin, &project, "bob@example.com", "member").await;
    // Bob in another project too: what he made there is not this removal's business.
    let elsewhere = project_of(&app.new_server("other", &up.url).create().await);
    add_member(&app, &admin, &elsewhere, "bob@example.com", "member").await;
    let made = bob_makes(&app, &bob, &project, "weather").await;
    let kept = create_key(&app, &bob, &elsewhere, &["servers:read"]).await;
    let owners = create_key(&app, &admin, &project, &["servers:read"]).await;
    let owners_client = machine_client(&app, &admin, "weather").await;

    delete_as(
        &app,
        &admin,
        &format!("/v1/projects/{project}/members/{bob_id}"),
    )
    .await
    .expect(204);
    assert_gone(&app, &made, "weather").await;
    get_as(&app, &kept, "/v1/servers").await.expect(200);
    get_as(&app, &owners, "/v1/servers").await.expect(200);
    machine_token(&app, &owners_client, "weather")
        .await
        .expect(200);
    let clients = get_as(&app, &admin, "/v1/servers/weather/clients").await;
    let listed: Vec<&str> = clients.expect(200)["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|c| c["clientId"].as_str())
        .collect();
    assert_eq!(listed, [owners_client.0.as_str()]);
    // The audit record says what went.
    let audit = get_as(&app, &admin, "/v1/audit?limit=50").await;
    let entry = audit.expect(200)["data"]
        .as_array()
        .expect("data")
        .iter()
        .find(|e| e["action"] == "project.member.remove")
        .cloned()
        .expect("audited");
    assert_eq!(
        entry["details"]["keysRevoked"].as_array().map(Vec::len),
        Some(2)
    );
    assert_eq!(entry["details"]["clientsRemoved"], json!([made.client.0]));
}

#[tokio::test]
async fn a_deleted_users_keys_and_clients_go_in_every_project() {
    let app = TestApp::spawn().await;
    let up = FakeUpstream::start().await;
    let admin = app.admin().await;
    let (bob_id, bob) = user_session(&app, &admin, "bob@example.com").await;
    let mut made = Vec::new();
    for slug in ["one", "two"] {
        let project = project_of(&app.new_server(slug, &up.url).create().await);
        add_member(&app, &admin, &project, "bob@example.com", "member").await;
        made.push((slug, bob_makes(&app, &bob, &project, slug).await));
    }
    delete_as(&app, &admin, &format!("/v1/users/{bob_id}"))
        .await
        .expect(204);
    for (slug, made) in &made {
        assert_gone(&app, made, slug).await;
    }
}

#[tokio::test]
async fn the_upgrade_removes_what_those_who_left_made_and_knows_who_made_the_rest() {
    let mut app = TestApp::spawn().await;
    let up = FakeUpstream::start().await;
    let admin = app.admin().await;
    let project = project_of(&app.new_server("weather", &up.url).create().await);
    let (bob_id, bob) = user_session(&app, &admin, "bob@example.com").await;
    let (carol_id, carol) = user_session(&app, &admin, "carol@example.com").await;
    for email in ["bob@example.com", "carol@example.com"] {
        add_member(&app, &admin, &project, email, "member").await;
    }
    let bobs = machine_client(&app, &bob, "weather").await;
    let owners = machine_client(&app, &admin, "weather").await;
    // Carol left under version 11, which kept what she had made.
    let carols = bob_makes(&app, &carol, &project, "weather").await;
    let tmp = app.take_tempdir().expect("tmp");
    let dir = app.data_dir.clone();
    let db = app.db_path();
    app.stop().await;
    crate::helpers::as_version_11(
        &db,
        &format!("DELETE FROM project_members WHERE user_id = '{carol_id}';"),
    );

    let app = TestApp::builder_in(&dir).spawn().await;
    assert_gone(&app, &carols, "weather").await;
    let admin = app.admin().await;
    let audit = get_as(&app, &admin, "/v1/audit?limit=50").await;
    let reasons = audit.expect(200)["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter(|e| e["actor"] == "system" && e["details"]["reason"].is_string())
        .count();
    assert_eq!(reasons, 3, "two keys and a client, each audited");
    // Version 11 recorded no maker; the audit log has each registration's.
    delete_as(
        &app,
        &admin,
        &format!("/v1/projects/{project}/members/{bob_id}"),
    )
    .await
    .expect(204);
    assert_eq!(machine_token(&app, &bobs, "weather").await.status, 401);
    machine_token(&app, &owners, "weather").await.expect(200);
    drop(tmp);
}
