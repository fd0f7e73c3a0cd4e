//! Pagination over every list.

use super::*;

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
                    ezforge::store::projects::add_member(
                        tx,
                        &project_id,
                        id,
                        ezforge::domain::kinds::ProjectRole::Member,
                        0,
                    )?;
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
