//! Issue 18: project membership by invitation. Adding a member invites an email; the answer
//! says nothing about whether an account has it; only the invitee, signed in as that email (or
//! making the account the invitation is for), joins.

use serde_json::{Value, json};

use crate::helpers::{
    ADMIN_EMAIL, ADMIN_PASSWORD, TestApp, USER_PASSWORD, add_member, admin_token, call, create_key,
    create_project, create_user, delete_as, get_as, invite, login, post_as, roomy, user_session,
};

/// An app, the admin's session, an owner's session and their project's id.
async fn project_with_owner() -> (TestApp, String, String, String) {
    let app = roomy().await;
    let admin = admin_token(&app).await;
    let (_, owner) = user_session(&app, &admin, "owner@example.com").await;
    let project = create_project(&app, &owner, "Invitations").await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    (app, admin, owner, project)
}

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    k.sort();
    k
}

async fn accept(
    app: &TestApp,
    session: Option<&str>,
    token: &Value,
) -> crate::helpers::ApiResponse {
    call(
        app,
        "POST",
        "/v1/invitations/accept",
        session,
        Some(&json!({ "token": token })),
    )
    .await
}

/// `POST /v1/invitations/:id/accept`: accepting from one's own list, without the token.
async fn accept_id(app: &TestApp, session: Option<&str>, inv: &Value) -> u16 {
    let id = inv["id"].as_str().expect("id");
    call(
        app,
        "POST",
        &format!("/v1/invitations/{id}/accept"),
        session,
        None,
    )
    .await
    .status
}

async fn new_account(app: &TestApp, token: &Value, password: &str) -> crate::helpers::ApiResponse {
    call(
        app,
        "POST",
        "/v1/auth/invite",
        None,
        Some(&json!({ "token": token, "password": password })),
    )
    .await
}

async fn member_emails(app: &TestApp, owner: &str, project: &str) -> Vec<String> {
    let res = get_as(app, owner, &format!("/v1/projects/{project}/members")).await;
    let mut emails: Vec<String> = res.expect(200)["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|m| m["email"].as_str().expect("email").to_owned())
        .collect();
    emails.sort();
    emails
}

async fn audit_actions(app: &TestApp, admin: &str) -> Vec<Value> {
    let res = get_as(app, admin, "/v1/audit?limit=100").await;
    res.expect(200)["data"].as_array().expect("data").clone()
}

#[tokio::test]
async fn the_answer_is_the_same_whether_or_not_the_email_has_an_account() {
    let (app, admin, owner, project) = project_with_owner().await;
    create_user(&app, &admin, "has-account@example.com", "member").await;
    create_user(&app, &admin, "an-admin@example.com", "admin").await;
    let members = format!("/v1/projects/{project}/members");
    let mut answers = Vec::new();
    for email in [
        "has-account@example.com",
        "nobody@example.com",
        "an-admin@example.com",
    ] {
        let res = post_as(&app, &owner, &members, json!({ "email": email })).await;
        assert_eq!(res.status, 201, "{email}: {}", res.text);
        let data = res.body["data"].clone();
        assert_eq!(data["email"], email);
        assert_eq!(data["status"], "pending");
        assert_eq!(data["role"], "member");
        assert_eq!(data["project"]["id"], project.as_str());
        assert!(
            data["inviteToken"]
                .as_str()
                .is_some_and(|t| t.starts_with("ezf_inv_") && t.len() > 40),
            "{data}"
        );
        answers.push(data);
    }
    // The same fields, the same kinds of value: nothing tells the accounts apart.
    for a in &answers[1..] {
        assert_eq!(keys(a), keys(&answers[0]));
        for k in keys(a) {
            assert_eq!(
                std::mem::discriminant(&a[&k]),
                std::mem::discriminant(&answers[0][&k]),
                "{k}"
            );
        }
    }
    // Nobody was added without being asked.
    assert_eq!(
        member_emails(&app, &owner, &project).await,
        ["owner@example.com"]
    );
    let list = get_as(&app, &owner, &format!("/v1/projects/{project}/invitations")).await;
    let list = list.expect(200);
    assert_eq!(list["meta"]["total"], 3);
    assert!(
        list["data"]
            .as_array()
            .expect("data")
            .iter()
            .all(|i| i.get("inviteToken").is_none() && i["status"] == "pending"),
        "tokens are shown once: {list}"
    );
    let created = audit_actions(&app, &admin)
        .await
        .into_iter()
        .filter(|e| e["action"] == "project.invitation.create")
        .count();
    assert_eq!(created, 3);
}

#[tokio::test]
async fn only_the_invitee_signed_in_as_that_email_may_accept() {
    let (app, admin, owner, project) = project_with_owner().await;
    let (bob_id, bob) = user_session(&app, &admin, "bob@example.com").await;
    let (_, mallory) = user_session(&app, &admin, "mallory@example.com").await;
    let inv = invite(&app, &owner, &project, "Bob@Example.com", "owner").await;
    let token = &inv["inviteToken"];

    // Bob sees it among his invitations; Mallory does not.
    let mine = get_as(&app, &bob, "/v1/invitations").await;
    let mine = mine.expect(200);
    assert_eq!(mine["meta"]["total"], 1, "{mine}");
    assert_eq!(mine["data"][0]["project"]["name"], "Invitations");
    assert_eq!(mine["data"][0]["invitedByEmail"], "owner@example.com");
    assert!(mine["data"][0].get("inviteToken").is_none());
    let theirs = get_as(&app, &mallory, "/v1/invitations").await;
    assert_eq!(theirs.expect(200)["meta"]["total"], 0);

    // Anyone else holding the token or the id, or Bob without either, gets nowhere.
    let res = accept(&app, Some(&mallory), token).await;
    assert_eq!(res.status, 404, "{}", res.text);
    res.assert_error_shape();
    assert_eq!(accept_id(&app, Some(&mallory), &inv).await, 404);
    assert_eq!(accept_id(&app, None, &inv).await, 401);
    assert_eq!(
        accept_id(&app, Some(&bob), &json!({ "id": "inv_made_up" })).await,
        404
    );
    assert_eq!(accept(&app, None, token).await.status, 401);
    let key = create_key(&app, &owner, &project, &["servers:write"]).await;
    assert_eq!(accept(&app, Some(&key), token).await.status, 403);
    assert_eq!(accept_id(&app, Some(&key), &inv).await, 403);
    let res = accept(&app, Some(&bob), &json!("ezf_inv_made-up")).await;
    assert_eq!(res.status, 404);
    call(
        &app,
        "POST",
        "/v1/invitations/accept",
        Some(&bob),
        Some(&json!({})),
    )
    .await
    .assert_invalid("token");
    assert_eq!(
        member_emails(&app, &owner, &project).await,
        ["owner@example.com"]
    );

    // Bob joins, with the role he was invited with; the token is spent.
    let res = accept(&app, Some(&bob), token).await;
    let joined = res.expect(200);
    assert_eq!(joined["data"]["id"], project.as_str());
    assert_eq!(joined["data"]["role"], "owner");
    let p = get_as(&app, &bob, &format!("/v1/projects/{project}")).await;
    assert_eq!(p.expect(200)["data"]["role"], "owner");
    assert_eq!(accept(&app, Some(&bob), token).await.status, 404);
    assert_eq!(accept_id(&app, Some(&bob), &inv).await, 404, "spent");
    assert_eq!(
        get_as(&app, &bob, "/v1/invitations").await.body["meta"]["total"],
        0
    );
    let list = get_as(&app, &owner, &format!("/v1/projects/{project}/invitations")).await;
    assert_eq!(list.expect(200)["meta"]["total"], 0);
    let accepted = audit_actions(&app, &admin)
        .await
        .into_iter()
        .find(|e| e["action"] == "project.invitation.accept")
        .expect("an audit entry");
    assert_eq!(accepted["actor"], bob_id.as_str());
    assert_eq!(accepted["projectId"], project.as_str());
    // Inviting a member again is a conflict the owner could see anyway.
    let again = post_as(
        &app,
        &owner,
        &format!("/v1/projects/{project}/members"),
        json!({ "email": "bob@example.com" }),
    )
    .await;
    assert_eq!(again.status, 409, "{}", again.text);
}

async fn user_count(app: &TestApp, admin: &str) -> Value {
    get_as(app, admin, "/v1/users").await.body["meta"]["total"].clone()
}

/// The proof of the review of issue 18: anyone may create a project and invite, and holds the
/// token. At `POST /v1/auth/invite` an owner's invitation answers one refusal whether or not
/// the email has an account (nobody learns who has one), makes no account (nobody squats an
/// email with a password of their choosing) and touches none.
#[tokio::test]
async fn an_owners_invitation_makes_no_account_and_tells_nothing() {
    let app = roomy().await;
    let admin = admin_token(&app).await;
    let (_, mallory) = user_session(&app, &admin, "mallory@example.com").await;
    create_user(&app, &admin, "carol@example.com", "member").await;
    let project = create_project(&app, &mallory, "Mine").await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let users_before = user_count(&app, &admin).await;
    let mut answers = Vec::new();
    for email in [ADMIN_EMAIL, "carol@example.com", "ceo@example.com"] {
        let inv = invite(&app, &mallory, &project, email, "member").await;
        let res = new_account(&app, &inv["inviteToken"], "mallory-chose-this-one").await;
        assert_eq!(res.status, 403, "{email}: {}", res.text);
        res.assert_error_shape();
        assert!(
            res.text.contains("sign in as the invited email"),
            "{}",
            res.text
        );
        answers.push(res.text);
    }
    assert!(
        answers.iter().all(|a| *a == answers[0]),
        "one answer whatever the email: {answers:#?}"
    );
    assert_eq!(
        user_count(&app, &admin).await,
        users_before,
        "no account made"
    );
    for (email, password) in [
        (ADMIN_EMAIL, ADMIN_PASSWORD),
        ("carol@example.com", USER_PASSWORD),
    ] {
        login(&app, email, password).await;
    }
    for email in [ADMIN_EMAIL, "carol@example.com", "ceo@example.com"] {
        let res = call(
            &app,
            "POST",
            "/v1/auth/login",
            None,
            Some(&json!({ "email": email, "password": "mallory-chose-this-one" })),
        )
        .await;
        assert_eq!(res.status, 401, "{email}");
    }
    assert!(
        !audit_actions(&app, &admin).await.iter().any(|e| {
            e["action"] == "project.invitation.accept"
                || (e["action"] == "user.create" && e["details"]["invitationId"].is_string())
        }),
        "no account from an invitation, nobody joined"
    );

    // The invitee without an account: an administrator creates it, and the invitation waits
    // in its list, to accept from there (or with the token) once signed in. The owner's token
    // still makes and touches nothing.
    let inv = invite(&app, &mallory, &project, "dana@example.com", "owner").await;
    let created = post_as(
        &app,
        &admin,
        "/v1/users",
        json!({ "email": "dana@example.com" }),
    )
    .await;
    let set_password = created.expect(201)["data"]["inviteToken"].clone();
    new_account(&app, &set_password, USER_PASSWORD)
        .await
        .expect(200);
    let res = new_account(&app, &inv["inviteToken"], "mallory-chose-this-one").await;
    assert_eq!(res.status, 403, "{}", res.text);
    assert_eq!(res.text, answers[0]);
    let dana = login(&app, "dana@example.com", USER_PASSWORD).await;
    let mine = get_as(&app, &dana, "/v1/invitations").await;
    let mine = mine.expect(200);
    assert_eq!(mine["meta"]["total"], 1, "{mine}");
    let id = mine["data"][0]["id"].as_str().expect("id").to_owned();
    assert_eq!(id, inv["id"].as_str().expect("id"));
    let joined = post_as(
        &app,
        &dana,
        &format!("/v1/invitations/{id}/accept"),
        json!({}),
    )
    .await;
    assert_eq!(joined.expect(200)["data"]["role"], "owner");
    assert_eq!(
        member_emails(&app, &mallory, &project).await,
        ["dana@example.com", "mallory@example.com"]
    );
}

/// An instance admin's invitation may make the account of an email without one, as the
/// tokens of users admins create without a password do; it never touches an existing one.
#[tokio::test]
async fn an_admins_invitation_to_an_email_without_an_account_makes_it() {
    let (app, admin, owner, project) = project_with_owner().await;
    let inv = invite(&app, &admin, &project, "newbie@example.com", "member").await;
    let token = &inv["inviteToken"];
    let users_before = user_count(&app, &admin).await;
    new_account(&app, token, "short")
        .await
        .assert_invalid("password");
    assert_eq!(user_count(&app, &admin).await, users_before);
    let res = new_account(&app, token, USER_PASSWORD).await;
    let user = res.expect(200)["data"].clone();
    assert_eq!(user["email"], "newbie@example.com");
    assert_eq!(user["role"], "member");
    let session = login(&app, "newbie@example.com", USER_PASSWORD).await;
    let p = get_as(&app, &session, &format!("/v1/projects/{project}")).await;
    assert_eq!(p.expect(200)["data"]["role"], "member");
    assert_eq!(new_account(&app, token, USER_PASSWORD).await.status, 404);
    let created = audit_actions(&app, &admin)
        .await
        .into_iter()
        .find(|e| e["action"] == "user.create" && e["target"] == user["id"])
        .expect("an audit entry");
    assert_eq!(created["actor"], user["id"]);

    // For an email that has an account, the admin's token sets no password.
    let (_, carol) = user_session(&app, &admin, "carol@example.com").await;
    let inv = invite(&app, &admin, &project, "carol@example.com", "member").await;
    let res = new_account(&app, &inv["inviteToken"], "an-attackers-password").await;
    assert_eq!(res.status, 409, "{}", res.text);
    res.assert_error_shape();
    login(&app, "carol@example.com", USER_PASSWORD).await;
    assert_eq!(
        call(
            &app,
            "POST",
            "/v1/auth/login",
            None,
            Some(&json!({ "email": "carol@example.com", "password": "an-attackers-password" })),
        )
        .await
        .status,
        401
    );
    // The invitation still stands for Carol herself.
    accept(&app, Some(&carol), &inv["inviteToken"])
        .await
        .expect(200);
    assert_eq!(
        member_emails(&app, &owner, &project).await,
        [
            "carol@example.com",
            "newbie@example.com",
            "owner@example.com"
        ]
    );
}

/// Moves an invitation's expiry into the past.
async fn expire(app: &TestApp, id: &str) {
    let id = id.to_owned();
    app.state
        .store
        .run(move |c| {
            c.execute(
                "UPDATE project_invitations SET expires_at = 1 WHERE id = ?1",
                [&id],
            )
            .map_err(ezforge::store::StoreError::from)
        })
        .await
        .expect("expire");
}

#[tokio::test]
async fn withdrawn_expired_and_orphaned_invitations_cannot_be_used() {
    let (app, admin, owner, project) = project_with_owner().await;
    let (_, dave) = user_session(&app, &admin, "dave@example.com").await;

    // Withdrawn: the token is dead both ways.
    let inv = invite(&app, &owner, &project, "dave@example.com", "member").await;
    let id = inv["id"].as_str().expect("id");
    let path = format!("/v1/projects/{project}/invitations/{id}");
    let other = create_project(&app, &owner, "Elsewhere").await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    assert_eq!(
        delete_as(
            &app,
            &owner,
            &format!("/v1/projects/{other}/invitations/{id}")
        )
        .await
        .status,
        404,
        "not through another project"
    );
    delete_as(&app, &owner, &path).await.expect(204);
    assert_eq!(delete_as(&app, &owner, &path).await.status, 404);
    assert_eq!(
        accept(&app, Some(&dave), &inv["inviteToken"]).await.status,
        404
    );
    let ghost = invite(&app, &owner, &project, "ghost@example.com", "member").await;
    delete_as(
        &app,
        &owner,
        &format!(
            "/v1/projects/{project}/invitations/{}",
            ghost["id"].as_str().expect("id")
        ),
    )
    .await
    .expect(204);
    assert_eq!(
        new_account(&app, &ghost["inviteToken"], USER_PASSWORD)
            .await
            .status,
        404
    );
    assert!(
        audit_actions(&app, &admin)
            .await
            .iter()
            .any(|e| e["action"] == "project.invitation.withdraw" && e["target"] == id)
    );

    // Expired: refused, listed as expired, and replaced by a new invitation.
    let inv = invite(&app, &owner, &project, "dave@example.com", "member").await;
    expire(&app, inv["id"].as_str().expect("id")).await;
    assert_eq!(
        accept(&app, Some(&dave), &inv["inviteToken"]).await.status,
        404
    );
    assert_eq!(accept_id(&app, Some(&dave), &inv).await, 404);
    let list = get_as(&app, &owner, &format!("/v1/projects/{project}/invitations")).await;
    assert_eq!(list.expect(200)["data"][0]["status"], "expired");
    assert_eq!(
        get_as(&app, &dave, "/v1/invitations").await.body["meta"]["total"],
        0,
        "the invitee's list holds what can still be accepted"
    );
    let fresh = invite(&app, &owner, &project, "dave@example.com", "member").await;
    assert_ne!(fresh["id"], inv["id"]);
    let replaced = audit_actions(&app, &admin)
        .await
        .into_iter()
        .find(|e| e["action"] == "project.invitation.replace" && e["target"] == inv["id"])
        .expect("the replaced invitation is audited");
    assert_eq!(replaced["projectId"], project.as_str());
    assert_eq!(replaced["details"]["replacedBy"], fresh["id"]);
    assert_eq!(replaced["details"]["email"], "dave@example.com");
    assert_eq!(
        accept(&app, Some(&dave), &inv["inviteToken"]).await.status,
        404
    );

    // Orphaned: sent by an owner who has since been removed from the project (their
    // invitations are withdrawn with them), or who is no longer an owner (a role the store
    // changes here, as no endpoint does yet: the invitation is void, and may be replaced).
    let (co_id, co) = user_session(&app, &admin, "co-owner@example.com").await;
    add_member(&app, &owner, &project, "co-owner@example.com", "owner").await;
    let (_, erin) = user_session(&app, &admin, "erin@example.com").await;
    let by_co = invite(&app, &co, &project, "erin@example.com", "owner").await;
    let by_co_new = invite(&app, &co, &project, "frank@example.com", "owner").await;
    delete_as(
        &app,
        &owner,
        &format!("/v1/projects/{project}/members/{co_id}"),
    )
    .await
    .expect(204);
    assert_eq!(
        accept(&app, Some(&erin), &by_co["inviteToken"])
            .await
            .status,
        404
    );
    assert_eq!(accept_id(&app, Some(&erin), &by_co).await, 404);
    let withdrawn: Vec<Value> = audit_actions(&app, &admin)
        .await
        .into_iter()
        .filter(|e| {
            e["action"] == "project.invitation.withdraw"
                && e["details"]["reason"] == "sender removed from the project"
        })
        .map(|e| e["target"].clone())
        .collect();
    assert_eq!(withdrawn.len(), 2, "each audited: {withdrawn:?}");
    assert!(withdrawn.contains(&by_co["id"]) && withdrawn.contains(&by_co_new["id"]));
    assert_eq!(
        new_account(&app, &by_co_new["inviteToken"], USER_PASSWORD)
            .await
            .status,
        404
    );
    let list = get_as(&app, &owner, &format!("/v1/projects/{project}/invitations")).await;
    assert!(
        list.expect(200)["data"]
            .as_array()
            .expect("data")
            .iter()
            .all(|i| i["invitedBy"] != co_id.as_str()),
        "withdrawn with their sender"
    );
    let (demoted_id, demoted) = user_session(&app, &admin, "demoted@example.com").await;
    add_member(&app, &owner, &project, "demoted@example.com", "owner").await;
    let by_demoted = invite(&app, &demoted, &project, "erin@example.com", "owner").await;
    let pid = project.clone();
    app.state
        .store
        .run(move |c| {
            c.execute(
                "UPDATE project_members SET role = 'member' WHERE project_id = ?1 AND user_id = ?2",
                [&pid, &demoted_id],
            )
            .map_err(ezforge::store::StoreError::from)
        })
        .await
        .expect("demote");
    assert_eq!(
        accept(&app, Some(&erin), &by_demoted["inviteToken"])
            .await
            .status,
        404
    );
    assert_eq!(accept_id(&app, Some(&erin), &by_demoted).await, 404);

    // A member who is not an owner may neither invite, nor list, nor withdraw.
    add_member(&app, &owner, &project, "erin@example.com", "member").await;
    let members = format!("/v1/projects/{project}/members");
    let res = post_as(&app, &erin, &members, json!({ "email": "x@example.com" })).await;
    assert_eq!(res.status, 403, "{}", res.text);
    let res = get_as(&app, &erin, &format!("/v1/projects/{project}/invitations")).await;
    assert_eq!(res.status, 403);
    let res = delete_as(
        &app,
        &erin,
        &format!(
            "/v1/projects/{project}/invitations/{}",
            fresh["id"].as_str().expect("id")
        ),
    )
    .await;
    assert_eq!(res.status, 403);

    // A deleted project takes its invitations with it.
    let doomed = create_project(&app, &owner, "Doomed").await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let inv = invite(&app, &owner, &doomed, "dave@example.com", "member").await;
    delete_as(&app, &owner, &format!("/v1/projects/{doomed}"))
        .await
        .expect(204);
    assert_eq!(
        accept(&app, Some(&dave), &inv["inviteToken"]).await.status,
        404
    );
}

#[tokio::test]
async fn an_instance_admin_joins_like_anyone_and_invitees_may_decline() {
    let (app, admin, owner, project) = project_with_owner().await;
    // The admin sees every project, but is a member of this one only once they accept.
    let inv = invite(&app, &owner, &project, ADMIN_EMAIL, "member").await;
    let p = get_as(&app, &admin, &format!("/v1/projects/{project}")).await;
    assert_eq!(p.expect(200)["data"]["role"], Value::Null);
    accept(&app, Some(&admin), &inv["inviteToken"])
        .await
        .expect(200);
    let p = get_as(&app, &admin, &format!("/v1/projects/{project}")).await;
    assert_eq!(p.expect(200)["data"]["role"], "member");
    let _ = login(&app, ADMIN_EMAIL, ADMIN_PASSWORD).await;

    // Declining: only the invitee may, and the token dies with it.
    let (_, gina) = user_session(&app, &admin, "gina@example.com").await;
    let inv = invite(&app, &owner, &project, "gina@example.com", "member").await;
    let path = format!("/v1/invitations/{}", inv["id"].as_str().expect("id"));
    assert_eq!(delete_as(&app, &owner, &path).await.status, 404);
    delete_as(&app, &gina, &path).await.expect(204);
    assert_eq!(delete_as(&app, &gina, &path).await.status, 404);
    assert_eq!(
        accept(&app, Some(&gina), &inv["inviteToken"]).await.status,
        404
    );
    assert_eq!(
        member_emails(&app, &owner, &project).await,
        [ADMIN_EMAIL, "owner@example.com"]
    );
}

#[tokio::test]
async fn bad_invitation_requests_are_4xx_and_write_nothing() {
    let (app, admin, owner, project) = project_with_owner().await;
    let members = format!("/v1/projects/{project}/members");
    for (body, field) in [
        (json!({}), "email"),
        (json!({ "email": "" }), "email"),
        (
            json!({ "email": format!("{}@example.com", "a".repeat(250)) }),
            "email",
        ),
        (json!({ "email": "two@@example.com" }), "email"),
        (json!({ "email": "r@example.com", "role": "admin" }), "role"),
    ] {
        post_as(&app, &owner, &members, body)
            .await
            .assert_invalid(field);
    }
    for body in [
        json!({ "email": "r@example.com", "extra": 1 }),
        json!({ "email": 5 }),
        json!([]),
    ] {
        let res = post_as(&app, &owner, &members, body).await;
        assert_eq!(res.status, 400, "{}", res.text);
        res.assert_error_shape();
    }
    let key = create_key(&app, &owner, &project, &["servers:write"]).await;
    let res = post_as(&app, &key, &members, json!({ "email": "r@example.com" })).await;
    assert_eq!(res.status, 403, "API keys cannot invite");
    for body in [json!({ "token": 5 }), json!({ "token": "t", "x": 1 })] {
        let res = post_as(&app, &owner, "/v1/invitations/accept", body).await;
        assert_eq!(res.status, 400, "{}", res.text);
    }
    let list = get_as(&app, &owner, &format!("/v1/projects/{project}/invitations")).await;
    assert_eq!(list.expect(200)["meta"]["total"], 0, "nothing was written");
    assert_eq!(
        audit_actions(&app, &admin)
            .await
            .iter()
            .filter(|e| e["action"]
                .as_str()
                .is_some_and(|a| a.starts_with("project.invitation")))
            .count(),
        0
    );
}

/// Deleting a user withdraws the invitations they sent, each audited in its project.
#[tokio::test]
async fn a_deleted_users_invitations_are_withdrawn_and_audited() {
    let (app, admin, owner, project) = project_with_owner().await;
    let (leaver_id, leaver) = user_session(&app, &admin, "leaver@example.com").await;
    add_member(&app, &owner, &project, "leaver@example.com", "owner").await;
    let own = create_project(&app, &leaver, "Leaver's").await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let (_, hana) = user_session(&app, &admin, "hana@example.com").await;
    let sent = [
        invite(&app, &leaver, &project, "hana@example.com", "member").await,
        invite(&app, &leaver, &own, "hana@example.com", "member").await,
    ];
    let by_owner = invite(&app, &owner, &project, "ivan@example.com", "member").await;
    delete_as(&app, &admin, &format!("/v1/users/{leaver_id}"))
        .await
        .expect(204);
    for inv in &sent {
        assert_eq!(
            accept(&app, Some(&hana), &inv["inviteToken"]).await.status,
            404
        );
    }
    let entries = audit_actions(&app, &admin).await;
    for inv in &sent {
        let e = entries
            .iter()
            .find(|e| e["action"] == "project.invitation.withdraw" && e["target"] == inv["id"])
            .unwrap_or_else(|| panic!("{} is audited: {entries:#?}", inv["id"]));
        assert_eq!(e["projectId"], inv["projectId"]);
        assert_eq!(e["details"]["reason"], "sender deleted");
        assert_eq!(e["details"]["email"], "hana@example.com");
    }
    let deleted = entries
        .iter()
        .find(|e| e["action"] == "user.delete" && e["target"] == leaver_id.as_str())
        .expect("user.delete");
    assert_eq!(deleted["details"]["invitationsWithdrawn"], 2);
    // Other owners' invitations stay.
    let list = get_as(&app, &owner, &format!("/v1/projects/{project}/invitations")).await;
    let list = list.expect(200);
    assert_eq!(list["meta"]["total"], 1, "{list}");
    assert_eq!(list["data"][0]["id"], by_owner["id"]);
}
