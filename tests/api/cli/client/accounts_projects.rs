//! Sign-in, projects, keys and members from the CLI.

use super::*;

#[tokio::test]
async fn login_keeps_a_private_session_that_whoami_uses_and_logout_ends() {
    let app = TestApp::spawn().await;
    let sh = Shell::new(&app);
    sh.login().await;

    let path = sh.creds_path();
    let mode = std::fs::metadata(&path)
        .expect("credentials file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "credentials file mode");
    let dir_mode = std::fs::metadata(path.parent().expect("dir"))
        .expect("dir")
        .permissions()
        .mode();
    assert_eq!(dir_mode & 0o777, 0o700, "credentials dir mode");
    let stored: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("JSON");
    assert_eq!(stored["url"], app.address.as_str());
    assert_eq!(stored["email"], ADMIN_EMAIL);
    assert!(stored["expiresAt"].is_string(), "{stored}");
    let token = sh.token();
    assert!(token.starts_with("ezf_sess_"), "{token}");

    let who = sh.ok(&["auth", "whoami"]).await;
    assert!(who.contains(ADMIN_EMAIL), "{who}");
    let who = sh.json(&["auth", "whoami"]).await;
    assert_eq!(who["user"]["email"], ADMIN_EMAIL);
    assert_eq!(who["user"]["role"], "admin");

    sh.ok(&["auth", "logout"]).await;
    assert!(!path.exists(), "logout deletes the credentials file");
    let res = app
        .client
        .get(app.url("/v1/auth/session"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 401, "the session ended on the server");
    let err = sh.fails(&["auth", "whoami"]).await;
    assert!(err.contains("auth login"), "{err}");
    // Logging out again is not an error.
    sh.ok(&["auth", "logout"]).await;
}

#[tokio::test]
async fn a_wrong_password_prints_the_api_message_and_stores_nothing() {
    let app = TestApp::spawn().await;
    let sh = Shell::new(&app);
    let out = sh
        .run_with_stdin(
            &["auth", "login", "--email", ADMIN_EMAIL, "--password-stdin"],
            Some("not-the-password\n"),
        )
        .await;
    assert!(!out.success);
    assert!(
        out.stderr.starts_with("error: ")
            && out
                .stderr
                .to_lowercase()
                .contains("invalid email or password"),
        "{}",
        out.stderr
    );
    assert!(!sh.creds_path().exists());

    // Without --password-stdin, a terminal or EZFORGE_PASSWORD there is no password to send.
    let err = sh.fails(&["auth", "login", "--email", ADMIN_EMAIL]).await;
    assert!(err.contains("--password-stdin"), "{err}");
}

#[tokio::test]
async fn projects_are_created_and_listed_and_keys_are_shown_once() {
    let app = TestApp::spawn().await;
    let sh = Shell::new(&app);
    sh.login().await;

    let p = sh
        .json(&["project", "create", "Demo Project", "--slug", "demo"])
        .await;
    assert_eq!(p["slug"], "demo");
    assert_eq!(p["name"], "Demo Project");
    let project_id = p["id"].as_str().expect("id").to_owned();
    assert!(project_id.starts_with("proj_"), "{project_id}");

    let list = sh.json(&["project", "list"]).await;
    assert!(ids(&list, "slug").contains(&"demo".to_owned()), "{list}");
    let table = sh.ok(&["project", "list"]).await;
    let header = table.lines().next().expect("header");
    assert!(
        header.contains("SLUG") && header.contains("NAME"),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.contains(&project_id) && l.contains("demo")),
        "{table}"
    );

    // A live key, human output: printed once, with a line telling to save it.
    let out = sh
        .ok(&[
            "project",
            "create-key",
            "demo",
            "--name",
            "ci",
            "--scopes",
            "servers:read,servers:write",
        ])
        .await;
    let live = out
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("ezf_live_"))
        .unwrap_or_else(|| panic!("no live key printed: {out}"))
        .to_owned();
    assert!(out.to_lowercase().contains("save"), "{out}");

    // A test key with an expiry, JSON output.
    let k = sh
        .json(&[
            "project",
            "create-key",
            &project_id,
            "--name",
            "tests",
            "--scopes",
            "servers:read",
            "--expires-at",
            "2099-01-01T00:00:00Z",
            "--test",
        ])
        .await;
    let test_key = k["key"].as_str().expect("key");
    assert!(test_key.starts_with("ezf_test_"), "{k}");
    assert_eq!(k["environment"], "test");
    assert_eq!(k["scopes"], serde_json::json!(["servers:read"]));
    assert_eq!(k["expiresAt"], "2099-01-01T00:00:00Z");

    // The key alone (no session stored in this HOME) is enough, and whoami names its project.
    let keyed = Shell::with_api_key(&app, &live);
    let who = keyed.ok(&["auth", "whoami"]).await;
    assert!(who.contains("API key") && who.contains("demo"), "{who}");
    let seen = keyed.json(&["project", "list"]).await;
    assert_eq!(ids(&seen, "id"), [project_id.as_str()]);
}

#[tokio::test]
async fn project_list_walks_every_page() {
    let app = TestApp::builder()
        .config(|c| {
            c.control.rate_limit.per_minute = 100_000;
            c.control.rate_limit.burst = 10_000;
        })
        .spawn()
        .await;
    let sh = Shell::new(&app);
    sh.login().await;
    let token = sh.token();
    // More than one page at the largest page size (100).
    for i in 0..105 {
        let res = app
            .client
            .post(app.url("/v1/projects"))
            .bearer_auth(&token)
            .json(&serde_json::json!({"name": format!("Project {i}"), "slug": format!("p-{i}")}))
            .send()
            .await
            .expect("request");
        assert_eq!(
            res.status(),
            201,
            "{}",
            res.text().await.unwrap_or_default()
        );
    }
    let list = sh.json(&["project", "list"]).await;
    let slugs = ids(&list, "slug");
    for i in 0..105 {
        assert!(slugs.contains(&format!("p-{i}")), "p-{i} missing");
    }
    let mut unique = slugs.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), slugs.len(), "no project listed twice");
}

#[tokio::test]
async fn members_are_invited_and_join_from_the_cli() {
    let app = TestApp::spawn().await;
    let admin = Shell::new(&app);
    admin.login().await;
    let admin_token = admin.token();
    crate::helpers::create_user(&app, &admin_token, "bob@example.com", "member").await;
    admin.ok(&["project", "create", "Team"]).await;

    // Owners invite; the token is printed once.
    let human = admin
        .ok(&[
            "project",
            "invite",
            "team",
            "bob@example.com",
            "--role",
            "owner",
        ])
        .await;
    assert!(human.contains("Invited bob@example.com"), "{human}");
    let token = human
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("ezf_inv_"))
        .unwrap_or_else(|| panic!("no token: {human}"))
        .to_owned();
    let pending = admin.json(&["project", "invitations", "team"]).await;
    assert_eq!(ids(&pending, "email"), ["bob@example.com"]);
    assert!(pending[0].get("inviteToken").is_none());

    // The invitee sees it, and joins signed in as the invited email.
    let bob = Shell::new(&app);
    let out = bob
        .run_with_stdin(
            &[
                "auth",
                "login",
                "--email",
                "bob@example.com",
                "--password-stdin",
            ],
            Some(&format!("{}\n", crate::helpers::USER_PASSWORD)),
        )
        .await;
    assert!(out.success, "{}", out.stderr);
    let mine = bob.json(&["project", "invitations"]).await;
    assert_eq!(ids(&mine, "email"), ["bob@example.com"]);
    let joined = bob.ok(&["project", "join", &token]).await;
    assert!(
        joined.contains("Joined project Team (team) as owner"),
        "{joined}"
    );
    let members = bob.json(&["project", "members", "team"]).await;
    assert_eq!(members.as_array().map(Vec::len), Some(2));
    let err = bob.fails(&["project", "join", &token]).await;
    assert!(err.contains("invitation not found"), "spent: {err}");

    // An email without an account makes it with the token, and is a member at once.
    let inv = admin
        .json(&["project", "invite", "team", "newbie@example.com"])
        .await;
    let newbie_token = inv["inviteToken"].as_str().expect("token").to_owned();
    let newbie = Shell::new(&app);
    let out = newbie
        .run_with(
            &["auth", "accept-invite", "--password-stdin"],
            &[("EZFORGE_INVITE_TOKEN", &newbie_token)],
            Some("a-newbie-password\n"),
        )
        .await;
    assert!(out.success, "{}", out.stderr);
    assert!(
        out.stdout.contains("Password set for newbie@example.com"),
        "{}",
        out.stdout
    );
    let out = newbie
        .run_with_stdin(
            &[
                "auth",
                "login",
                "--email",
                "newbie@example.com",
                "--password-stdin",
            ],
            Some("a-newbie-password\n"),
        )
        .await;
    assert!(out.success, "{}", out.stderr);
    let projects = newbie.json(&["project", "list"]).await;
    assert_eq!(ids(&projects, "slug"), ["team"]);

    // Withdrawn, the token is refused with the API's message.
    let inv = admin
        .json(&["project", "invite", "team", "carol@example.com"])
        .await;
    let id = inv["id"].as_str().expect("id");
    admin.ok(&["project", "withdraw", "team", id]).await;
    assert_eq!(
        admin.json(&["project", "invitations", "team"]).await,
        serde_json::json!([])
    );
    let carol = Shell::new(&app);
    let out = carol
        .run_with(
            &["auth", "accept-invite", "--password-stdin"],
            &[(
                "EZFORGE_INVITE_TOKEN",
                inv["inviteToken"].as_str().expect("t"),
            )],
            Some("a-carol-password\n"),
        )
        .await;
    assert!(!out.success);
    assert!(
        out.stderr.starts_with("error: ") && out.stderr.contains("not found"),
        "{}",
        out.stderr
    );
    // Members only: a member who is not an owner cannot invite.
    let err = newbie
        .fails(&["project", "invite", "team", "x@example.com"])
        .await;
    assert!(err.contains("owner"), "{err}");

    // An owner who is not an admin (Bob): the invitee joins from their own list by id; his
    // token makes no account.
    crate::helpers::create_user(&app, &admin_token, "dora@example.com", "member").await;
    let human = bob
        .ok(&["project", "invite", "team", "dora@example.com"])
        .await;
    assert!(human.contains("an administrator"), "{human}");
    let dora = Shell::new(&app);
    let out = dora
        .run_with_stdin(
            &[
                "auth",
                "login",
                "--email",
                "dora@example.com",
                "--password-stdin",
            ],
            Some(&format!("{}\n", crate::helpers::USER_PASSWORD)),
        )
        .await;
    assert!(out.success, "{}", out.stderr);
    let mine = dora.json(&["project", "invitations"]).await;
    let id = mine[0]["id"].as_str().expect("id").to_owned();
    assert!(id.starts_with("inv_"), "{mine}");
    let joined = dora.ok(&["project", "join", &id]).await;
    assert!(
        joined.contains("Joined project Team (team) as member"),
        "{joined}"
    );
    let inv = bob
        .json(&["project", "invite", "team", "nobody@example.com"])
        .await;
    let out = Shell::new(&app)
        .run_with_stdin(
            &[
                "auth",
                "accept-invite",
                inv["inviteToken"].as_str().expect("t"),
                "--password-stdin",
            ],
            Some("a-squatters-password\n"),
        )
        .await;
    assert!(!out.success);
    assert!(
        out.stderr.contains("an administrator creates accounts"),
        "{}",
        out.stderr
    );
    // Given on the command line, the token is warned about (`ps` shows it to other users).
    assert!(
        out.stderr.contains("warning: a token on the command line"),
        "{}",
        out.stderr
    );
}
