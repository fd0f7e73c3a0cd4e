//! Validation rules (each with a failing and a passing case), pagination, bad input, login
//! throttling, CSRF, rate limits, and `/api/v1`.

use std::collections::HashSet;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::helpers::{
    ADMIN_EMAIL, ADMIN_PASSWORD, ApiResponse, TestApp, USER_PASSWORD, add_member, admin_token,
    call, create_key, create_key_data, create_project, create_server, delete_as, get_as, invite,
    invite_user, login, patch_as, plain_client, post_as, put_as, roomy, send_raw, user_session,
    walk,
};

/// Admin token, a project id and a server id in it.
async fn basics(app: &TestApp) -> (String, String, String) {
    let admin = admin_token(app).await;
    let project = create_project(app, &admin, "Rules Project").await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let server = create_server(app, &admin, &project, "Rules Server").await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    (admin, project, server)
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

/// Row counts of every table a control API write touches: a refused request changes none.
fn table_counts(app: &TestApp) -> Vec<(&'static str, i64)> {
    let conn = rusqlite::Connection::open(app.db_path()).expect("open db");
    [
        "users",
        "invites",
        "projects",
        "project_members",
        "project_invitations",
        "api_keys",
        "servers",
        "oauth_clients",
        "env_vars",
        "audit_log",
    ]
    .into_iter()
    .map(|t| {
        let n: i64 = conn
            .query_row(&format!("SELECT COUNT(*) FROM {t}"), [], |r| r.get(0))
            .expect("count");
        (t, n)
    })
    .collect()
}

/// One at a time: concurrent writes are covered by `concurrent_writes_all_succeed`, and must not
/// mask what the pagination test is about.
const SEQUENTIAL: usize = 1;

/// Runs `n` creations `width` at a time.
async fn in_batches<F, Fut>(n: usize, width: usize, f: F)
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut i = 0;
    while i < n {
        let end = (i + width).min(n);
        futures_util::future::join_all((i..end).map(&f)).await;
        i = end;
    }
}

fn assert_walk(label: &str, got: &[String], want: &HashSet<String>, totals: &[i64]) {
    let unique: HashSet<&String> = got.iter().collect();
    assert_eq!(unique.len(), got.len(), "{label}: an item appeared twice");
    let got: HashSet<String> = got.iter().cloned().collect();
    assert_eq!(
        &got, want,
        "{label}: the walk must return every item exactly once"
    );
    assert!(
        totals.iter().all(|t| *t == want.len() as i64),
        "{label}: meta.total on every page must be {}: {totals:?}",
        want.len()
    );
}

// ---------------------------------------------------------------------------------------------
// Pagination
// ---------------------------------------------------------------------------------------------

/// (description, content type, body, acceptable statuses).
type BadCase<'a> = (String, Option<&'a str>, Vec<u8>, Vec<u16>);

#[tokio::test]
async fn pagination_walks_250_servers_projects_users_keys_members_and_env_vars() {
    let app = roomy().await;
    let (admin, project, server) = basics(&app).await;
    let app = &app;

    // 250 servers in a second project (so the global list holds 251 with the first one).
    let p2 = create_project(app, &admin, "Big Project").await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let servers = std::sync::Mutex::new(HashSet::new());
    let (admin_r, p2_r, servers_r) = (&admin, &p2, &servers);
    in_batches(250, SEQUENTIAL, move |i| {
        let (admin, p2, servers) = (admin_r, p2_r, servers_r);
        async move {
            let s = create_server(app, admin, p2, &format!("bulk server {i}")).await;
            servers
                .lock()
                .expect("lock")
                .insert(s["id"].as_str().expect("id").to_owned());
        }
    })
    .await;
    let servers = servers.into_inner().expect("lock");
    for limit in [100, 7, 1] {
        let (ids, pages, totals) =
            walk(app, &admin, &format!("/v1/projects/{p2}/servers"), limit).await;
        assert_walk("project servers", &ids, &servers, &totals);
        assert_eq!(
            pages,
            250usize.div_ceil(limit as usize),
            "pages at limit {limit}"
        );
    }
    let mut all = servers.clone();
    all.insert(server.clone());
    let (ids, _, totals) = walk(app, &admin, "/v1/servers", 100).await;
    assert_walk("all servers", &ids, &all, &totals);
    // Keyset on id: the walk comes back in id order.
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted, "servers are paginated in id order");

    // Projects: 250 more (252 in all).
    let projects = std::sync::Mutex::new(HashSet::from([project.clone(), p2.clone()]));
    let (admin_r, projects_r) = (&admin, &projects);
    in_batches(250, SEQUENTIAL, move |i| {
        let (admin, projects) = (admin_r, projects_r);
        async move {
            let p = create_project(app, admin, &format!("Bulk Project {i}")).await;
            projects
                .lock()
                .expect("lock")
                .insert(p["id"].as_str().expect("id").to_owned());
        }
    })
    .await;
    let projects = projects.into_inner().expect("lock");
    let (ids, pages, totals) = walk(app, &admin, "/v1/projects", 100).await;
    assert_walk("projects", &ids, &projects, &totals);
    assert_eq!(pages, 3);

    // Users: 250 invited plus the admin.
    let users = std::sync::Mutex::new(HashSet::new());
    let (admin_r, users_r) = (&admin, &users);
    in_batches(250, SEQUENTIAL, move |i| {
        let (admin, users) = (admin_r, users_r);
        async move {
            let (id, _) = invite_user(app, admin, &format!("bulk-{i}@example.com")).await;
            users.lock().expect("lock").insert(id);
        }
    })
    .await;
    let mut users = users.into_inner().expect("lock");
    let me = get_as(app, &admin, "/v1/auth/session").await;
    users.insert(
        me.body["data"]["user"]["id"]
            .as_str()
            .expect("id")
            .to_owned(),
    );
    let (ids, _, totals) = walk(app, &admin, "/v1/users", 100).await;
    assert_walk("users", &ids, &users, &totals);

    // Invitations: 250 of them, to the 250 users.
    let invitations = std::sync::Mutex::new(HashSet::new());
    let (admin_r, project_r, invitations_r) = (&admin, &project, &invitations);
    in_batches(250, SEQUENTIAL, move |i| {
        let (admin, project, invitations) = (admin_r, project_r, invitations_r);
        async move {
            let email = format!("bulk-{i}@example.com");
            let inv = invite(app, admin, project, &email, "member").await;
            invitations
                .lock()
                .expect("lock")
                .insert(inv["id"].as_str().expect("id").to_owned());
        }
    })
    .await;
    let invitations = invitations.into_inner().expect("lock");
    let (ids, _, totals) = walk(
        app,
        &admin,
        &format!("/v1/projects/{project}/invitations"),
        100,
    )
    .await;
    assert_walk("invitations", &ids, &invitations, &totals);

    // Members: the 250 users join the project (the admin created it: 251 members). Accepting
    // needs each user's session, and so a password hash each; this walk is about the list, so
    // they are made members in the store.
    let ids: Vec<String> = users.iter().cloned().collect();
    let project_id = get_as(app, &admin, &format!("/v1/projects/{project}"))
        .await
        .body["data"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    app.state
        .store
        .write(move |tx| {
            for id in ids.iter().filter(|id| id.starts_with("usr_")) {
                if ezforge::store::projects::member_role(tx, &project_id, id)?.is_none() {
                    ezforge::store::projects::add_member(tx, &project_id, id, "member", 0)?;
                }
            }
            Ok::<_, ezforge::store::StoreError>(())
        })
        .await
        .expect("members");
    let (ids, _, totals) = walk(app, &admin, &format!("/v1/projects/{project}/members"), 100).await;
    assert_eq!(ids.len(), 251, "members walk");
    assert_eq!(
        ids.iter().collect::<HashSet<_>>().len(),
        251,
        "no member twice"
    );
    assert!(totals.iter().all(|t| *t == 251), "{totals:?}");

    // API keys.
    let keys = std::sync::Mutex::new(HashSet::new());
    let (admin_r, project_r, keys_r) = (&admin, &project, &keys);
    in_batches(250, SEQUENTIAL, move |_| {
        let (admin, project, keys) = (admin_r, project_r, keys_r);
        async move {
            let k = create_key_data(app, admin, project, &["servers:read"]).await;
            keys.lock()
                .expect("lock")
                .insert(k["id"].as_str().expect("id").to_owned());
        }
    })
    .await;
    let keys = keys.into_inner().expect("lock");
    let (ids, _, totals) = walk(app, &admin, &format!("/v1/projects/{project}/keys"), 100).await;
    assert_walk("keys", &ids, &keys, &totals);

    // Env vars (listed by name).
    let names: HashSet<String> = (0..250).map(|i| format!("VAR_{i:03}")).collect();
    let (admin_r, server_r) = (&admin, &server);
    in_batches(250, SEQUENTIAL, move |i| {
        let (admin, server) = (admin_r, server_r);
        async move {
            put_as(
                app,
                admin,
                &format!("/v1/servers/{server}/env/VAR_{i:03}"),
                json!({ "value": "v" }),
            )
            .await
            .expect(201);
        }
    })
    .await;
    for limit in [100, 13] {
        let (got, _, totals) = walk(app, &admin, &format!("/v1/servers/{server}/env"), limit).await;
        assert_walk("env vars", &got, &names, &totals);
    }

    // The default page is 20.
    let res = get_as(app, &admin, &format!("/v1/projects/{p2}/servers")).await;
    let body = res.expect(200);
    assert_eq!(body["data"].as_array().expect("data").len(), 20);
    assert_eq!(body["meta"]["hasMore"], true);
    assert_eq!(body["meta"]["total"], 250);

    // The audit log walks too, newest first, without repeats.
    let (ids, _, _) = walk(app, &admin, "/v1/audit", 100).await;
    assert!(ids.len() > 1250, "every write is audited: {}", ids.len());
    assert_eq!(
        ids.iter().collect::<HashSet<_>>().len(),
        ids.len(),
        "audit ids unique"
    );
}

#[tokio::test]
async fn pagination_stays_consistent_while_items_come_and_go() {
    let app = roomy().await;
    let (admin, project, _) = basics(&app).await;
    let mut before = Vec::new();
    for i in 0..60 {
        let s = create_server(&app, &admin, &project, &format!("churn {i}")).await;
        before.push(s["id"].as_str().expect("id").to_owned());
    }
    let path = format!("/v1/projects/{project}/servers?limit=10");
    let first = get_as(&app, &admin, &path).await;
    let first = first.expect(200).clone();
    let mut seen: Vec<String> = first["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|s| s["id"].as_str().expect("id").to_owned())
        .collect();
    // Between pages: five not-yet-seen servers go, five new ones come.
    let unseen: Vec<String> = before
        .iter()
        .filter(|id| !seen.contains(id))
        .cloned()
        .collect();
    let deleted: Vec<String> = unseen.iter().rev().take(5).cloned().collect();
    for id in &deleted {
        delete_as(&app, &admin, &format!("/v1/servers/{id}"))
            .await
            .expect(204);
    }
    for i in 0..5 {
        create_server(&app, &admin, &project, &format!("newcomer {i}")).await;
    }
    let mut cursor = first["meta"]["cursor"].as_str().map(str::to_owned);
    while let Some(c) = cursor {
        let res = get_as(&app, &admin, &format!("{path}&cursor={c}")).await;
        let body = res.expect(200);
        for s in body["data"].as_array().expect("data") {
            seen.push(s["id"].as_str().expect("id").to_owned());
        }
        cursor = body["meta"]["cursor"].as_str().map(str::to_owned);
    }
    assert_eq!(
        seen.iter().collect::<HashSet<_>>().len(),
        seen.len(),
        "no server twice"
    );
    for id in &before {
        assert_eq!(
            seen.contains(id),
            !deleted.contains(id),
            "{id}: every surviving server is seen, no deleted one"
        );
    }
}

#[tokio::test]
async fn pagination_parameters_out_of_range_are_400() {
    let app = roomy().await;
    let (admin, project, server) = basics(&app).await;
    let lists = [
        "/v1/projects".to_owned(),
        "/v1/servers".to_owned(),
        "/v1/users".to_owned(),
        "/v1/audit".to_owned(),
        "/v1/grants".to_owned(),
        format!("/v1/projects/{project}/servers"),
        format!("/v1/projects/{project}/keys"),
        format!("/v1/projects/{project}/members"),
        format!("/v1/projects/{project}/invitations"),
        "/v1/invitations".to_owned(),
        format!("/v1/servers/{server}/env"),
    ];
    for list in &lists {
        for bad in [
            "limit=0",
            "limit=101",
            "limit=-1",
            "limit=abc",
            "limit=1.5",
            "limit=",
            "cursor=%%%",
            "cursor=***",
        ] {
            let res = get_as(&app, &admin, &format!("{list}?{bad}")).await;
            assert_eq!(res.status, 400, "{list}?{bad}: {}", res.text);
            res.assert_error_shape();
            assert_eq!(res.code(), "BAD_REQUEST", "{list}?{bad}");
        }
        for ok in ["limit=1", "limit=100", "cursor="] {
            let res = get_as(&app, &admin, &format!("{list}?{ok}")).await;
            assert_eq!(res.status, 200, "{list}?{ok}: {}", res.text);
            assert!(res.body["meta"]["hasMore"].is_boolean(), "{list}: meta");
            assert!(res.body["meta"]["total"].is_i64(), "{list}: meta.total");
            assert!(
                res.body["meta"].get("cursor").is_some(),
                "{list}: meta.cursor present (null when no more)"
            );
        }
    }
    // Clients are a plain list without meta.
    let res = get_as(&app, &admin, &format!("/v1/servers/{server}/clients")).await;
    assert!(res.expect(200)["data"].is_array());
    assert!(res.body.get("meta").is_none(), "{}", res.text);
}

// ---------------------------------------------------------------------------------------------
// Validation: each rule fails one way and passes another
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn project_rules() {
    let app = roomy().await;
    let admin = admin_token(&app).await;
    let create = |body: Value| {
        let (app, admin) = (&app, &admin);
        async move { post_as(app, admin, "/v1/projects", body).await }
    };
    // name: required, non-empty, ≤ 255 characters, no control or invisible characters.
    create(json!({})).await.assert_invalid("name");
    create(json!({ "name": "" })).await.assert_invalid("name");
    create(json!({ "name": "   " }))
        .await
        .assert_invalid("name");
    create(json!({ "name": "x".repeat(256) }))
        .await
        .assert_invalid("name");
    create(json!({ "name": "日".repeat(256), "slug": "cjk-long" }))
        .await
        .assert_invalid("name");
    create(json!({ "name": "a\nb" }))
        .await
        .assert_invalid("name");
    create(json!({ "name": "a\u{0}b" }))
        .await
        .assert_invalid("name");
    create(json!({ "name": "evil\u{202E}txt.exe" }))
        .await
        .assert_invalid("name");
    create(json!({ "name": "zero\u{200B}width" }))
        .await
        .assert_invalid("name");
    create(json!({ "name": "bom\u{FEFF}" }))
        .await
        .assert_invalid("name");
    let p = create(json!({ "name": "x".repeat(255) })).await;
    assert_eq!(
        p.expect(201)["data"]["name"].as_str().map(str::len),
        Some(255)
    );
    let p = create(json!({ "name": "日".repeat(255), "slug": "cjk" })).await;
    assert_eq!(p.expect(201)["data"]["name"], "日".repeat(255));
    let p = create(json!({ "name": "🚀 Rocket Café", "slug": "rocket" })).await;
    assert_eq!(p.expect(201)["data"]["name"], "🚀 Rocket Café");
    let p = create(json!({ "name": "  Trimmed  " })).await;
    assert_eq!(p.expect(201)["data"]["name"], "Trimmed");

    // slug: a DNS label; derived from the name when absent; unique.
    for bad in [
        "",
        "-lead",
        "trail-",
        "Upper",
        "under_score",
        "dot.ted",
        "spa ce",
        "é",
        "ｗｅａｔｈｅｒ",
        "wеather", // Cyrillic е
        &"a".repeat(64),
    ] {
        create(json!({ "name": "Slug Test", "slug": bad }))
            .await
            .assert_invalid("slug");
    }
    let p = create(json!({ "name": "Slug Test", "slug": "a".repeat(63) })).await;
    assert_eq!(p.expect(201)["data"]["slug"], "a".repeat(63));
    let p = create(json!({ "name": "Weather Server!" })).await;
    assert_eq!(p.expect(201)["data"]["slug"], "weather-server");
    assert_eq!(p.body["data"]["role"], "owner");
    create(json!({ "name": "!!!" }))
        .await
        .assert_invalid("slug");
    let dup = create(json!({ "name": "Other", "slug": "weather-server" })).await;
    assert_eq!(dup.status, 409, "{}", dup.text);
    assert_eq!(dup.code(), "CONFLICT");
    let dup = create(json!({ "name": "Weather   Server" })).await;
    assert_eq!(dup.status, 409, "a derived slug clashes too: {}", dup.text);

    // PATCH: name rules again; the slug cannot change.
    let path = "/v1/projects/weather-server";
    patch_as(&app, &admin, path, json!({ "name": "" }))
        .await
        .assert_invalid("name");
    patch_as(&app, &admin, path, json!({ "name": "y".repeat(256) }))
        .await
        .assert_invalid("name");
    patch_as(&app, &admin, path, json!({ "slug": "renamed" }))
        .await
        .assert_invalid("slug");
    let ok = patch_as(&app, &admin, path, json!({ "name": "Renamed" })).await;
    assert_eq!(ok.expect(200)["data"]["name"], "Renamed");
    assert_eq!(ok.body["data"]["slug"], "weather-server");
    let ok = patch_as(&app, &admin, path, json!({ "slug": "weather-server" })).await;
    ok.expect(200);

    // DELETE: 409 while it has servers, 204 once they are gone.
    let s = create_server(&app, &admin, "weather-server", "Blocker").await;
    let res = delete_as(&app, &admin, path).await;
    assert_eq!(res.status, 409, "{}", res.text);
    assert_eq!(res.code(), "CONFLICT");
    delete_as(
        &app,
        &admin,
        &format!("/v1/servers/{}", s["id"].as_str().expect("id")),
    )
    .await
    .expect(204);
    delete_as(&app, &admin, path).await.expect(204);
    assert_eq!(get_as(&app, &admin, path).await.status, 404);
}

#[tokio::test]
async fn user_and_member_rules() {
    let app = TestApp::spawn().await;
    let admin = admin_token(&app).await;
    let create = |body: Value| {
        let (app, admin) = (&app, &admin);
        async move { post_as(app, admin, "/v1/users", body).await }
    };
    create(json!({ "role": "member" }))
        .await
        .assert_invalid("email");
    for bad in [
        "no-at",
        "a@@b",
        "a @b.example",
        "@b.example",
        "a@",
        "a\u{202E}@b.example",
    ] {
        create(json!({ "email": bad, "role": "member" }))
            .await
            .assert_invalid("email");
    }
    let long = format!("{}@example.com", "a".repeat(250));
    create(json!({ "email": long }))
        .await
        .assert_invalid("email");
    create(json!({ "email": "r@example.com", "role": "root" }))
        .await
        .assert_invalid("role");
    create(json!({ "email": "p@example.com", "password": "elevenchars" }))
        .await
        .assert_invalid("password");
    let ok = create(json!({ "email": "p@example.com", "password": "twelve-chars" })).await;
    let body = ok.expect(201);
    assert_eq!(
        body["data"]["user"]["role"], "member",
        "role defaults to member"
    );
    assert!(body["data"].get("inviteToken").is_none(), "{}", ok.text);
    assert!(body["data"]["user"].get("passwordHash").is_none());
    assert!(
        !ok.text.contains("twelve-chars"),
        "the password is not echoed"
    );
    let dup = create(json!({ "email": "P@Example.COM" })).await;
    assert_eq!(
        dup.status, 409,
        "emails compare case-insensitively: {}",
        dup.text
    );
    let invited = create(json!({ "email": "i@example.com", "role": "admin" })).await;
    let token = invited.expect(201)["data"]["inviteToken"]
        .as_str()
        .expect("invite token")
        .to_owned();
    assert!(token.len() > 20);
    // The invite sets a password once; password rules apply.
    let accept = |t: &str, pw: &str| {
        let body = json!({ "token": t, "password": pw });
        let app = &app;
        async move { call(app, "POST", "/v1/auth/invite", None, Some(&body)).await }
    };
    accept(&token, "short").await.assert_invalid("password");
    let res = accept("ezf_inv_nope", "a-perfectly-fine-password").await;
    assert_eq!(res.status, 404, "{}", res.text);
    accept(&token, "a-perfectly-fine-password")
        .await
        .expect(200);
    assert_eq!(
        accept(&token, "a-perfectly-fine-password").await.status,
        404,
        "single use"
    );
    login(&app, "i@example.com", "a-perfectly-fine-password").await;
    // Deleting yourself is refused.
    let me = get_as(&app, &admin, "/v1/auth/session").await;
    let my_id = me.body["data"]["user"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    assert_eq!(
        delete_as(&app, &admin, &format!("/v1/users/{my_id}"))
            .await
            .status,
        409
    );
    assert_eq!(
        delete_as(&app, &admin, "/v1/users/usr_nobody").await.status,
        404
    );

    // Members, by invitation (tests/api/control_invitations.rs has the rest).
    let project = create_project(&app, &admin, "Members").await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let members = format!("/v1/projects/{project}/members");
    post_as(&app, &admin, &members, json!({ "role": "member" }))
        .await
        .assert_invalid("email");
    post_as(&app, &admin, &members, json!({ "email": "not an email" }))
        .await
        .assert_invalid("email");
    post_as(
        &app,
        &admin,
        &members,
        json!({ "email": "p@example.com", "role": "admin" }),
    )
    .await
    .assert_invalid("role");
    let m = post_as(&app, &admin, &members, json!({ "email": "p@example.com" })).await;
    assert_eq!(
        m.expect(201)["data"]["role"],
        "member",
        "role defaults to member"
    );
    let dup = post_as(&app, &admin, &members, json!({ "email": "P@example.com" })).await;
    assert_eq!(
        dup.status, 409,
        "one pending invitation per email: {}",
        dup.text
    );
    // The last owner cannot leave; with a second owner they can.
    let owner_id = my_id.clone();
    let res = delete_as(&app, &admin, &format!("{members}/{owner_id}")).await;
    assert_eq!(res.status, 409, "last owner: {}", res.text);
    add_member(&app, &admin, &project, "i@example.com", "owner").await;
    let again = post_as(&app, &admin, &members, json!({ "email": "I@example.com" })).await;
    assert_eq!(again.status, 409, "already a member: {}", again.text);
    delete_as(&app, &admin, &format!("{members}/{owner_id}"))
        .await
        .expect(204);
    assert_eq!(
        delete_as(&app, &admin, &format!("{members}/usr_nobody"))
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn api_key_rules() {
    let app = TestApp::spawn().await;
    let (admin, project, _) = basics(&app).await;
    let path = format!("/v1/projects/{project}/keys");
    let create = |body: Value| {
        let (app, admin, path) = (&app, &admin, &path);
        async move { post_as(app, admin, path, body).await }
    };
    create(json!({ "scopes": ["servers:read"] }))
        .await
        .assert_invalid("name");
    create(json!({ "name": "", "scopes": ["servers:read"] }))
        .await
        .assert_invalid("name");
    create(json!({ "name": "k".repeat(256), "scopes": ["servers:read"] }))
        .await
        .assert_invalid("name");
    create(json!({ "name": "k" }))
        .await
        .assert_invalid("scopes");
    create(json!({ "name": "k", "scopes": [] }))
        .await
        .assert_invalid("scopes");
    create(json!({ "name": "k", "scopes": ["servers:admin"] }))
        .await
        .assert_invalid("scopes");
    create(json!({ "name": "k", "scopes": ["mcp:read"] }))
        .await
        .assert_invalid("scopes");
    for bad in [
        "tomorrow",
        "2020-01-01T00:00:00Z",
        "",
        "1700000000",
        "2090-01-01T00:00:00",
    ] {
        create(json!({ "name": "k", "scopes": ["servers:read"], "expiresAt": bad }))
            .await
            .assert_invalid("expiresAt");
    }
    create(json!({ "name": "k", "scopes": ["servers:read"], "environment": "prod" }))
        .await
        .assert_invalid("environment");

    // An offset is applied: this is 2090-01-01T00:00:00Z.
    let offset = create(
        json!({ "name": "tz", "scopes": ["servers:read"], "expiresAt": "2090-01-01T02:00:00+02:00" }),
    )
    .await;
    assert_eq!(
        offset.expect(201)["data"]["expiresAt"],
        "2090-01-01T00:00:00Z"
    );
    let k =
        create(json!({ "name": "k".repeat(255), "scopes": ["servers:read", "logs:read"] })).await;
    let data = k.expect(201)["data"].clone();
    let key = data["key"].as_str().expect("key");
    assert!(key.starts_with("ezf_live_"), "live by default: {key}");
    assert_eq!(data["environment"], "live");
    assert!(key.starts_with(data["prefix"].as_str().expect("prefix")));
    assert!(data["prefix"].as_str().expect("prefix").len() < key.len() / 2);
    let mut scopes: Vec<&str> = data["scopes"]
        .as_array()
        .expect("scopes")
        .iter()
        .map(|s| s.as_str().expect("scope"))
        .collect();
    scopes.sort_unstable();
    assert_eq!(scopes, ["logs:read", "servers:read"]);
    assert!(data["expiresAt"].is_null());
    assert!(data["lastUsedAt"].is_null());
    assert_eq!(data["projectId"], project.as_str());

    let future = humantime::format_rfc3339_seconds(
        SystemTime::now() + std::time::Duration::from_secs(86_400),
    )
    .to_string();
    let k = create(json!({ "name": "t", "scopes": ["servers:read"], "environment": "test", "expiresAt": future })).await;
    let data = k.expect(201)["data"].clone();
    assert!(data["key"].as_str().expect("key").starts_with("ezf_test_"));
    assert_eq!(data["environment"], "test");
    assert_eq!(data["expiresAt"], future.as_str());

    // Key values are shown once: never in the list.
    let list = get_as(&app, &admin, &path).await;
    assert!(!list.text.contains(key), "the list never shows a key value");
    for k in list.body["data"].as_array().expect("data") {
        assert!(k.get("key").is_none(), "{k}");
    }
    assert_eq!(
        delete_as(&app, &admin, "/v1/keys/key_nosuchkey")
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn server_rules() {
    let app = roomy().await;
    let (admin, project, _) = basics(&app).await;
    let path = format!("/v1/projects/{project}/servers");
    let create = |body: Value| {
        let (app, admin, path) = (&app, &admin, &path);
        async move { post_as(app, admin, path, body).await }
    };
    create(json!({})).await.assert_invalid("name");
    create(json!({ "name": "" })).await.assert_invalid("name");
    create(json!({ "name": "s".repeat(256), "slug": "long" }))
        .await
        .assert_invalid("name");
    create(json!({ "name": "tab\there" }))
        .await
        .assert_invalid("name");
    create(json!({ "name": "ok", "slug": "Bad_Slug" }))
        .await
        .assert_invalid("slug");
    create(json!({ "name": "ok", "slug": "s".repeat(64) }))
        .await
        .assert_invalid("slug");
    create(json!({ "name": "???" }))
        .await
        .assert_invalid("slug");
    for bad in [
        "ftp://127.0.0.1/mcp",
        "/relative/mcp",
        "127.0.0.1:3001",
        "http://user:pass@127.0.0.1:3001/mcp",
        "http://127.0.0.1:3001/mcp#frag",
        "http://",
        "javascript:alert(1)",
        "",
        // A host the URL parser takes but TLS cannot name: it could never serve.
        "https://-a.example/mcp",
    ] {
        create(json!({ "name": "up", "upstreamUrl": bad }))
            .await
            .assert_invalid("upstreamUrl");
    }
    let long_url = format!("http://127.0.0.1:3001/{}", "a".repeat(2100));
    create(json!({ "name": "up", "upstreamUrl": long_url }))
        .await
        .assert_invalid("upstreamUrl");
    for bad in ["health", "/he alth", "/a\nb"] {
        create(json!({ "name": "hc", "healthCheckPath": bad }))
            .await
            .assert_invalid("healthCheckPath");
    }
    let long_path = format!("/{}", "h".repeat(255));
    create(json!({ "name": "hc", "healthCheckPath": long_path }))
        .await
        .assert_invalid("healthCheckPath");
    for bad in [0, 101, -1] {
        create(json!({ "name": "rc", "deploymentRetentionCount": bad }))
            .await
            .assert_invalid("deploymentRetentionCount");
    }
    for bad in [0, -60, 2_592_001] {
        create(json!({ "name": "as", "autoStopSeconds": bad }))
            .await
            .assert_invalid("autoStopSeconds");
    }
    create(json!({ "name": "ts", "toolScopes": { "delete_repo": "bad scope" } }))
        .await
        .assert_invalid("toolScopes.delete_repo");
    create(json!({ "name": "ts", "toolScopes": { "x": "" } }))
        .await
        .assert_invalid("toolScopes.x");

    // Everything valid at once, at the edges.
    let ok = create(json!({
        "name": "Weather Server",
        "upstreamUrl": "http://127.0.0.1:3001/mcp",
        "healthCheckPath": "/health",
        "rollbackOnHealthCheckFailure": false,
        "deploymentRetentionCount": 100,
        "autoStopSeconds": 2_592_000,
        "toolScopes": { "delete_repo": "mcp:execute" },
    }))
    .await;
    let s = ok.expect(201)["data"].clone();
    assert_eq!(s["slug"], "weather-server");
    // An upstream makes it running (or unreachable, once probed: nothing listens there).
    assert!(
        matches!(s["status"].as_str(), Some("running" | "unreachable")),
        "{s}"
    );
    assert_eq!(s["upstreamUrl"], "http://127.0.0.1:3001/mcp");
    assert_eq!(s["healthCheckPath"], "/health");
    assert_eq!(s["rollbackOnHealthCheckFailure"], false);
    assert_eq!(s["deploymentRetentionCount"], 100);
    assert_eq!(s["autoStopSeconds"], 2_592_000);
    assert_eq!(s["toolScopes"], json!({ "delete_repo": "mcp:execute" }));
    assert_eq!(s["authMode"], "ezforge_managed");
    assert_eq!(s["managedBy"], "api");
    assert_eq!(s["projectId"], project.as_str());
    assert!(
        s["url"]
            .as_str()
            .expect("url")
            .ends_with("/mcp/weather-server"),
        "{s}"
    );
    let lower = create(json!({ "name": "edges", "deploymentRetentionCount": 1, "autoStopSeconds": 60, "upstreamUrl": "https://mcp.example.com/mcp" })).await;
    let lower = lower.expect(201)["data"].clone();
    assert_eq!(lower["deploymentRetentionCount"], 1);
    assert_eq!(lower["autoStopSeconds"], 60);
    let defaults = create(json!({ "name": "Defaults" })).await;
    let d = defaults.expect(201)["data"].clone();
    assert_eq!(d["status"], "stopped");
    assert_eq!(d["deploymentRetentionCount"], 10);
    assert_eq!(d["rollbackOnHealthCheckFailure"], true);
    assert!(d["autoStopSeconds"].is_null());
    assert!(d["healthCheckPath"].is_null());
    assert_eq!(d["toolScopes"], json!({}));

    // Slugs are unique across projects.
    let other = create_project(&app, &admin, "Elsewhere").await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let dup = post_as(
        &app,
        &admin,
        &format!("/v1/projects/{other}/servers"),
        json!({ "name": "x", "slug": "weather-server" }),
    )
    .await;
    assert_eq!(dup.status, 409, "{}", dup.text);

    // PATCH: partial; the same rules; the slug cannot change; null clears.
    let sp = "/v1/servers/weather-server";
    patch_as(&app, &admin, sp, json!({ "slug": "renamed" }))
        .await
        .assert_invalid("slug");
    for bad in ["ftp://x", "https://-a.example/mcp"] {
        patch_as(&app, &admin, sp, json!({ "upstreamUrl": bad }))
            .await
            .assert_invalid("upstreamUrl");
    }
    patch_as(&app, &admin, sp, json!({ "deploymentRetentionCount": 0 }))
        .await
        .assert_invalid("deploymentRetentionCount");
    patch_as(&app, &admin, sp, json!({ "name": "" }))
        .await
        .assert_invalid("name");
    let unchanged = get_as(&app, &admin, sp).await;
    assert_eq!(
        unchanged.body["data"]["name"], "Weather Server",
        "a refused PATCH writes nothing"
    );
    assert_eq!(unchanged.body["data"]["deploymentRetentionCount"], 100);
    let res = patch_as(
        &app,
        &admin,
        sp,
        json!({ "name": "Renamed", "upstreamUrl": null, "autoStopSeconds": null }),
    )
    .await;
    let s = res.expect(200)["data"].clone();
    assert_eq!(s["name"], "Renamed");
    assert!(s["upstreamUrl"].is_null());
    assert!(s["autoStopSeconds"].is_null());
    assert_eq!(s["status"], "stopped");
    assert_eq!(s["healthCheckPath"], "/health", "fields not sent stay");
    assert_eq!(s["slug"], "weather-server");
    assert_eq!(
        delete_as(&app, &admin, "/v1/servers/no-such-server")
            .await
            .status,
        404
    );
}

fn byoa() -> Value {
    json!({
        "authorizationEndpoint": "https://idp.example.com/authorize",
        "tokenEndpoint": "https://idp.example.com/token",
        "jwksUri": "https://idp.example.com/.well-known/jwks.json",
        "issuer": "https://idp.example.com",
    })
}

#[tokio::test]
async fn a_byoa_issuer_may_not_be_our_own() {
    let app = TestApp::builder()
        .config(|c| c.server.public_url = Some("https://ezforge.example".into()))
        .spawn()
        .await;
    let (admin, _, server) = basics(&app).await;
    let path = format!("/v1/servers/{server}/auth");
    for ours in ["https://ezforge.example", "https://ezforge.example/"] {
        let mut cfg = byoa();
        cfg["issuer"] = json!(ours);
        let res = patch_as(
            &app,
            &admin,
            &path,
            json!({ "authMode": "byoa", "byoaConfig": cfg }),
        )
        .await;
        res.assert_invalid("byoaConfig.issuer");
    }
}

#[tokio::test]
async fn auth_config_rules() {
    let app = TestApp::spawn().await;
    let (admin, _, server) = basics(&app).await;
    let path = format!("/v1/servers/{server}/auth");
    let patch = |body: Value| {
        let (app, admin, path) = (&app, &admin, &path);
        async move { patch_as(app, admin, path, body).await }
    };
    let initial = get_as(&app, &admin, &path).await;
    assert_eq!(
        initial.expect(200),
        &json!({ "data": { "authMode": "ezforge_managed", "byoaConfig": null } })
    );
    patch(json!({})).await.assert_invalid("authMode");
    patch(json!({ "authMode": "oauth" }))
        .await
        .assert_invalid("authMode");
    patch(json!({ "authMode": "BYOA", "byoaConfig": byoa() }))
        .await
        .assert_invalid("authMode");
    patch(json!({ "authMode": "byoa" }))
        .await
        .assert_invalid("byoaConfig");
    for field in [
        "authorizationEndpoint",
        "tokenEndpoint",
        "jwksUri",
        "issuer",
    ] {
        let name = format!("byoaConfig.{field}");
        let mut missing = byoa();
        missing.as_object_mut().expect("object").remove(field);
        patch(json!({ "authMode": "byoa", "byoaConfig": missing }))
            .await
            .assert_invalid(&name);
        for bad in [
            "http://idp.example.com/x",
            "/relative",
            "idp.example.com",
            "",
            "https://idp.example.com/x#frag",
            "https://user:pw@idp.example.com/x",
        ] {
            let mut cfg = byoa();
            cfg[field] = json!(bad);
            let res = patch(json!({ "authMode": "byoa", "byoaConfig": cfg })).await;
            assert_eq!(res.status, 422, "{field} = {bad:?}: {}", res.text);
            res.assert_invalid(&name);
        }
    }
    let mut q = byoa();
    q["issuer"] = json!("https://idp.example.com?tenant=1");
    patch(json!({ "authMode": "byoa", "byoaConfig": q }))
        .await
        .assert_invalid("byoaConfig.issuer");
    let mut extra = byoa();
    extra["userinfoEndpoint"] = json!("https://idp.example.com/userinfo");
    let res = patch(json!({ "authMode": "byoa", "byoaConfig": extra })).await;
    assert_eq!(res.status, 400, "unknown field: {}", res.text);
    assert!(res.text.contains("userinfoEndpoint"), "{}", res.text);
    let still = get_as(&app, &admin, &path).await;
    assert_eq!(
        still.body["data"]["authMode"], "ezforge_managed",
        "refusals write nothing"
    );

    // A valid config: 200 with the new config, and GET shows it. Query params are fine on the
    // endpoints (only the issuer may not have one).
    let mut good = byoa();
    good["authorizationEndpoint"] = json!("https://idp.example.com/authorize?prompt=login");
    let res = patch(json!({ "authMode": "byoa", "byoaConfig": good })).await;
    let want = json!({ "data": { "authMode": "byoa", "byoaConfig": good } });
    assert_eq!(res.expect(200)["data"], want["data"]);
    // The issuer cannot be looked at from here: the switch is made, with warnings saying why.
    assert!(
        res.body["warnings"]
            .as_array()
            .is_some_and(|w| !w.is_empty()),
        "{}",
        res.text
    );
    assert_eq!(get_as(&app, &admin, &path).await.body, want);
    let s = get_as(&app, &admin, &format!("/v1/servers/{server}")).await;
    assert_eq!(s.body["data"]["authMode"], "byoa");
    // And back.
    let res = patch(json!({ "authMode": "ezforge_managed" })).await;
    assert_eq!(
        res.expect(200),
        &json!({ "data": { "authMode": "ezforge_managed", "byoaConfig": null } })
    );
}

#[tokio::test]
async fn auth_config_cannot_leave_byoa_when_the_deployment_is_byoa() {
    let app = TestApp::builder()
        .config(|c| {
            c.auth.mode = ezforge::config::AuthMode::Byoa;
            c.auth.byoa = Some(ezforge::config::ByoaConfig {
                issuer: "https://idp.example.com".into(),
                jwks_uri: "https://idp.example.com/jwks".into(),
                authorization_endpoint: "https://idp.example.com/authorize".into(),
                token_endpoint: "https://idp.example.com/token".into(),
            })
        })
        .spawn()
        .await;
    let (admin, _, server) = basics(&app).await;
    let path = format!("/v1/servers/{server}/auth");
    let res = get_as(&app, &admin, &path).await;
    assert_eq!(
        res.expect(200)["data"]["authMode"],
        "byoa",
        "new servers follow the deployment"
    );
    let res = patch_as(
        &app,
        &admin,
        &path,
        json!({ "authMode": "ezforge_managed" }),
    )
    .await;
    assert_eq!(res.status, 409, "{}", res.text);
    res.assert_error_shape();
    assert_eq!(res.code(), "CONFLICT");
    assert_eq!(
        get_as(&app, &admin, &path).await.body["data"]["authMode"],
        "byoa"
    );
    // Another issuer is still fine.
    let res = patch_as(
        &app,
        &admin,
        &path,
        json!({ "authMode": "byoa", "byoaConfig": byoa() }),
    )
    .await;
    assert_eq!(res.expect(200)["data"]["byoaConfig"], byoa());
}

#[tokio::test]
async fn client_rules() {
    let app = TestApp::spawn().await;
    let (admin, _, server) = basics(&app).await;
    let path = format!("/v1/servers/{server}/clients");
    let create = |body: Value| {
        let (app, admin, path) = (&app, &admin, &path);
        async move { post_as(app, admin, path, body).await }
    };
    let uris = |u: &[&str]| json!(u);
    // Redirect URIs: https, or http on loopback; no fragment; 1 to 20.
    for good in [
        "https://app.example.com/cb",
        "http://127.0.0.1:8765/callback",
        "http://localhost:3000/cb",
        "http://[::1]:9999/cb",
        "com.example.app:/oauth2redirect",
    ] {
        let res = create(json!({ "name": "c", "redirectUris": uris(&[good]) })).await;
        if good.starts_with("com.example") {
            // Private-use schemes are not in docs/api.md's list: refused.
            res.assert_invalid("redirectUris[0]");
        } else {
            assert_eq!(res.status, 201, "{good}: {}", res.text);
        }
    }
    for bad in [
        "http://example.com/cb",
        "http://localhost.evil.com/cb",
        "https://app.example.com/cb#frag",
        "https://app.example.com/cb#",
        "/relative/cb",
        "javascript:alert(1)",
        "",
    ] {
        create(json!({ "name": "c", "redirectUris": [bad] }))
            .await
            .assert_invalid("redirectUris[0]");
    }
    create(json!({ "name": "c", "redirectUris": ["https://ok.example.com/cb", "http://example.com/cb"] }))
        .await
        .assert_invalid("redirectUris[1]");
    create(json!({ "name": "c", "redirectUris": [] }))
        .await
        .assert_invalid("redirectUris");
    create(json!({ "name": "c" }))
        .await
        .assert_invalid("redirectUris");
    let twenty: Vec<String> = (0..20)
        .map(|i| format!("https://app.example.com/cb{i}"))
        .collect();
    let mut twenty_one = twenty.clone();
    twenty_one.push("https://app.example.com/cb20".into());
    create(json!({ "name": "c", "redirectUris": twenty_one }))
        .await
        .assert_invalid("redirectUris");
    create(json!({ "name": "twenty", "redirectUris": twenty }))
        .await
        .expect(201);
    create(json!({ "redirectUris": ["https://a.example.com/cb"] }))
        .await
        .assert_invalid("name");
    create(json!({ "name": "", "redirectUris": ["https://a.example.com/cb"] }))
        .await
        .assert_invalid("name");
    create(json!({ "name": "c", "redirectUris": ["https://a.example.com/cb"], "scopes": [] }))
        .await
        .assert_invalid("scopes");
    create(json!({ "name": "c", "redirectUris": ["https://a.example.com/cb"], "scopes": ["a b"] }))
        .await
        .assert_invalid("scopes");

    // Defaults: scopes ["mcp:read"], not trusted, public, not dynamic.
    let res = create(
        json!({ "name": "My MCP Client", "redirectUris": ["https://myapp.example.com/callback"] }),
    )
    .await;
    let c = res.expect(201)["data"].clone();
    assert!(c["id"].as_str().expect("id").starts_with("oac_"));
    assert!(
        c["clientId"]
            .as_str()
            .expect("clientId")
            .starts_with("client_")
    );
    assert_eq!(c["scopes"], json!(["mcp:read"]));
    assert_eq!(c["trusted"], false);
    assert_eq!(c["isDynamic"], false);
    assert_eq!(c["confidential"], false);
    assert!(
        c.get("clientSecret").is_none(),
        "public clients get no secret"
    );
    assert_eq!(
        c["redirectUris"],
        json!(["https://myapp.example.com/callback"])
    );

    // Confidential: the secret once, in the create answer only.
    let res = create(json!({
        "name": "Backend", "redirectUris": ["https://b.example.com/cb"], "confidential": true,
        "trusted": true, "scopes": ["mcp:read", "mcp:write"],
    }))
    .await;
    let c = res.expect(201)["data"].clone();
    let secret = c["clientSecret"].as_str().expect("clientSecret").to_owned();
    assert!(secret.len() >= 32);
    assert_eq!(c["confidential"], true);
    assert_eq!(c["trusted"], true);
    assert_eq!(c["scopes"], json!(["mcp:read", "mcp:write"]));
    let list = get_as(&app, &admin, &path).await;
    assert!(!list.text.contains(&secret), "the secret is never listed");
    assert!(
        list.body["data"]
            .as_array()
            .expect("data")
            .iter()
            .all(|c| c.get("clientSecret").is_none())
    );

    // Metadata document clients: https with a path, alone.
    for bad in [
        "http://client.example.com/meta.json",
        "https://client.example.com",
        "https://client.example.com/",
        "https://client.example.com/m.json#x",
        "not a url",
    ] {
        create(json!({ "clientMetadataUrl": bad }))
            .await
            .assert_invalid("clientMetadataUrl");
    }
    create(json!({ "clientMetadataUrl": "https://client.example.com/m.json", "redirectUris": ["https://a.example.com/cb"] }))
        .await
        .assert_invalid("clientMetadataUrl");
    let res = create(json!({ "clientMetadataUrl": "https://client.example.com/m.json" })).await;
    let m = res.expect(201)["data"].clone();
    assert_eq!(m["isDynamic"], true);
    assert_eq!(m["clientId"], "https://client.example.com/m.json");
    assert_eq!(m["clientMetadataUrl"], "https://client.example.com/m.json");
    let dup = create(json!({ "clientMetadataUrl": "https://client.example.com/m.json" })).await;
    assert_eq!(dup.status, 409, "{}", dup.text);

    // Delete by oac_ id and by client_id; the metadata URL works as a client id too.
    let a = create(json!({ "name": "A", "redirectUris": ["https://a.example.com/cb"] })).await;
    let a = a.expect(201)["data"].clone();
    let b = create(json!({ "name": "B", "redirectUris": ["https://b.example.com/cb"] })).await;
    let b = b.expect(201)["data"].clone();
    let id_of = |v: &Value, k: &str| v[k].as_str().expect("id").to_owned();
    delete_as(&app, &admin, &format!("{path}/{}", id_of(&a, "id")))
        .await
        .expect(204);
    delete_as(&app, &admin, &format!("{path}/{}", id_of(&b, "clientId")))
        .await
        .expect(204);
    let encoded = "https%3A%2F%2Fclient.example.com%2Fm.json";
    let res = delete_as(&app, &admin, &format!("{path}/{encoded}")).await;
    assert_eq!(res.status, 204, "metadata URL as client id: {}", res.text);
    assert_eq!(
        delete_as(&app, &admin, &format!("{path}/{}", id_of(&a, "id")))
            .await
            .status,
        404
    );
    let list = get_as(&app, &admin, &path).await;
    let ids: Vec<String> = list.body["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|c| id_of(c, "id"))
        .collect();
    assert!(!ids.contains(&id_of(&a, "id")) && !ids.contains(&id_of(&b, "id")));
    // A client of another server is not reachable through this one.
    let other = create_server(&app, &admin, "rules-project", "Other Server").await;
    let other_path = format!("/v1/servers/{}/clients", other["id"].as_str().expect("id"));
    let c = post_as(
        &app,
        &admin,
        &other_path,
        json!({ "name": "O", "redirectUris": ["https://o.example.com/cb"] }),
    )
    .await;
    let c = c.expect(201)["data"].clone();
    assert_eq!(
        delete_as(&app, &admin, &format!("{path}/{}", id_of(&c, "id")))
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn env_var_rules() {
    let app = TestApp::spawn().await;
    let (admin, _, server) = basics(&app).await;
    let path = format!("/v1/servers/{server}/env");
    let create = |body: Value| {
        let (app, admin, path) = (&app, &admin, &path);
        async move { post_as(app, admin, path, body).await }
    };
    create(json!({ "value": "v" })).await.assert_invalid("name");
    create(json!({ "name": "X" })).await.assert_invalid("value");
    for bad in ["", "1ABC", "A-B", "A B", "É", "A.B", &"A".repeat(129)] {
        create(json!({ "name": bad, "value": "v" }))
            .await
            .assert_invalid("name");
    }
    create(json!({ "name": "NUL", "value": "a\u{0}b" }))
        .await
        .assert_invalid("value");
    create(json!({ "name": "BIG", "value": "x".repeat(32 * 1024 + 1) }))
        .await
        .assert_invalid("value");
    create(json!({ "name": "BIG", "value": "x".repeat(32 * 1024) }))
        .await
        .expect(201);
    create(json!({ "name": "A".repeat(128), "value": "v" }))
        .await
        .expect(201);
    create(json!({ "name": "_lower_ok9", "value": "" }))
        .await
        .expect(201);
    let res = create(json!({ "name": "DATABASE_URL", "value": "postgres://u:p@db/x" })).await;
    let body = res.expect(201)["data"].clone();
    assert_eq!(body["name"], "DATABASE_URL");
    assert!(body.get("value").is_none());
    let dup = create(json!({ "name": "DATABASE_URL", "value": "other" })).await;
    assert_eq!(dup.status, 409, "POST of an existing name: {}", dup.text);
    // PUT: 201 new, 200 replaced; the same name rules in the path.
    let put = |name: &str, value: &str| {
        let (app, admin) = (&app, &admin);
        let p = format!("{path}/{name}");
        let body = json!({ "value": value });
        async move { put_as(app, admin, &p, body).await }
    };
    assert_eq!(put("FRESH", "1").await.status, 201);
    assert_eq!(put("FRESH", "2").await.status, 200);
    assert_eq!(put("DATABASE_URL", "postgres://other").await.status, 200);
    put("1BAD", "v").await.assert_invalid("name");
    put("%C3%89", "v").await.assert_invalid("name");
    put("NUL2", "\u{0}").await.assert_invalid("value");
    let res = put_as(&app, &admin, &format!("{path}/NOVALUE"), json!({})).await;
    res.assert_invalid("value");
    // DELETE: 204, then 404.
    delete_as(&app, &admin, &format!("{path}/FRESH"))
        .await
        .expect(204);
    assert_eq!(
        delete_as(&app, &admin, &format!("{path}/FRESH"))
            .await
            .status,
        404
    );

    // Names and values total at most 256 KiB per server (a process must still be able to
    // start with them): six more 32 KiB values fit, a seventh does not.
    let big = "x".repeat(32 * 1024);
    for i in 2..8 {
        put(&format!("BIG_{i}"), &big).await.expect(201);
    }
    let over = put("BIG_8", &big).await;
    over.assert_invalid("value");
    assert!(over.text.contains("256 KiB"), "{}", over.text);
    // Replacing a value counts it once, and making room lets the new one in.
    put("BIG_7", &big).await.expect(200);
    delete_as(&app, &admin, &format!("{path}/BIG_7"))
        .await
        .expect(204);
    put("BIG_8", &big).await.expect(201);
}

#[tokio::test]
async fn a_server_holds_at_most_500_env_vars() {
    let app = roomy().await;
    let (admin, _, server) = basics(&app).await;
    let path = format!("/v1/servers/{server}/env");
    for i in 0..500 {
        put_as(
            &app,
            &admin,
            &format!("{path}/V{i}"),
            json!({ "value": "1" }),
        )
        .await
        .expect(201);
    }
    let over = put_as(
        &app,
        &admin,
        &format!("{path}/V500"),
        json!({ "value": "1" }),
    )
    .await;
    over.assert_invalid("name");
    assert!(over.text.contains("at most 500"), "{}", over.text);
    // An existing one can still be replaced.
    put_as(&app, &admin, &format!("{path}/V0"), json!({ "value": "2" }))
        .await
        .expect(200);
}

#[tokio::test]
async fn ids_and_timestamps_follow_the_conventions() {
    let app = TestApp::spawn().await;
    let (admin, project, server) = basics(&app).await;
    let key = create_key_data(&app, &admin, &project, &["servers:read"]).await;
    let (user, _) = invite_user(&app, &admin, "conv@example.com").await;
    let client = post_as(
        &app,
        &admin,
        &format!("/v1/servers/{server}/clients"),
        json!({ "name": "c", "redirectUris": ["https://a.example.com/cb"] }),
    )
    .await
    .expect(201)["data"]
        .clone();
    let id_ok = |id: &str, prefix: &str| {
        id.strip_prefix(prefix).is_some_and(|rest| {
            rest.len() >= 20
                && rest
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || ('2'..='7').contains(&c))
        })
    };
    for (id, prefix) in [
        (project.as_str(), "proj_"),
        (server.as_str(), "srv_"),
        (key["id"].as_str().expect("id"), "key_"),
        (user.as_str(), "usr_"),
        (client["id"].as_str().expect("id"), "oac_"),
    ] {
        assert!(
            id_ok(id, prefix),
            "{id} is {prefix} + 20+ base32 characters"
        );
    }
    let s = get_as(&app, &admin, &format!("/v1/servers/{server}")).await;
    for t in [
        &s.body["data"]["createdAt"],
        &s.body["data"]["updatedAt"],
        &key["createdAt"],
        &client["createdAt"],
    ] {
        let t = t.as_str().expect("timestamp");
        assert!(t.ends_with('Z') && t.len() == 20, "RFC 3339 UTC: {t}");
        assert!(humantime::parse_rfc3339(t).is_ok(), "{t}");
    }
}

// ---------------------------------------------------------------------------------------------
// Bad input: a 4xx with the error shape, never a 500, never a partial write
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn bad_input_is_a_4xx_with_the_error_shape_and_writes_nothing() {
    let app = roomy().await;
    let (admin, project, server) = basics(&app).await;
    let write_endpoints: Vec<(&str, String, Value)> = vec![
        (
            "POST",
            "/v1/projects".into(),
            json!({ "name": "Valid Name" }),
        ),
        (
            "PATCH",
            format!("/v1/projects/{project}"),
            json!({ "name": "Valid Name" }),
        ),
        (
            "POST",
            format!("/v1/projects/{project}/members"),
            json!({ "email": "admin@example.com" }),
        ),
        (
            "POST",
            format!("/v1/projects/{project}/keys"),
            json!({ "name": "k", "scopes": ["servers:read"] }),
        ),
        (
            "POST",
            format!("/v1/projects/{project}/servers"),
            json!({ "name": "Valid Server" }),
        ),
        (
            "PATCH",
            format!("/v1/servers/{server}"),
            json!({ "name": "Valid Server" }),
        ),
        (
            "PATCH",
            format!("/v1/servers/{server}/auth"),
            json!({ "authMode": "ezforge_managed" }),
        ),
        (
            "POST",
            format!("/v1/servers/{server}/clients"),
            json!({ "name": "c", "redirectUris": ["https://a.example.com/cb"] }),
        ),
        (
            "POST",
            format!("/v1/servers/{server}/env"),
            json!({ "name": "OK", "value": "v" }),
        ),
        (
            "PUT",
            format!("/v1/servers/{server}/env/OK"),
            json!({ "value": "v" }),
        ),
        (
            "POST",
            "/v1/users".into(),
            json!({ "email": "valid@example.com" }),
        ),
        (
            "POST",
            "/v1/auth/login".into(),
            json!({ "email": "x@example.com", "password": "y" }),
        ),
        (
            "POST",
            "/v1/auth/invite".into(),
            json!({ "token": "t", "password": "p" }),
        ),
        (
            "POST",
            "/v1/invitations/accept".into(),
            json!({ "token": "t" }),
        ),
    ];
    let counts = table_counts(&app);
    let huge = {
        let mut v = b"{\"name\": \"".to_vec();
        v.extend(std::iter::repeat_n(b'a', 1024 * 1024 + 10));
        v.extend_from_slice(b"\"}");
        v
    };
    let mut failures = Vec::new();
    for (method, path, valid) in &write_endpoints {
        let mut cases: Vec<BadCase> = vec![
            (
                "malformed JSON".into(),
                Some("application/json"),
                b"{\"name\": ".to_vec(),
                vec![400],
            ),
            (
                "trailing garbage".into(),
                Some("application/json"),
                b"{} x".to_vec(),
                vec![400],
            ),
            (
                "a JSON array".into(),
                Some("application/json"),
                b"[]".to_vec(),
                vec![400],
            ),
            (
                "a JSON string".into(),
                Some("application/json"),
                b"\"x\"".to_vec(),
                vec![400],
            ),
            (
                "JSON null".into(),
                Some("application/json"),
                b"null".to_vec(),
                vec![400],
            ),
            (
                "empty body".into(),
                Some("application/json"),
                Vec::new(),
                vec![400],
            ),
            (
                "invalid UTF-8".into(),
                Some("application/json"),
                b"{\"name\": \"\xff\xfe\"}".to_vec(),
                vec![400],
            ),
            (
                "a lone surrogate".into(),
                Some("application/json"),
                br#"{"name": "\ud800"}"#.to_vec(),
                vec![400],
            ),
            (
                "a body over 1 MiB".into(),
                Some("application/json"),
                huge.clone(),
                vec![413],
            ),
            (
                "text/plain".into(),
                Some("text/plain"),
                serde_json::to_vec(valid).expect("json"),
                vec![415],
            ),
            (
                "no content type".into(),
                None,
                serde_json::to_vec(valid).expect("json"),
                vec![415],
            ),
            (
                "form encoded".into(),
                Some("application/x-www-form-urlencoded"),
                b"name=x".to_vec(),
                vec![415],
            ),
        ];
        // An unknown field next to valid ones: 400 naming it.
        let mut unknown = valid.clone();
        unknown["sneakyField"] = json!(true);
        cases.push((
            "unknown field".into(),
            Some("application/json"),
            serde_json::to_vec(&unknown).expect("json"),
            vec![400],
        ));
        // Each known field with the wrong type.
        for (field, v) in valid.as_object().expect("object") {
            for wrong in [json!(12345), json!({ "nested": true }), json!([1, 2])] {
                if wrong == *v {
                    continue;
                }
                let mut b = valid.clone();
                b[field] = wrong.clone();
                cases.push((
                    format!("{field} = {wrong}"),
                    Some("application/json"),
                    serde_json::to_vec(&b).expect("json"),
                    vec![400, 422],
                ));
            }
        }
        for (label, ct, body, mut allowed) in cases {
            if path == "/v1/auth/login" && label.contains(" = ") {
                // A refused login is a 401 whatever the reason; still a 4xx in the error shape.
                allowed.push(401);
            }
            let res = send_raw(&app, method, path, Some(&admin), ct, body).await;
            let cell = format!("{method} {path} with {label}");
            if !allowed.contains(&res.status) {
                failures.push(format!(
                    "{cell}: expected {allowed:?}, got {} {}",
                    res.status,
                    res.text.chars().take(200).collect::<String>()
                ));
                continue;
            }
            let e = &res.body["error"];
            if !(e["code"].is_string() && e["message"].is_string() && e["details"].is_object()) {
                failures.push(format!("{cell}: not the error shape: {}", res.text));
            }
            if label == "unknown field" && !res.text.contains("sneakyField") {
                failures.push(format!(
                    "{cell}: the message must name the field: {}",
                    res.text
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(table_counts(&app), counts, "refused requests wrote nothing");
}

#[tokio::test]
async fn hostile_paths_and_query_strings_are_4xx_not_500() {
    let app = TestApp::spawn().await;
    let (admin, _, server) = basics(&app).await;
    let long = "a".repeat(5000);
    let paths = [
        format!("/v1/projects/{long}"),
        format!("/v1/servers/{long}/env"),
        "/v1/servers/%00".to_owned(),
        "/v1/servers/%FF%FE".to_owned(),
        "/v1/servers/%F0%9F%9A%80".to_owned(),
        "/v1/servers/..%2F..%2Fetc%2Fpasswd".to_owned(),
        "/v1/projects/'%20OR%201=1--".to_owned(),
        "/v1/keys/%E2%80%AE".to_owned(),
        format!("/v1/servers/{server}/clients/%00"),
        format!("/v1/servers/{server}/env/%FF"),
        "/v1/projects?limit=99999999999999999999999".to_owned(),
        format!("/v1/projects?cursor={long}"),
        "/v1/nope".to_owned(),
        "/api/v1/nope".to_owned(),
    ];
    for p in &paths {
        for method in ["GET", "DELETE", "PUT", "PATCH"] {
            let res = call(
                &app,
                method,
                p,
                Some(&admin),
                Some(&json!({ "value": "v" })),
            )
            .await;
            assert!(
                (400..500).contains(&res.status),
                "{method} {p}: expected a 4xx, got {} {}",
                res.status,
                res.text
            );
            res.assert_error_shape();
        }
    }
    // Unsupported methods on known resources: 405 in the same shape.
    let res = call(&app, "PUT", "/v1/projects", Some(&admin), Some(&json!({}))).await;
    assert_eq!(res.status, 405, "{}", res.text);
    res.assert_error_shape();
}

// ---------------------------------------------------------------------------------------------
// Login
// ---------------------------------------------------------------------------------------------

async fn try_login(app: &TestApp, email: &str, password: &str) -> ApiResponse {
    let body = json!({ "email": email, "password": password });
    call(app, "POST", "/v1/auth/login", None, Some(&body)).await
}

#[tokio::test]
async fn login_answers_unknown_user_and_wrong_password_identically() {
    let app = TestApp::spawn().await;
    let unknown = try_login(&app, "nobody@example.com", "whatever-password").await;
    let wrong = try_login(&app, ADMIN_EMAIL, "wrong-password-123").await;
    assert_eq!(unknown.status, 401, "{}", unknown.text);
    assert_eq!(wrong.status, 401, "{}", wrong.text);
    assert_eq!(unknown.body, wrong.body, "same body");
    assert_eq!(unknown.code(), "UNAUTHENTICATED");
    wrong.assert_error_shape();
    assert!(
        !wrong.text.to_lowercase().contains("password is"),
        "{}",
        wrong.text
    );
    assert!(
        unknown.header("set-cookie").is_none() && wrong.header("set-cookie").is_none(),
        "no cookie for a failed login"
    );
    // A user without a password (invited, not yet accepted) is refused the same way.
    let admin = admin_token(&app).await;
    invite_user(&app, &admin, "pending@example.com").await;
    let pending = try_login(&app, "pending@example.com", "").await;
    assert!(
        pending.status == 401 || pending.status == 422,
        "{}",
        pending.text
    );
    let pending = try_login(&app, "pending@example.com", "some-password-here").await;
    assert_eq!(
        pending.body, wrong.body,
        "an invited user without a password"
    );
    // Email matching is case-insensitive; a right password signs in.
    let ok = try_login(&app, &ADMIN_EMAIL.to_uppercase(), ADMIN_PASSWORD).await;
    let body = ok.expect(200);
    assert_eq!(body["data"]["user"]["email"], ADMIN_EMAIL);
    assert!(
        body["data"]["token"]
            .as_str()
            .expect("token")
            .starts_with("ezf_sess_")
    );
    assert!(
        humantime::parse_rfc3339(body["data"]["expiresAt"].as_str().expect("expiresAt")).is_ok()
    );
    assert!(body["data"]["user"].get("passwordHash").is_none());
    // Missing fields are validation errors, not 500s.
    call(
        &app,
        "POST",
        "/v1/auth/login",
        None,
        Some(&json!({ "password": "x" })),
    )
    .await
    .assert_invalid("email");
    call(
        &app,
        "POST",
        "/v1/auth/login",
        None,
        Some(&json!({ "email": "a@b.example" })),
    )
    .await
    .assert_invalid("password");
}

#[tokio::test]
async fn login_is_throttled_after_the_configured_failures() {
    let app = TestApp::builder()
        .config(|c| c.control.login_attempts = 3)
        .spawn()
        .await;
    for i in 0..3 {
        let res = try_login(&app, ADMIN_EMAIL, "wrong-password-123").await;
        assert_eq!(res.status, 401, "failure {i}: {}", res.text);
    }
    let res = try_login(&app, ADMIN_EMAIL, "wrong-password-123").await;
    assert_eq!(res.status, 429, "{}", res.text);
    res.assert_error_shape();
    assert_eq!(res.code(), "RATE_LIMITED");
    let retry: u64 = res
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("seconds");
    assert!((1..=15 * 60).contains(&retry), "{retry}");
    // Throttled even with the right password.
    let res = try_login(&app, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert_eq!(
        res.status, 429,
        "the right password does not get through: {}",
        res.text
    );
    assert!(res.header("retry-after").is_some());
}

/// A login from a chosen loopback address (all of 127/8 reaches a server on 127.0.0.1).
async fn login_from(app: &TestApp, from: [u8; 4], email: &str, password: &str) -> ApiResponse {
    let client = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from(from))
        .build()
        .expect("client");
    let res = client
        .post(app.url("/v1/auth/login"))
        .json(&json!({ "email": email, "password": password }))
        .send()
        .await
        .expect("login");
    ApiResponse::read(res).await
}

#[tokio::test]
async fn login_is_throttled_per_account_and_per_address() {
    let app = TestApp::builder()
        .config(|c| c.control.login_attempts = 3)
        .spawn()
        .await;
    let admin = admin_token(&app).await;
    crate::helpers::create_user(&app, &admin, "victim@example.com", "member").await;
    let (a, b, c) = ([127, 0, 0, 2], [127, 0, 0, 3], [127, 0, 0, 4]);
    for _ in 0..3 {
        let res = login_from(&app, a, "victim@example.com", "bad-guess-000000").await;
        assert_eq!(res.status, 401, "{}", res.text);
    }
    // The account is locked wherever the attempt comes from, right password or not.
    let res = login_from(&app, b, "victim@example.com", USER_PASSWORD).await;
    assert_eq!(
        res.status, 429,
        "account lock from another address: {}",
        res.text
    );
    assert!(res.header("retry-after").is_some());
    // The address is locked for every account.
    let res = login_from(&app, a, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert_eq!(
        res.status, 429,
        "address lock for another account: {}",
        res.text
    );
    // Another account from another address is unaffected.
    let res = login_from(&app, c, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert_eq!(res.status, 200, "{}", res.text);
    // Failures below the limit are forgotten by a success on that account.
    for _ in 0..2 {
        login_from(&app, c, ADMIN_EMAIL, "wrong-password-123").await;
    }
    login_from(&app, [127, 0, 0, 5], ADMIN_EMAIL, ADMIN_PASSWORD)
        .await
        .expect(200);
    let res = login_from(&app, [127, 0, 0, 6], ADMIN_EMAIL, "wrong-password-123").await;
    assert_eq!(res.status, 401, "the counter restarted: {}", res.text);
    let res = login_from(&app, [127, 0, 0, 6], ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert_eq!(res.status, 200, "{}", res.text);
}

// ---------------------------------------------------------------------------------------------
// Cookies and CSRF
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn login_sets_the_session_cookie_as_documented() {
    let app = TestApp::spawn().await;
    let res = plain_client()
        .post(app.url("/v1/auth/login"))
        .json(&json!({ "email": ADMIN_EMAIL, "password": ADMIN_PASSWORD }))
        .send()
        .await
        .expect("login");
    let res = ApiResponse::read(res).await;
    let token = res.expect(200)["data"]["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let cookie = res.header("set-cookie").expect("Set-Cookie").to_owned();
    let lower = cookie.to_lowercase();
    assert!(
        cookie.starts_with(&format!("ezf_session={token}")),
        "{cookie}"
    );
    assert!(lower.contains("httponly"), "{cookie}");
    assert!(lower.contains("samesite=lax"), "{cookie}");
    assert!(lower.contains("max-age=3600"), "{cookie}");
    assert!(lower.contains("path=/"), "{cookie}");
    assert!(
        !lower.contains("secure"),
        "not Secure over plain http: {cookie}"
    );
    assert_eq!(res.header("cache-control"), Some("no-store"));
}

#[tokio::test]
async fn cookie_authenticated_unsafe_requests_need_our_origin_and_json() {
    let app = TestApp::spawn().await;
    // Sign in through the cookie-keeping client: from here on it carries ezf_session.
    app.client
        .post(app.url("/v1/auth/login"))
        .json(&json!({ "email": ADMIN_EMAIL, "password": ADMIN_PASSWORD }))
        .send()
        .await
        .expect("login")
        .error_for_status()
        .expect("200");
    let send = |origin: Option<&str>, ct: &str, body: &str| {
        let mut req = app
            .client
            .post(app.url("/v1/projects"))
            .header("content-type", ct)
            .body(body.to_owned());
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        async move { ApiResponse::read(req.send().await.expect("send")).await }
    };
    // The cookie works for reads.
    let res = ApiResponse::read(
        app.client
            .get(app.url("/v1/auth/session"))
            .send()
            .await
            .expect("get"),
    )
    .await;
    assert_eq!(res.expect(200)["data"]["user"]["email"], ADMIN_EMAIL);
    let before = table_counts(&app);
    for evil in [
        "https://evil.example",
        "null",
        "http://127.0.0.1",
        "http://localhost:1",
    ] {
        let res = send(Some(evil), "application/json", r#"{"name": "CSRF"}"#).await;
        assert_eq!(res.status, 403, "Origin {evil}: {}", res.text);
        res.assert_error_shape();
        assert_eq!(res.code(), "FORBIDDEN");
    }
    // A cross-site form post cannot send JSON: a non-JSON content type is refused.
    let res = send(None, "text/plain", r#"{"name": "CSRF"}"#).await;
    assert!(
        (400..500).contains(&res.status),
        "text/plain with a cookie: {}",
        res.text
    );
    let res = send(None, "application/x-www-form-urlencoded", "name=CSRF").await;
    assert!(
        (400..500).contains(&res.status),
        "form with a cookie: {}",
        res.text
    );
    assert_eq!(table_counts(&app), before, "nothing was written");
    // DELETE and PATCH are unsafe too.
    let admin = admin_token(&app).await;
    let p = create_project(&app, &admin, "Target").await;
    let target = format!("/v1/projects/{}", p["id"].as_str().expect("id"));
    let res = app
        .client
        .delete(app.url(&target))
        .header("origin", "https://evil.example")
        .send()
        .await
        .expect("delete");
    assert_eq!(res.status(), 403);
    let res = app
        .client
        .patch(app.url(&target))
        .header("origin", "https://evil.example")
        .json(&json!({ "name": "pwned" }))
        .send()
        .await
        .expect("patch");
    assert_eq!(res.status(), 403);
    assert_eq!(
        get_as(&app, &admin, &target).await.body["data"]["name"],
        "Target"
    );
    // Our own origin, or none (non-browser clients): allowed.
    let res = send(
        Some(&app.address),
        "application/json",
        r#"{"name": "Same Origin"}"#,
    )
    .await;
    assert_eq!(res.status, 201, "{}", res.text);
    let res = send(None, "application/json", r#"{"name": "No Origin"}"#).await;
    assert_eq!(res.status, 201, "{}", res.text);
    // Bearer tokens are not ambient credentials: a foreign Origin does not matter.
    let res = plain_client()
        .post(app.url("/v1/projects"))
        .bearer_auth(&admin)
        .header("origin", "https://evil.example")
        .json(&json!({ "name": "Bearer Cross Origin" }))
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), 201);
    // Logout ends the cookie session.
    let res = app
        .client
        .post(app.url("/v1/auth/logout"))
        .header("origin", &app.address)
        .header("content-type", "application/json")
        .send()
        .await
        .expect("logout");
    assert_eq!(res.status(), 204);
    let res = app
        .client
        .get(app.url("/v1/auth/session"))
        .send()
        .await
        .expect("get");
    assert_eq!(res.status(), 401);
}

// ---------------------------------------------------------------------------------------------
// Rate limits
// ---------------------------------------------------------------------------------------------

fn rate_headers(res: &ApiResponse) -> (u64, u64, i64) {
    let num = |h: &str| -> i64 {
        res.header(h)
            .unwrap_or_else(|| panic!("{h} missing on {} {}", res.status, res.text))
            .parse()
            .unwrap_or_else(|_| panic!("{h} is not a number"))
    };
    (
        num("x-ratelimit-limit") as u64,
        num("x-ratelimit-remaining") as u64,
        num("x-ratelimit-reset"),
    )
}

#[tokio::test]
async fn every_response_carries_rate_limit_headers() {
    let app = TestApp::builder()
        .config(|c| {
            // One slot back per second: two requests in a row always see the count drop.
            c.control.rate_limit.per_minute = 60;
            c.control.rate_limit.burst = 500;
        })
        .spawn()
        .await;
    let (admin, project, _) = basics(&app).await;
    let responses = [
        call(&app, "GET", "/v1/health", None, None).await,
        call(&app, "GET", "/v1/projects", None, None).await,
        get_as(&app, &admin, "/v1/projects").await,
        get_as(&app, &admin, "/v1/projects/nope").await,
        post_as(&app, &admin, "/v1/projects", json!({ "name": "" })).await,
        post_as(&app, &admin, "/v1/projects", json!({ "bogus": 1 })).await,
        call(&app, "PUT", "/v1/projects", Some(&admin), None).await,
        get_as(&app, &admin, "/v1/no/such/route").await,
        delete_as(&app, &admin, &format!("/v1/projects/{project}")).await,
        get_as(&app, &admin, "/api/v1/projects").await,
        call(&app, "GET", "/v1/servers", Some("ezf_live_unknown"), None).await,
    ];
    let t = now();
    for res in &responses {
        let (limit, remaining, reset) = rate_headers(res);
        assert_eq!(limit, 60, "X-RateLimit-Limit is the per-minute limit");
        assert!(remaining <= 500, "{remaining}");
        assert!(
            reset >= t - 5 && reset <= t + 120,
            "reset is epoch seconds soon: {reset} vs {t}"
        );
    }
    // Remaining counts down for one caller.
    let a = rate_headers(&get_as(&app, &admin, "/v1/projects").await).1;
    let b = rate_headers(&get_as(&app, &admin, "/v1/projects").await).1;
    assert!(b < a, "remaining decreases: {a} then {b}");
}

#[tokio::test]
async fn requests_past_the_rate_limit_are_429_per_caller() {
    let app = TestApp::builder()
        .config(|c| {
            c.control.rate_limit.per_minute = 6;
            c.control.rate_limit.burst = 3;
        })
        .spawn()
        .await;
    // Sign in (counts against the address), then spend the session's burst.
    let admin = admin_token(&app).await;
    let mut statuses = Vec::new();
    let mut last = None;
    for _ in 0..4 {
        let res = get_as(&app, &admin, "/v1/projects").await;
        statuses.push(res.status);
        last = Some(res);
    }
    assert_eq!(statuses, [200, 200, 200, 429]);
    let res = last.expect("response");
    res.assert_error_shape();
    assert_eq!(res.code(), "RATE_LIMITED");
    let retry: u64 = res
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("secs");
    assert!((1..=60).contains(&retry), "{retry}");
    let (limit, remaining, _) = rate_headers(&res);
    assert_eq!((limit, remaining), (6, 0));
    // Another caller has its own bucket, and /api/v1 shares the caller's.
    let other = call(&app, "GET", "/v1/health", None, None).await;
    assert_eq!(other.status, 200);
    let mirrored = get_as(&app, &admin, "/api/v1/projects").await;
    assert_eq!(mirrored.status, 429, "the same caller under /api/v1");
}

#[tokio::test]
async fn made_up_credentials_count_against_their_address() {
    let app = TestApp::builder()
        .config(|c| {
            c.control.rate_limit.per_minute = 6;
            c.control.rate_limit.burst = 4;
        })
        .spawn()
        .await;
    // The sign-in is the address's first request; the session it opens has its own bucket.
    let admin = admin_token(&app).await;
    // Each made-up token would have had a fresh bucket: they all count against the address.
    let mut statuses = Vec::new();
    for i in 0..4 {
        let res = get_as(&app, &format!("ezf_live_made_up_{i}"), "/v1/projects").await;
        statuses.push(res.status);
    }
    assert_eq!(statuses, [401, 401, 401, 429]);
    let res = call(&app, "GET", "/v1/health", None, None).await;
    assert_eq!(res.status, 429, "the address's bucket is spent");
    // The verified session is not held back by its address.
    let res = get_as(&app, &admin, "/v1/projects").await;
    assert_eq!(res.status, 200, "{}", res.text);
    // Nor is a key used for the first time from the spent address: it verifies, and then has a
    // bucket of its own.
    let project = create_project(&app, &admin, "limited").await;
    let key = create_key(
        &app,
        &admin,
        project["id"].as_str().expect("id"),
        &["servers:read"],
    )
    .await;
    let res = get_as(&app, &key, "/v1/servers").await;
    assert_eq!(res.status, 200, "{}", res.text);
    let (_, remaining, _) = rate_headers(&res);
    assert_eq!(remaining, 3, "its own bucket");
}

// ---------------------------------------------------------------------------------------------
// /api/v1
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn api_v1_mirrors_v1() {
    let app = roomy().await;
    let res = call(
        &app,
        "POST",
        "/api/v1/auth/login",
        None,
        Some(&json!({ "email": ADMIN_EMAIL, "password": ADMIN_PASSWORD })),
    )
    .await;
    let token = res.expect(200)["data"]["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let p = post_as(
        &app,
        &token,
        "/api/v1/projects",
        json!({ "name": "Mirror" }),
    )
    .await;
    let id = p.expect(201)["data"]["id"].as_str().expect("id").to_owned();
    let s = post_as(
        &app,
        &token,
        &format!("/api/v1/projects/{id}/servers"),
        json!({ "name": "Mirror Server" }),
    )
    .await;
    let sid = s.expect(201)["data"]["id"].as_str().expect("id").to_owned();
    for path in [
        format!("/projects/{id}"),
        format!("/servers/{sid}"),
        format!("/servers/{sid}/auth"),
        "/projects".to_owned(),
        "/auth/session".to_owned(),
    ] {
        let a = get_as(&app, &token, &format!("/v1{path}")).await;
        let b = get_as(&app, &token, &format!("/api/v1{path}")).await;
        assert_eq!(a.status, 200, "{path}");
        assert_eq!(a.body, b.body, "{path}: same answer under both prefixes");
    }
    for (method, path, body) in [
        ("GET", "/projects/nope".to_owned(), None),
        ("POST", "/projects".to_owned(), Some(json!({ "name": "" }))),
        ("POST", "/projects".to_owned(), Some(json!({ "bad": 1 }))),
        ("GET", "/users?limit=0".to_owned(), None),
    ] {
        let a = call(
            &app,
            method,
            &format!("/v1{path}"),
            Some(&token),
            body.as_ref(),
        )
        .await;
        let b = call(
            &app,
            method,
            &format!("/api/v1{path}"),
            Some(&token),
            body.as_ref(),
        )
        .await;
        assert_eq!((a.status, &a.body), (b.status, &b.body), "{method} {path}");
    }
    let health = call(&app, "GET", "/api/v1/health", None, None).await;
    assert_eq!(health.expect(200)["status"], "ok");
    let res = delete_as(&app, &token, &format!("/api/v1/servers/{sid}")).await;
    res.expect(204);
    assert_eq!(
        get_as(&app, &token, &format!("/v1/servers/{sid}"))
            .await
            .status,
        404
    );
    let res = call(&app, "POST", "/api/v1/auth/logout", Some(&token), None).await;
    res.expect(204);
    assert_eq!(get_as(&app, &token, "/v1/auth/session").await.status, 401);
}

// ---------------------------------------------------------------------------------------------
// Keys minting keys
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_key_cannot_mint_a_key_with_scopes_it_lacks() {
    let app = TestApp::spawn().await;
    let (admin, project, _) = basics(&app).await;
    let path = format!("/v1/projects/{project}/keys");
    let writer = create_key(&app, &admin, &project, &["servers:write"]).await;
    let res = post_as(
        &app,
        &writer,
        &path,
        json!({ "name": "up", "scopes": ["servers:write", "logs:read"] }),
    )
    .await;
    assert_eq!(res.status, 403, "{}", res.text);
    res.assert_error_shape();
    assert_eq!(res.body["error"]["details"]["requiredScope"], "logs:read");
    let res = post_as(
        &app,
        &writer,
        &path,
        json!({ "name": "up", "scopes": ["billing:read"] }),
    )
    .await;
    assert_eq!(
        res.body["error"]["details"]["requiredScope"], "billing:read",
        "{}",
        res.text
    );
    // The same or fewer scopes: fine.
    let both = create_key(
        &app,
        &admin,
        &project,
        &["servers:write", "servers:read", "logs:read"],
    )
    .await;
    let res = post_as(
        &app,
        &both,
        &path,
        json!({ "name": "down", "scopes": ["servers:read", "logs:read"] }),
    )
    .await;
    res.expect(201);
    let res = post_as(
        &app,
        &writer,
        &path,
        json!({ "name": "same", "scopes": ["servers:write"] }),
    )
    .await;
    let minted = res.expect(201)["data"]["key"]
        .as_str()
        .expect("key")
        .to_owned();
    // And a minted key cannot climb either.
    let res = post_as(
        &app,
        &minted,
        &path,
        json!({ "name": "x", "scopes": ["servers:read"] }),
    )
    .await;
    assert_eq!(res.status, 403);
    assert_eq!(
        res.body["error"]["details"]["requiredScope"],
        "servers:read"
    );
    // A key without servers:write cannot mint at all.
    let reader = create_key(&app, &admin, &project, &["servers:read"]).await;
    let res = post_as(
        &app,
        &reader,
        &path,
        json!({ "name": "x", "scopes": ["servers:read"] }),
    )
    .await;
    assert_eq!(res.status, 403);
    assert_eq!(
        res.body["error"]["details"]["requiredScope"],
        "servers:write"
    );
    // A key cannot mint keys for another project, even with every scope.
    let other = create_project(&app, &admin, "Other").await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let res = post_as(
        &app,
        &both,
        &format!("/v1/projects/{other}/keys"),
        json!({ "name": "x", "scopes": ["servers:read"] }),
    )
    .await;
    assert_eq!(res.status, 404, "{}", res.text);
    // Keys cannot create projects or users.
    assert_eq!(
        post_as(&app, &both, "/v1/projects", json!({ "name": "K" }))
            .await
            .status,
        403
    );
    assert_eq!(
        post_as(
            &app,
            &both,
            "/v1/users",
            json!({ "email": "k@example.com" })
        )
        .await
        .status,
        403
    );
}

#[tokio::test]
async fn a_key_cannot_mint_a_key_that_outlives_it() {
    let app = TestApp::spawn().await;
    let (admin, project, _) = basics(&app).await;
    let path = format!("/v1/projects/{project}/keys");
    let in_hours = |h: u64| {
        humantime::format_rfc3339_seconds(
            SystemTime::now() + std::time::Duration::from_secs(h * 3600),
        )
        .to_string()
    };
    let parent = post_as(
        &app,
        &admin,
        &path,
        json!({ "name": "ci", "scopes": ["servers:read", "servers:write"], "expiresAt": in_hours(1) }),
    )
    .await;
    let parent_data = parent.expect(201)["data"].clone();
    let parent_key = parent_data["key"].as_str().expect("key").to_owned();
    // Later than its own expiry: refused. None given: it gets the parent's.
    let res = post_as(
        &app,
        &parent_key,
        &path,
        json!({ "name": "x", "scopes": ["servers:read"], "expiresAt": in_hours(2) }),
    )
    .await;
    res.assert_invalid("expiresAt");
    let child = post_as(
        &app,
        &parent_key,
        &path,
        json!({ "name": "child", "scopes": ["servers:read", "servers:write"] }),
    )
    .await;
    let child = child.expect(201)["data"].clone();
    assert_eq!(child["expiresAt"], parent_data["expiresAt"], "{child}");
    let child_key = child["key"].as_str().expect("key").to_owned();
    let grandchild = create_key(&app, &child_key, &project, &["servers:read"]).await;
    // A session's keys are unaffected by all this.
    let sibling = create_key(&app, &admin, &project, &["servers:read"]).await;

    // Revoking the parent revokes what was made with it, down the line.
    let id = parent_data["id"].as_str().expect("id");
    delete_as(&app, &admin, &format!("/v1/keys/{id}"))
        .await
        .expect(204);
    for (what, key) in [("child", &child_key), ("grandchild", &grandchild)] {
        let res = get_as(&app, key, "/v1/servers").await;
        assert_eq!(res.status, 401, "{what}: {}", res.text);
    }
    get_as(&app, &sibling, "/v1/servers").await.expect(200);
}

/// Sessions act within their projects only; a member cannot reach into another project by id.
#[tokio::test]
async fn a_member_sees_only_their_projects() {
    let app = TestApp::spawn().await;
    let admin = admin_token(&app).await;
    let (_, alice) = user_session(&app, &admin, "alice@example.com").await;
    let (_, bob) = user_session(&app, &admin, "bob@example.com").await;
    let a = create_project(&app, &alice, "Alice's").await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let s = create_server(&app, &alice, &a, "Alice Server").await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let b = create_project(&app, &bob, "Bob's").await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let listed = get_as(&app, &bob, "/v1/projects").await;
    let ids: Vec<&str> = listed.body["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|p| p["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, [b.as_str()]);
    assert_eq!(listed.body["data"][0]["role"], "owner");
    assert_eq!(
        get_as(&app, &bob, &format!("/v1/projects/{a}"))
            .await
            .status,
        404
    );
    assert_eq!(
        get_as(&app, &bob, &format!("/v1/servers/{s}")).await.status,
        404
    );
    assert_eq!(
        post_as(
            &app,
            &bob,
            &format!("/v1/projects/{a}/servers"),
            json!({ "name": "Intruder" })
        )
        .await
        .status,
        404
    );
    // The admin sees both.
    let all = get_as(&app, &admin, "/v1/projects").await;
    assert_eq!(all.body["meta"]["total"], 2);
    // A member (not owner) of Alice's project sees it with role "member".
    add_member(&app, &alice, &a, "bob@example.com", "member").await;
    let p = get_as(&app, &bob, &format!("/v1/projects/{a}")).await;
    assert_eq!(p.expect(200)["data"]["role"], "member");
    assert_eq!(
        get_as(&app, &bob, &format!("/v1/servers/{s}")).await.status,
        200
    );
    let _ = login(&app, "bob@example.com", USER_PASSWORD).await;
}

/// Writes arriving together are serialised by the store, never a 500 (nor a 503 for a handful).
#[tokio::test]
async fn concurrent_writes_all_succeed() {
    let app = roomy().await;
    let (admin, project, server) = basics(&app).await;
    let (app, admin, project, server) = (&app, &admin, &project, &server);
    let before = table_counts(app);
    let statuses = futures_util::future::join_all((0..12).flat_map(|i| {
        [
            futures_util::future::Either::Left(async move {
                let body = json!({ "name": format!("Concurrent {i}") });
                (
                    "project",
                    post_as(app, admin, "/v1/projects", body).await.status,
                )
            }),
            futures_util::future::Either::Right(futures_util::future::Either::Left(async move {
                let body = json!({ "name": format!("concurrent server {i}") });
                let path = format!("/v1/projects/{project}/servers");
                ("server", post_as(app, admin, &path, body).await.status)
            })),
            futures_util::future::Either::Right(futures_util::future::Either::Right(async move {
                let path = format!("/v1/servers/{server}/env/VAR_{i}");
                (
                    "env",
                    put_as(app, admin, &path, json!({ "value": "v" }))
                        .await
                        .status,
                )
            })),
        ]
    }))
    .await;
    let bad: Vec<_> = statuses
        .iter()
        .filter(|(_, s)| !matches!(s, 200 | 201))
        .collect();
    assert!(
        bad.is_empty(),
        "concurrent writes failed: {bad:?} (all: {statuses:?})"
    );
    let after = table_counts(app);
    let count = |c: &[(&str, i64)], t: &str| c.iter().find(|(n, _)| *n == t).map(|(_, n)| *n);
    assert_eq!(
        count(&after, "projects"),
        count(&before, "projects").map(|n| n + 12)
    );
    assert_eq!(
        count(&after, "servers"),
        count(&before, "servers").map(|n| n + 12)
    );
    assert_eq!(
        count(&after, "env_vars"),
        count(&before, "env_vars").map(|n| n + 12)
    );
}
