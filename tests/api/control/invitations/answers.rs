//! What an invitation answers and who may accept it.

use super::*;

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
