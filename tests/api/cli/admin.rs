//! The `ezforge` binary as an admin's and an invitee's client: `users list|invite|delete`,
//! `project decline|remove-member`, `usage` and `audit`, run as child processes against a
//! TestApp (see `cli_client` for the shell).

use serde_json::{Value, json};

use crate::cli::client::{Shell, ids};
use crate::helpers::{TestApp, USER_PASSWORD, create_key, create_project, create_user, post_as};

/// Signs `email` in, in a shell of its own.
async fn signed_in(app: &TestApp, email: &str, password: &str) -> Shell {
    let sh = Shell::new(app);
    let out = sh
        .run_with_stdin(
            &["auth", "login", "--email", email, "--password-stdin"],
            Some(&format!("{password}\n")),
        )
        .await;
    assert!(out.success, "login as {email}: {}", out.stderr);
    sh
}

/// The line of `out` that is an invite token.
fn token_line(out: &str) -> String {
    out.lines()
        .map(str::trim)
        .find(|l| l.starts_with("ezf_inv_"))
        .unwrap_or_else(|| panic!("no token in: {out}"))
        .to_owned()
}

#[tokio::test]
async fn admins_list_invite_and_delete_users_from_the_cli() {
    let app = TestApp::spawn().await;
    let admin = Shell::new(&app);
    admin.login().await;

    // An account without a password: the token is printed once, for its owner.
    let human = admin.ok(&["users", "invite", "carol@example.com"]).await;
    assert!(
        human.contains("Created the account carol@example.com (member)"),
        "{human}"
    );
    let token = token_line(&human);
    let users = admin.json(&["users", "list"]).await;
    assert!(
        ids(&users, "email").contains(&"carol@example.com".to_owned()),
        "{users}"
    );
    // The token from the environment, never on the command line (where `ps` shows it).
    let carol = Shell::new(&app);
    let mut cmd = carol.command(&["auth", "accept-invite", "--password-stdin"]);
    cmd.env("EZFORGE_INVITE_TOKEN", &token)
        .stdin(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(b"a-carols-password\n")
            .await
            .expect("write");
    }
    let out = child.wait_with_output().await.expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
    let carol = signed_in(&app, "carol@example.com", "a-carols-password").await;
    let table = admin.ok(&["users", "list"]).await;
    assert!(table.starts_with("ID"), "{table}");
    assert!(table.contains("carol@example.com  member"), "{table}");

    // An admin account, as JSON.
    let dave = admin
        .json(&["users", "invite", "dave@example.com", "--admin"])
        .await;
    assert_eq!(dave["user"]["role"], "admin", "{dave}");
    assert!(
        dave["inviteToken"]
            .as_str()
            .is_some_and(|t| t.starts_with("ezf_inv_")),
        "{dave}"
    );
    let err = admin.fails(&["users", "invite", "carol@example.com"]).await;
    assert!(err.contains("already exists"), "{err}");
    let err = admin.fails(&["users", "invite", "not-an-email"]).await;
    assert!(err.contains("email"), "{err}");

    // Not an admin: refused, with the API's reason; so is an API key, whatever its scopes.
    for args in [
        &["users", "list"][..],
        &["users", "invite", "eve@example.com"],
        &["users", "delete", "dave@example.com"],
    ] {
        let err = carol.fails(args).await;
        assert!(err.contains("only an admin"), "{args:?}: {err}");
    }
    let p = create_project(&app, &admin.token(), "Keys").await;
    let key = create_key(
        &app,
        &admin.token(),
        p["id"].as_str().expect("id"),
        &["servers:read", "servers:write", "billing:read"],
    )
    .await;
    let err = Shell::with_api_key(&app, &key)
        .fails(&["users", "list"])
        .await;
    assert!(err.contains("signed-in user"), "{err}");
    assert_eq!(
        admin
            .json(&["users", "list"])
            .await
            .as_array()
            .map(Vec::len),
        Some(3)
    );

    // Deleted by email: the account's session ends at once.
    assert!(carol.run(&["auth", "whoami"]).await.success);
    let out = admin.ok(&["users", "delete", "carol@example.com"]).await;
    assert!(
        out.contains("Deleted the account carol@example.com"),
        "{out}"
    );
    let err = carol.fails(&["auth", "whoami"]).await;
    assert!(
        err.contains("sign in again") || err.contains("session"),
        "{err}"
    );
    assert!(
        !ids(&admin.json(&["users", "list"]).await, "email").contains(&"carol@example.com".into())
    );
    // By id too; unknown ones are named.
    let dave_id = dave["user"]["id"].as_str().expect("id");
    admin.ok(&["users", "delete", dave_id, "--json"]).await;
    let err = admin.fails(&["users", "delete", "carol@example.com"]).await;
    assert!(
        err.contains("no account has the email carol@example.com"),
        "{err}"
    );
    let err = admin
        .fails(&["users", "delete", "usr_aaaaaaaaaaaaaaaaaaaaaaaa"])
        .await;
    assert!(err.contains("not found"), "{err}");
    // Not oneself.
    let err = admin.fails(&["users", "delete", "admin@example.com"]).await;
    assert!(err.contains("your own account"), "{err}");
}

#[tokio::test]
async fn invitees_decline_and_owners_remove_members_from_the_cli() {
    let app = TestApp::spawn().await;
    let admin = Shell::new(&app);
    admin.login().await;
    let admin_token = admin.token();
    admin.ok(&["project", "create", "Crew"]).await;
    for email in ["bob@example.com", "mallory@example.com"] {
        create_user(&app, &admin_token, email, "member").await;
    }
    let bob = signed_in(&app, "bob@example.com", USER_PASSWORD).await;
    let mallory = signed_in(&app, "mallory@example.com", USER_PASSWORD).await;

    // Bob declines; the invitation is gone for both sides, and its token with it.
    let inv = admin
        .json(&["project", "invite", "crew", "bob@example.com"])
        .await;
    let id = inv["id"].as_str().expect("id").to_owned();
    let token = inv["inviteToken"].as_str().expect("token").to_owned();
    // Nobody else can decline it (the same answer as for a made-up id).
    let err = mallory.fails(&["project", "decline", &id]).await;
    assert!(err.contains("invitation not found"), "{err}");
    assert_eq!(
        ids(&bob.json(&["project", "invitations"]).await, "id"),
        std::slice::from_ref(&id)
    );
    let out = bob.ok(&["project", "decline", &id]).await;
    assert!(out.contains(&format!("Declined invitation {id}")), "{out}");
    assert_eq!(bob.json(&["project", "invitations"]).await, json!([]));
    assert_eq!(
        admin.json(&["project", "invitations", "crew"]).await,
        json!([])
    );
    let err = bob.fails(&["project", "join", &token]).await;
    assert!(err.contains("invitation not found"), "{err}");
    let err = bob.fails(&["project", "decline", &id]).await;
    assert!(err.contains("invitation not found"), "{err}");

    // Bob and Mallory join; a member who is not an owner cannot remove anyone.
    for (sh, email) in [(&bob, "bob@example.com"), (&mallory, "mallory@example.com")] {
        let inv = admin.json(&["project", "invite", "crew", email]).await;
        sh.ok(&["project", "join", inv["inviteToken"].as_str().expect("t")])
            .await;
    }
    let err = mallory
        .fails(&["project", "remove-member", "crew", "bob@example.com"])
        .await;
    assert!(err.contains("owner"), "{err}");
    let err = admin
        .fails(&["project", "remove-member", "crew", "nobody@example.com"])
        .await;
    assert!(
        err.contains("nobody@example.com is not a member of crew"),
        "{err}"
    );

    // The owner removes Bob by email and Mallory by id: they no longer see the project.
    let out = admin
        .ok(&["project", "remove-member", "crew", "BOB@example.com"])
        .await;
    assert!(out.contains("Removed bob@example.com from crew"), "{out}");
    let members = admin.json(&["project", "members", "crew"]).await;
    let mallory_id = members
        .as_array()
        .expect("members")
        .iter()
        .find(|m| m["email"] == "mallory@example.com")
        .and_then(|m| m["userId"].as_str())
        .expect("mallory's id")
        .to_owned();
    admin
        .ok(&["project", "remove-member", "crew", &mallory_id])
        .await;
    assert_eq!(
        ids(&admin.json(&["project", "members", "crew"]).await, "email"),
        ["admin@example.com"]
    );
    assert_eq!(bob.json(&["project", "list"]).await, json!([]));
    // The last owner stays.
    let err = admin
        .fails(&["project", "remove-member", "crew", "admin@example.com"])
        .await;
    assert!(err.contains("at least one owner"), "{err}");

    // The audit log tells the story, newest first.
    let audit = admin.json(&["audit", "--limit", "5"]).await;
    let actions: Vec<&str> = audit
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|a| a["action"].as_str())
        .collect();
    assert_eq!(
        actions[..2],
        ["project.member.remove", "project.member.remove"],
        "{audit}"
    );
    let all = admin.json(&["audit", "--limit", "1000"]).await;
    assert!(
        all.as_array()
            .expect("entries")
            .iter()
            .any(|a| a["action"] == "project.invitation.decline"),
        "{all}"
    );
}

#[tokio::test]
async fn usage_and_the_audit_log_from_the_cli() {
    let app = TestApp::builder()
        .config(|c| {
            c.limits.requests_per_month = Some(1000);
            c.control.rate_limit.per_minute = 1_000_000;
            c.control.rate_limit.burst = 1_000_000;
        })
        .spawn()
        .await;
    let admin = Shell::new(&app);
    admin.login().await;
    let token = admin.token();

    // Usage: this month's counts, and the configured limits (reported, not enforced).
    let human = admin.ok(&["usage"]).await;
    assert!(human.starts_with("Usage in "), "{human}");
    assert!(human.contains("plan self_hosted"), "{human}");
    assert!(human.contains("requests   0 of 1000"), "{human}");
    assert!(human.contains("reported, not enforced"), "{human}");
    let usage = admin.json(&["usage"]).await;
    assert_eq!(usage["plan"], "self_hosted");
    assert_eq!(usage["limits"]["requestsPerMonth"], 1000);
    assert!(usage["usage"]["bandwidthBytes"].is_u64(), "{usage}");
    // A key needs billing:read.
    let p = create_project(&app, &token, "Billing").await;
    let pid = p["id"].as_str().expect("id");
    let reader = create_key(&app, &token, pid, &["billing:read"]).await;
    let other = create_key(&app, &token, pid, &["servers:read"]).await;
    assert_eq!(
        Shell::with_api_key(&app, &reader).json(&["usage"]).await["plan"],
        "self_hosted"
    );
    let err = Shell::with_api_key(&app, &other).fails(&["usage"]).await;
    assert!(err.contains("billing:read"), "{err}");

    // Audit: more entries than one page; `--limit` takes the newest, across pages.
    for n in 0..105 {
        post_as(
            &app,
            &token,
            "/v1/projects",
            json!({ "name": format!("Audit {n}") }),
        )
        .await
        .expect(201);
    }
    let newest = admin.json(&["audit", "--limit", "103"]).await;
    let entries = newest.as_array().expect("entries");
    assert_eq!(entries.len(), 103);
    let ids: Vec<i64> = entries
        .iter()
        .map(|a| a["id"].as_i64().expect("numeric id"))
        .collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");
    assert_eq!(entries[0]["action"], "project.create");
    assert_eq!(entries[0]["details"]["slug"], "audit-104");
    let all = admin.json(&["audit", "--limit", "100000"]).await;
    let total = all.as_array().map_or(0, Vec::len);
    assert!(total > 105, "every entry: {total}");
    assert!(
        all.as_array()
            .expect("entries")
            .iter()
            .any(|a| a["action"] == "session.create"),
        "{all}"
    );
    let table = admin.ok(&["audit", "--limit", "3"]).await;
    let mut lines = table.lines();
    let header = lines.next().unwrap_or_default();
    assert!(
        header.starts_with("AT") && header.contains("ACTION") && header.ends_with("DETAILS"),
        "{table}"
    );
    assert_eq!(lines.count(), 3, "{table}");
    admin.fails(&["audit", "--limit", "0"]).await;

    // Admins only.
    let (_, pw) = create_user(&app, &token, "member@example.com", "member").await;
    let member = signed_in(&app, "member@example.com", &pw).await;
    let err = member.fails(&["audit"]).await;
    assert!(err.contains("only an admin"), "{err}");
    let err = Shell::with_api_key(&app, &reader).fails(&["audit"]).await;
    assert!(err.contains("signed-in user"), "{err}");
    let _: Value = member.json(&["usage"]).await;
}
