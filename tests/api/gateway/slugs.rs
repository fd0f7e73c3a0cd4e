//! Issue 17 review: a server's slug makes its URL, the identity its tokens (`aud`), its
//! remembered consents and its upstream's `X-Ezforge-Assertion` name. A deleted server's slug
//! stays with its project (another project gets 409, through the API and the config file
//! alike), and its consents go with it.

use std::path::Path;

use serde_json::{Value, json};

use crate::control::declared::{from_file, spawn_from_file, write_config};
use crate::fakes::FakeUpstream;
use crate::gateway::assertion::{assertions, call, verify};
use crate::helpers::{
    TestApp, admin_token, as_version_10, create_project, delete_as, get_as, post_as,
};
use crate::oauth::browser::{
    AuthRequest, Browser, ClientAuth, REDIRECT, World, api, authorize, exchange, world,
};

/// A ping at `slug` with `token`: the status.
async fn ping(app: &TestApp, slug: &str, token: &str) -> u16 {
    call(app, slug, token, false).await
}

/// The claims of the assertion `up` received last, checked as an upstream checks them.
async fn last_claims(w: &World, up: &FakeUpstream) -> Value {
    let sent = assertions(up);
    assert_eq!(sent.len(), 1, "{sent:?}");
    verify(&w.app, &sent[0], &w.resource)
        .await
        .expect("verifies")
}

#[tokio::test]
async fn a_deleted_servers_slug_stays_with_its_project_and_its_consents_go_with_it() {
    let w = world().await;
    let weather = w.resource.clone();
    let (status, before) = api(&w.app, "GET", "/v1/servers/weather", Some(&w.admin), None).await;
    assert_eq!(status, 200, "{before}");
    let project_id = before["data"]["projectId"].as_str().expect("projectId");

    // A client that outlives servers, approved at weather, and the approval remembered.
    let client_id = register_dynamic(&w.app).await;
    let (token, asked) = token_at(&w.app, &client_id, &weather).await;
    assert!(asked);
    let (_, asked) = token_at(&w.app, &client_id, &weather).await;
    assert!(!asked, "remembered");
    assert_eq!(ping(&w.app, "weather", &token).await, 200);
    let old = last_claims(&w, &w.up).await;
    assert_eq!(old["server_id"], w.server_id);

    // The project deletes its server; its upstream keeps running, as upstreams do.
    let (status, body) = api(
        &w.app,
        "DELETE",
        "/v1/servers/weather",
        Some(&w.admin),
        None,
    )
    .await;
    assert_eq!(status, 204, "{body}");

    // Another project cannot take the slug (named or derived from the name): 409 naming the
    // rule, nothing written.
    let (status, other) = api(
        &w.app,
        "POST",
        "/v1/projects",
        Some(&w.admin),
        Some(json!({ "name": "Team A" })),
    )
    .await;
    assert_eq!(status, 201, "{other}");
    for spec in [
        json!({ "name": "weather", "upstreamUrl": w.up.url }),
        json!({ "name": "Anything", "slug": "weather", "upstreamUrl": w.up.url }),
    ] {
        let (status, body) = api(
            &w.app,
            "POST",
            "/v1/projects/team-a/servers",
            Some(&w.admin),
            Some(spec),
        )
        .await;
        assert_eq!(status, 409, "{body}");
        assert_eq!(body["error"]["code"], "CONFLICT", "{body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("weather") && message.contains("stays with that project"),
            "{message}"
        );
    }
    let (_, list) = api(
        &w.app,
        "GET",
        "/v1/projects/team-a/servers",
        Some(&w.admin),
        None,
    )
    .await;
    assert_eq!(list["data"], json!([]), "{list}");
    assert_eq!(ping(&w.app, "weather", &token).await, 404);

    // Its own project may take it again: the same URL for a new server, whose upstream sees
    // another server_id. The old grant's token is refused there, and the remembered consent
    // went with the old server: asked again.
    let server = w.add_server("weather").await;
    assert_eq!(server["url"], weather);
    assert_ne!(server["id"], w.server_id);
    assert_eq!(ping(&w.app, "weather", &token).await, 401);
    let (token, asked) = token_at(&w.app, &client_id, &weather).await;
    assert!(asked, "asked again");
    assert_eq!(ping(&w.app, "weather", &token).await, 200);
    let new = last_claims(&w, &w.up).await;
    assert_eq!(new["aud"], old["aud"]);
    assert_eq!(new["server_id"], server["id"]);
    assert_eq!(new["project_id"], project_id);
}

/// A token for `client_id` at `resource`, approved by the admin; and whether the consent page
/// came.
async fn token_at(app: &TestApp, client_id: &str, resource: &str) -> (String, bool) {
    let req = AuthRequest::new(client_id, REDIRECT, resource).scope("mcp:read");
    let out = authorize(&Browser::new(app), &req).await;
    let reply = exchange(
        app,
        &ClientAuth::Public(client_id.to_owned()),
        &req,
        &out.code(),
    )
    .await;
    reply.assert_ok();
    (reply.access_token(), out.saw_consent)
}

/// An RFC 7591 client: it belongs to no server, so it outlives them.
async fn register_dynamic(app: &TestApp) -> String {
    let res = app
        .client
        .post(app.url("/oauth/register"))
        .json(&json!({ "redirect_uris": [REDIRECT], "client_name": "Roaming" }))
        .send()
        .await
        .expect("register");
    assert_eq!(res.status(), 201);
    let body: Value = res.json().await.expect("json");
    body["client_id"].as_str().expect("client_id").to_owned()
}

/// Starts again on `data_dir` with the config `file` gives.
async fn restart(data_dir: &Path, file: &Path) -> Result<TestApp, String> {
    TestApp::builder_in(data_dir)
        .config(from_file(file))
        .try_spawn()
        .await
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn config_declared_servers_keep_their_slug_in_their_project() {
    let up = FakeUpstream::start().await;
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("declared.toml");
    write_config(&file, &[("cfg", "tools", &up.url)]);
    let mut app = spawn_from_file(&file).await;
    let admin = admin_token(&app).await;
    let resource = app.url("/mcp/tools");
    let client_id = register_dynamic(&app).await;
    // (The admin is no member of the file's project: asked each time, nothing remembered.)
    let (token, _) = token_at(&app, &client_id, &resource).await;
    assert_eq!(ping(&app, "tools", &token).await, 200);

    // A declared server cannot move to another project: the file is refused as a whole.
    write_config(&file, &[("cfg-two", "tools", &up.url)]);
    app.reload().await;
    let s = get_as(&app, &admin, "/v1/servers/tools").await;
    let cfg = get_as(&app, &admin, "/v1/projects/cfg").await;
    assert_eq!(s.expect(200)["projectId"], cfg.expect(200)["id"]);
    assert_eq!(
        get_as(&app, &admin, "/v1/projects/cfg-two").await.status,
        404
    );
    assert_eq!(ping(&app, "tools", &token).await, 200);

    // Removed from the file: deleted like through the API (grants revoked at once, the slug
    // kept for its project).
    write_config(&file, &[]);
    app.reload().await;
    assert_eq!(get_as(&app, &admin, "/v1/servers/tools").await.status, 404);
    create_project(&app, &admin, "Elsewhere").await;
    let r = post_as(
        &app,
        &admin,
        "/v1/projects/elsewhere/servers",
        json!({ "name": "tools" }),
    )
    .await;
    assert_eq!(r.status, 409, "{}", r.text);
    // Declared again in its project: a new server, the old token refused there.
    write_config(&file, &[("cfg", "tools", &up.url)]);
    app.reload().await;
    get_as(&app, &admin, "/v1/servers/tools").await.expect(200);
    assert_eq!(ping(&app, "tools", &token).await, 401);
    let (token, _) = token_at(&app, &client_id, &resource).await;
    assert_eq!(ping(&app, "tools", &token).await, 200);

    // Declared in another project after its deletion: refused at start, naming the key.
    write_config(&file, &[]);
    app.reload().await;
    let data = app.take_tempdir().expect("tempdir");
    let data_dir = app.data_dir.clone();
    app.stop().await;
    write_config(&file, &[("elsewhere", "tools", &up.url)]);
    let err = restart(&data_dir, &file).await.err().expect("refused");
    assert!(
        err.contains("servers[0].slug") && err.contains("stays with that project"),
        "{err}"
    );
    // In its own project it starts.
    write_config(&file, &[("cfg", "tools", &up.url)]);
    let app = restart(&data_dir, &file).await.expect("starts");
    let admin = admin_token(&app).await;
    get_as(&app, &admin, "/v1/servers/tools").await.expect(200);
    drop(app);
    drop(data);
}

/// What an upgrade finds: servers deleted before slugs were kept (their audit records say
/// which, and for which project), and consents remembered for them.
#[tokio::test]
async fn an_upgrade_keeps_the_slugs_of_servers_deleted_before_for_their_projects() {
    let mut app = TestApp::spawn().await;
    let admin = admin_token(&app).await;
    let b = create_project(&app, &admin, "Team B").await;
    let b_id = b["id"].as_str().expect("id").to_owned();
    create_project(&app, &admin, "Team A").await;
    for name in ["gone", "stays", "back"] {
        post_as(
            &app,
            &admin,
            "/v1/projects/team-b/servers",
            json!({ "name": name }),
        )
        .await
        .expect(201);
    }
    for slug in ["gone", "back"] {
        delete_as(&app, &admin, &format!("/v1/servers/{slug}"))
            .await
            .expect(204);
    }
    let (status, me) = api(&app, "GET", "/v1/auth/session", Some(&admin), None).await;
    assert_eq!(status, 200);
    let admin_id = me["data"]["user"]["id"].as_str().expect("id").to_owned();
    let data = app.take_tempdir().expect("tempdir");
    let data_dir = app.data_dir.clone();
    let db = app.db_path();
    app.stop().await;
    let consent = |resource: String| {
        format!(
            "INSERT INTO consents (user_id, client_id, resource, scopes, expires_at)
             VALUES ('{admin_id}', 'client_x', '{resource}', 'mcp:read', 9999999999);"
        )
    };
    // `back` was taken again by another project before the upgrade (allowed then): that
    // server keeps it.
    let taken = "INSERT INTO servers (id, project_id, name, slug, status, auth_mode, created_at, updated_at)
        SELECT 'srv_back_in_a', id, 'back', 'back', 'stopped', 'ezforge_managed', 1, 1
        FROM projects WHERE slug = 'team-a';";
    as_version_10(
        &db,
        &[
            taken.to_owned(),
            consent("http://127.0.0.1:1/mcp/gone".into()),
            consent("http://127.0.0.1:1/mcp/stays".into()),
            consent("https://gone.mcp.example.com".into()),
            consent("https://stays.mcp.example.com".into()),
        ]
        .concat(),
    );

    let app = TestApp::builder_in(&data_dir).spawn().await;
    let admin = admin_token(&app).await;
    let r = post_as(
        &app,
        &admin,
        "/v1/projects/team-a/servers",
        json!({ "name": "gone" }),
    )
    .await;
    assert_eq!(r.status, 409, "{}", r.text);
    assert!(r.text.contains("stays with that project"), "{}", r.text);
    let s = post_as(
        &app,
        &admin,
        "/v1/projects/team-b/servers",
        json!({ "name": "gone" }),
    )
    .await;
    assert_eq!(s.expect(201)["data"]["projectId"], b_id);
    // Deleted now by its new holder, it stays with that one.
    delete_as(&app, &admin, "/v1/servers/back")
        .await
        .expect(204);
    let r = post_as(
        &app,
        &admin,
        "/v1/projects/team-b/servers",
        json!({ "name": "back" }),
    )
    .await;
    assert_eq!(r.status, 409, "{}", r.text);
    // Consents for servers that are gone went; a live server's stayed.
    let left: Vec<String> = app
        .state
        .store
        .run(|c| {
            let mut stmt = c
                .prepare("SELECT resource FROM consents ORDER BY resource")
                .map_err(ezforge::store::StoreError::from)?;
            let rows = stmt
                .query_map([], |r| r.get(0))
                .map_err(ezforge::store::StoreError::from)?
                .collect::<Result<Vec<String>, _>>()
                .map_err(ezforge::store::StoreError::from)?;
            Ok::<_, ezforge::store::StoreError>(rows)
        })
        .await
        .expect("consents");
    assert_eq!(
        left,
        [
            "http://127.0.0.1:1/mcp/stays",
            "https://stays.mcp.example.com"
        ]
    );
    drop(app);
    drop(data);
}
