//! Servers declared in the config file: shown as `managedBy: "config"`, refused to the API
//! (409 naming the file), and reconciled with the file at start and on reload.

use std::path::Path;

use serde_json::{Value, json};

use crate::helpers::{
    TestApp, admin_token, create_project, delete_as, get_as, patch_as, post_as, put_as,
};

fn decl(project: &str, slug: &str, upstream: &str) -> ezforge::config::ServerDecl {
    ezforge::config::ServerDecl {
        project: project.into(),
        slug: slug.into(),
        name: Some(format!("Declared {slug}")),
        upstream: Some(upstream.into()),
        auth_mode: None,
        byoa: None,
        tool_scopes: Default::default(),
        rate_limit: None,
    }
}

/// All servers the admin sees, by slug.
async fn servers_by_slug(app: &TestApp, admin: &str) -> std::collections::BTreeMap<String, Value> {
    let res = get_as(app, admin, "/v1/servers?limit=100").await;
    res.expect(200)["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|s| (s["slug"].as_str().expect("slug").to_owned(), s.clone()))
        .collect()
}

#[tokio::test]
async fn declared_servers_are_config_managed_and_refuse_api_changes() {
    let app = TestApp::builder()
        .config(|c| {
            c.servers = vec![
                decl("cfg", "declared-one", "http://127.0.0.1:3001/mcp"),
                ezforge::config::ServerDecl {
                    tool_scopes: [("delete_repo".to_owned(), "mcp:execute".to_owned())]
                        .into_iter()
                        .collect(),
                    ..decl("cfg", "declared-two", "https://mcp.example.com/mcp")
                },
            ]
        })
        .spawn()
        .await;
    let admin = admin_token(&app).await;
    let servers = servers_by_slug(&app, &admin).await;
    let one = &servers["declared-one"];
    assert_eq!(one["managedBy"], "config");
    assert_eq!(one["name"], "Declared declared-one");
    assert_eq!(one["upstreamUrl"], "http://127.0.0.1:3001/mcp");
    // Nothing listens there: probed at start, it reads unreachable with the cause.
    assert!(
        matches!(one["status"].as_str(), Some("running" | "unreachable")),
        "{one}"
    );
    assert_eq!(one["authMode"], "ezforge_managed");
    assert_eq!(
        servers["declared-two"]["toolScopes"],
        json!({ "delete_repo": "mcp:execute" })
    );
    // Its project was made for it.
    let p = get_as(&app, &admin, "/v1/projects/cfg").await;
    assert_eq!(p.expect(200)["data"]["managedBy"], "config");
    assert_eq!(p.body["data"]["id"], one["projectId"]);

    let id = one["id"].as_str().expect("id");
    for (method, path, body) in [
        (
            "PATCH",
            format!("/v1/servers/{id}"),
            Some(json!({ "name": "Hijacked" })),
        ),
        (
            "PATCH",
            "/v1/servers/declared-one".to_owned(),
            Some(json!({ "upstreamUrl": "http://127.0.0.1:9/x" })),
        ),
        ("DELETE", format!("/v1/servers/{id}"), None),
        (
            "PATCH",
            format!("/v1/servers/{id}/auth"),
            Some(json!({ "authMode": "ezforge_managed" })),
        ),
    ] {
        let res = crate::helpers::call(&app, method, &path, Some(&admin), body.as_ref()).await;
        assert_eq!(res.status, 409, "{method} {path}: {}", res.text);
        res.assert_error_shape();
        assert_eq!(res.code(), "CONFLICT");
        assert!(
            res.body["error"]["message"]
                .as_str()
                .expect("message")
                .contains("config"),
            "the message points at the config: {}",
            res.text
        );
    }
    let after = servers_by_slug(&app, &admin).await;
    assert_eq!(
        after["declared-one"], servers["declared-one"],
        "nothing changed"
    );
    // A key of the project gets the same answer.
    let key =
        crate::helpers::create_key(&app, &admin, "cfg", &["servers:write", "servers:read"]).await;
    let res = patch_as(
        &app,
        &key,
        "/v1/servers/declared-one",
        json!({ "name": "x" }),
    )
    .await;
    assert_eq!(res.status, 409, "{}", res.text);
    // The slug is taken for API-created servers.
    let res = post_as(
        &app,
        &admin,
        "/v1/projects/cfg/servers",
        json!({ "name": "x", "slug": "declared-one" }),
    )
    .await;
    assert_eq!(res.status, 409, "{}", res.text);
    // Other servers in the same project are ordinary.
    let res = post_as(
        &app,
        &admin,
        "/v1/projects/cfg/servers",
        json!({ "name": "By Hand" }),
    )
    .await;
    assert_eq!(res.expect(201)["data"]["managedBy"], "api");
    patch_as(
        &app,
        &admin,
        "/v1/servers/by-hand",
        json!({ "name": "Still By Hand" }),
    )
    .await
    .expect(200);
    delete_as(&app, &admin, "/v1/servers/by-hand")
        .await
        .expect(204);
}

pub(crate) fn write_config(path: &Path, servers: &[(&str, &str, &str)]) {
    let mut text = String::from("# written by control_declared.rs\n");
    for (project, slug, upstream) in servers {
        text.push_str(&format!(
            "\n[[servers]]\nproject = \"{project}\"\nslug = \"{slug}\"\nupstream = \"{upstream}\"\n"
        ));
    }
    std::fs::write(path, text).expect("write config");
}

/// The config a file gives, the test harness's data dir and admin on top (for
/// `TestAppBuilder::config`).
pub(crate) fn from_file(file: &Path) -> impl FnOnce(&mut ezforge::Config) + use<> {
    let loaded = ezforge::Config::load_from(Some(file), &[]).expect("config loads");
    move |c| {
        let mut loaded = loaded;
        loaded.server.data_dir = c.server.data_dir.clone();
        loaded.server.workers = c.server.workers;
        loaded.server.shutdown_timeout = c.server.shutdown_timeout;
        loaded.bootstrap = c.bootstrap.clone();
        *c = loaded;
    }
}

/// Starts an app from a config file.
pub(crate) async fn spawn_from_file(file: &Path) -> TestApp {
    TestApp::builder().config(from_file(file)).spawn().await
}

#[tokio::test]
async fn declared_servers_follow_the_file_on_reload() {
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("ezforge-test.toml");
    write_config(
        &file,
        &[
            ("cfg", "stays", "http://127.0.0.1:3001/mcp"),
            ("cfg", "goes", "http://127.0.0.1:3002/mcp"),
            ("cfg", "changes", "http://127.0.0.1:3003/mcp"),
        ],
    );
    let app = spawn_from_file(&file).await;
    let admin = admin_token(&app).await;
    let before = servers_by_slug(&app, &admin).await;
    assert_eq!(
        before.keys().map(String::as_str).collect::<Vec<_>>(),
        ["changes", "goes", "stays"]
    );
    assert!(before.values().all(|s| s["managedBy"] == "config"));

    // 409s name the file.
    let res = patch_as(&app, &admin, "/v1/servers/stays", json!({ "name": "x" })).await;
    assert_eq!(res.status, 409, "{}", res.text);
    assert!(
        res.text.contains("ezforge-test.toml"),
        "the message names the config file: {}",
        res.text
    );
    let res = delete_as(&app, &admin, "/v1/servers/goes").await;
    assert_eq!(res.status, 409);
    assert!(res.text.contains("ezforge-test.toml"), "{}", res.text);

    // An API server in another project, untouched by reconciliation.
    create_project(&app, &admin, "Hand Made").await;
    post_as(
        &app,
        &admin,
        "/v1/projects/hand-made/servers",
        json!({ "name": "Manual" }),
    )
    .await
    .expect(201);
    // Env vars on a declared server survive its reconciliation.
    put_as(
        &app,
        &admin,
        "/v1/servers/stays/env/KEEP",
        json!({ "value": "1" }),
    )
    .await
    .expect(201);

    // The file changes: one goes, one comes (in a new project), one changes upstream.
    write_config(
        &file,
        &[
            ("cfg", "stays", "http://127.0.0.1:3001/mcp"),
            ("cfg", "changes", "http://127.0.0.1:4003/mcp"),
            ("cfg-two", "arrives", "http://127.0.0.1:3004/mcp"),
        ],
    );
    app.reload().await;
    let after = servers_by_slug(&app, &admin).await;
    assert_eq!(
        after.keys().map(String::as_str).collect::<Vec<_>>(),
        ["arrives", "changes", "manual", "stays"],
        "{after:#?}"
    );
    assert_eq!(
        after["stays"]["id"], before["stays"]["id"],
        "unchanged servers keep their id"
    );
    assert_eq!(
        after["stays"]["updatedAt"], before["stays"]["updatedAt"],
        "and are not rewritten"
    );
    assert_eq!(
        after["changes"]["id"], before["changes"]["id"],
        "changed in place"
    );
    assert_eq!(after["changes"]["upstreamUrl"], "http://127.0.0.1:4003/mcp");
    assert_eq!(after["arrives"]["managedBy"], "config");
    assert_eq!(after["manual"]["managedBy"], "api");
    let p = get_as(&app, &admin, "/v1/projects/cfg-two").await;
    assert_eq!(p.expect(200)["data"]["managedBy"], "config");
    assert_eq!(get_as(&app, &admin, "/v1/servers/goes").await.status, 404);
    let env = get_as(&app, &admin, "/v1/servers/stays/env").await;
    assert_eq!(env.expect(200)["data"][0]["name"], "KEEP");

    // A broken file changes nothing.
    std::fs::write(&file, "[[servers]\nproject = ").expect("write");
    app.reload().await;
    assert_eq!(
        servers_by_slug(&app, &admin).await,
        after,
        "a bad file is ignored"
    );
    // A file claiming an API server's slug is refused as a whole.
    write_config(
        &file,
        &[
            ("cfg", "stays", "http://127.0.0.1:3001/mcp"),
            ("hand-made", "manual", "http://127.0.0.1:3009/mcp"),
        ],
    );
    app.reload().await;
    let now = servers_by_slug(&app, &admin).await;
    assert_eq!(now, after, "a conflicting file changes nothing");
    assert_eq!(now["manual"]["managedBy"], "api");

    // Emptying the file removes every declared server.
    write_config(&file, &[]);
    app.reload().await;
    let now = servers_by_slug(&app, &admin).await;
    assert_eq!(
        now.keys().map(String::as_str).collect::<Vec<_>>(),
        ["manual"]
    );
}

#[tokio::test]
async fn declared_servers_are_reconciled_at_start() {
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("start.toml");
    write_config(&file, &[("cfg", "first", "http://127.0.0.1:3001/mcp")]);
    let mut app = spawn_from_file(&file).await;
    let admin = admin_token(&app).await;
    let first = servers_by_slug(&app, &admin).await;
    assert!(first.contains_key("first"));
    let data = app.take_tempdir().expect("tempdir");
    let data_dir = app.data_dir.clone();
    app.stop().await;
    // Restart with a different file: the store follows it.
    write_config(&file, &[("cfg", "second", "http://127.0.0.1:3002/mcp")]);
    let app = TestApp::builder_in(&data_dir)
        .config(from_file(&file))
        .spawn()
        .await;
    let admin = admin_token(&app).await;
    let now = servers_by_slug(&app, &admin).await;
    assert_eq!(
        now.keys().map(String::as_str).collect::<Vec<_>>(),
        ["second"]
    );
    assert_eq!(now["second"]["managedBy"], "config");
    drop(app);
    drop(data);
}

#[tokio::test]
async fn declared_servers_do_not_land_in_a_project_any_user_made_first() {
    let mut app = TestApp::spawn().await;
    let admin = admin_token(&app).await;
    let (_, squatter) = crate::helpers::user_session(&app, &admin, "early@example.com").await;
    // Any user may make a project, under a name the operator has yet to declare.
    create_project(&app, &squatter, "platform").await;
    create_project(&app, &admin, "ops").await;
    let data = app.take_tempdir().expect("tempdir");
    let data_dir = app.data_dir.clone();
    app.stop().await;

    let upstream = "http://127.0.0.1:3001/mcp";
    let refused = TestApp::builder_in(&data_dir)
        .config(|c| c.servers = vec![decl("platform", "github", upstream)])
        .try_spawn()
        .await
        .err()
        .expect("refused");
    let msg = refused.to_string();
    assert!(msg.contains("servers[0].project"), "{msg}");
    assert!(msg.contains("platform"), "{msg}");

    // A project an admin owns is the operator's to fill.
    let app = TestApp::builder_in(&data_dir)
        .config(|c| c.servers = vec![decl("ops", "github", upstream)])
        .spawn()
        .await;
    let admin = admin_token(&app).await;
    let servers = servers_by_slug(&app, &admin).await;
    assert_eq!(servers["github"]["managedBy"], "config");
    let squatter =
        crate::helpers::login(&app, "early@example.com", crate::helpers::USER_PASSWORD).await;
    assert!(servers_by_slug(&app, &squatter).await.is_empty());
    drop(app);
    drop(data);
}
