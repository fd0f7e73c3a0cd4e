//! Issue 18: project membership by invitation. Adding a member invites an email; the answer
//! says nothing about whether an account has it; only the invitee, signed in as that email (or
//! making the account the invitation is for), joins.

use serde_json::{Value, json};

use crate::helpers::{
    ADMIN_EMAIL, ADMIN_PASSWORD, TestApp, USER_PASSWORD, add_member, admin_token, call, create_key,
    create_project, create_user, delete_as, get_as, invite, login, post_as, roomy, user_session,
};

mod answers;
mod lifecycle;

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
