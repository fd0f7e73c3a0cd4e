//! Lists show only what the caller may see; 404s tell nothing; slugs work wherever ids do.

use super::*;

/// Lists show only what the caller may see; an invisible object and a missing one answer
/// the same (existence is not leaked).
#[tokio::test]
async fn lists_show_only_visible_objects_and_404s_do_not_leak() {
    let world = World::new().await;
    let app = &world.app;
    let ids = |v: &Value| -> Vec<String> {
        v["data"]
            .as_array()
            .expect("data")
            .iter()
            .map(|x| x["id"].as_str().expect("id").to_owned())
            .collect()
    };
    // Servers: the outsider and the other project's key do not see the project's server.
    for token in [&world.nonmember, &world.other_key] {
        let res = call(app, "GET", "/v1/servers", Some(token), None).await;
        assert!(
            !ids(res.expect(200)).contains(&world.server),
            "{}",
            res.text
        );
        let res = call(app, "GET", "/v1/projects", Some(token), None).await;
        assert!(
            !ids(res.expect(200)).contains(&world.project),
            "{}",
            res.text
        );
    }
    // The member and a key of the project see it.
    for token in [&world.member, &world.keys["servers:read"]] {
        let res = call(app, "GET", "/v1/servers", Some(token), None).await;
        assert!(ids(res.expect(200)).contains(&world.server), "{}", res.text);
    }
    // A key lists its own project only.
    let res = call(
        app,
        "GET",
        "/v1/projects",
        Some(&world.keys["billing:read"]),
        None,
    )
    .await;
    assert_eq!(ids(res.expect(200)), vec![world.project.clone()]);
    assert_eq!(res.body["meta"]["total"], 1);
    // Existing-but-invisible and missing look alike.
    for (real, fake) in [
        (
            format!("/v1/servers/{}", world.server),
            "/v1/servers/srv_aaaaaaaaaaaaaaaaaaaaaaaa".to_owned(),
        ),
        (
            format!("/v1/projects/{}", world.project),
            "/v1/projects/proj_aaaaaaaaaaaaaaaaaaaaaaaa".to_owned(),
        ),
        (
            format!("/v1/servers/{}/auth", world.server),
            "/v1/servers/srv_aaaaaaaaaaaaaaaaaaaaaaaa/auth".to_owned(),
        ),
    ] {
        let a = call(app, "GET", &real, Some(&world.nonmember), None).await;
        let b = call(app, "GET", &fake, Some(&world.nonmember), None).await;
        assert_eq!(a.status, 404, "{real}: {}", a.text);
        assert_eq!(b.status, 404, "{fake}: {}", b.text);
        assert_eq!(a.body, b.body, "{real} vs {fake}");
    }
}

/// Wherever a path takes `:projectId` or `:serverId`, the slug works as well.
#[tokio::test]
async fn slugs_work_wherever_ids_do() {
    let world = World::new().await;
    let app = &world.app;
    let owner = &world.owner;
    let p = call(
        app,
        "GET",
        &format!("/v1/projects/{}", world.project),
        Some(owner),
        None,
    )
    .await;
    let pslug = p.expect(200)["data"]["slug"]
        .as_str()
        .expect("slug")
        .to_owned();
    let s = call(
        app,
        "GET",
        &format!("/v1/servers/{}", world.server),
        Some(owner),
        None,
    )
    .await;
    let sslug = s.expect(200)["data"]["slug"]
        .as_str()
        .expect("slug")
        .to_owned();
    assert_eq!(pslug, "matrix-project");
    assert_eq!(sslug, "matrix-server");
    for path in [
        format!("/v1/projects/{pslug}"),
        format!("/v1/projects/{pslug}/servers"),
        format!("/v1/projects/{pslug}/keys"),
        format!("/v1/projects/{pslug}/members"),
        format!("/v1/servers/{sslug}"),
        format!("/v1/servers/{sslug}/auth"),
        format!("/v1/servers/{sslug}/clients"),
        format!("/v1/servers/{sslug}/env"),
    ] {
        let res = call(app, "GET", &path, Some(owner), None).await;
        assert_eq!(res.status, 200, "{path}: {}", res.text);
    }
    let res = call(
        app,
        "GET",
        &format!("/v1/servers/{sslug}"),
        Some(owner),
        None,
    )
    .await;
    assert_eq!(res.body["data"]["id"], world.server.as_str());
}
