//! Withdrawn, expired, orphaned, declined and deleted users' invitations; bad requests.

use super::*;

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
    // No API demotes a member (removal withdraws what they sent); a sender demoted in the
    // database is what accepting must still check.
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
