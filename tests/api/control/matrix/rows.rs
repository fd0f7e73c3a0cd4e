//! The matrix rows, by resource: sessions, users, audit, projects, members, grants, keys,
//! servers, their auth config and clients, env vars; and the matrix again under `/api/v1`.

use super::*;

#[tokio::test]
async fn matrix_sessions_users_and_audit() {
    let login_body =
        r#"{"email": "admin@example.com", "password": "correct-horse-battery-staple"}"#;
    let rows = [
        row("GET", "/v1/health", None, Rule::Public(200)),
        row(
            "POST",
            "/v1/auth/login",
            Some(login_body),
            Rule::Public(200),
        ),
        row(
            "POST",
            "/v1/auth/invite",
            Some(r#"{"token": "{invite_token}", "password": "a-perfectly-fine-password"}"#),
            Rule::Public(200),
        ),
        // An admin's project invitation to an email without an account: the account is made.
        row(
            "POST",
            "/v1/auth/invite",
            Some(
                r#"{"token": "{admin_invitation_token}", "password": "a-perfectly-fine-password"}"#,
            ),
            Rule::Public(200),
        ),
        // An owner's makes none, whoever asks.
        row(
            "POST",
            "/v1/auth/invite",
            Some(r#"{"token": "{invitation_token}", "password": "a-perfectly-fine-password"}"#),
            Rule::Public(403),
        ),
        row("GET", "/v1/auth/session", None, Rule::Session(200)),
        Row {
            fresh_session: true,
            ..row("POST", "/v1/auth/logout", None, Rule::Session(204))
        },
        row("GET", "/v1/users", None, Rule::Admin(200)),
        row(
            "POST",
            "/v1/users",
            Some(r#"{"email": "new-{n}@example.com", "role": "member"}"#),
            Rule::Admin(201),
        ),
        row("DELETE", "/v1/users/{fresh_user}", None, Rule::Admin(204)),
        row("GET", "/v1/audit", None, Rule::Admin(200)),
    ];
    let mut world = World::new().await;
    assert_clean(world.run(&rows).await);
}

#[tokio::test]
async fn matrix_projects_and_members() {
    let rows = [
        row("GET", "/v1/projects", None, Rule::AnyCredential(200)),
        row(
            "POST",
            "/v1/projects",
            Some(r#"{"name": "Matrix {n}"}"#),
            Rule::Session(201),
        ),
        row(
            "PATCH",
            "/v1/projects/{project}",
            Some(r#"{"name": "Matrix Project"}"#),
            Rule::ProjectOwner(200),
        ),
        row(
            "DELETE",
            "/v1/projects/{fresh_project}",
            None,
            Rule::ProjectOwner(204),
        ),
        row(
            "GET",
            "/v1/projects/{project}/members",
            None,
            Rule::ProjectOwner(200),
        ),
        row(
            "POST",
            "/v1/projects/{project}/members",
            Some(r#"{"email": "{fresh_user_email}", "role": "member"}"#),
            Rule::ProjectOwner(201),
        ),
        row(
            "DELETE",
            "/v1/projects/{project}/members/{fresh_member}",
            None,
            Rule::ProjectOwner(204),
        ),
        row(
            "GET",
            "/v1/projects/{project}/invitations",
            None,
            Rule::ProjectOwner(200),
        ),
        row(
            "DELETE",
            "/v1/projects/{project}/invitations/{fresh_invitation}",
            None,
            Rule::ProjectOwner(204),
        ),
        row("GET", "/v1/invitations", None, Rule::Session(200)),
        // Addressed to someone else: no session may use or decline it.
        row(
            "POST",
            "/v1/invitations/accept",
            Some(r#"{"token": "{invitation_token}"}"#),
            Rule::Session(404),
        ),
        row(
            "POST",
            "/v1/invitations/{fresh_invitation}/accept",
            None,
            Rule::Session(404),
        ),
        row(
            "DELETE",
            "/v1/invitations/{fresh_invitation}",
            None,
            Rule::Session(404),
        ),
    ];
    let mut world = World::new().await;
    assert_clean(world.run(&rows).await);
}

/// docs/api.md: `GET /v1/projects/:projectId` is "session" (unlike `GET /v1/projects`, which
/// also takes "any API key (its own project only)"), so an API key gets 403 here.
#[tokio::test]
async fn matrix_get_one_project_is_session_only() {
    let rows = [row(
        "GET",
        "/v1/projects/{project}",
        None,
        Rule::ProjectSession(200),
    )];
    let mut world = World::new().await;
    assert_clean(world.run(&rows).await);
}

/// `GET /v1/grants`, `DELETE /v1/grants/:grantId`: session (a user's own grants; admins all).
/// Keys 403 whatever their scopes. (No grant exists here, so a DELETE by a session is a 404.)
#[tokio::test]
async fn matrix_grants() {
    let rows = [
        row("GET", "/v1/grants", None, Rule::Session(200)),
        row(
            "DELETE",
            "/v1/grants/grt_aaaaaaaaaaaaaaaaaaaaaaaa",
            None,
            Rule::Session(404),
        ),
    ];
    let mut world = World::new().await;
    assert_clean(world.run(&rows).await);
}

#[tokio::test]
async fn matrix_api_keys() {
    let rows = [
        row(
            "GET",
            "/v1/projects/{project}/keys",
            None,
            Rule::Scoped("servers:read", 200),
        ),
        row(
            "POST",
            "/v1/projects/{project}/keys",
            Some(r#"{"name": "k{n}", "scopes": ["servers:write"]}"#),
            Rule::Scoped("servers:write", 201),
        ),
        row(
            "DELETE",
            "/v1/keys/{fresh_key}",
            None,
            Rule::Scoped("servers:write", 204),
        ),
    ];
    let mut world = World::new().await;
    assert_clean(world.run(&rows).await);
}

#[tokio::test]
async fn matrix_servers() {
    let rows = [
        row(
            "GET",
            "/v1/servers",
            None,
            Rule::ScopedEverywhere("servers:read", 200),
        ),
        row(
            "GET",
            "/v1/projects/{project}/servers",
            None,
            Rule::Scoped("servers:read", 200),
        ),
        row(
            "POST",
            "/v1/projects/{project}/servers",
            Some(r#"{"name": "matrix server {n}"}"#),
            Rule::Scoped("servers:write", 201),
        ),
        row(
            "GET",
            "/v1/servers/{server}",
            None,
            Rule::Scoped("servers:read", 200),
        ),
        row(
            "PATCH",
            "/v1/servers/{server}",
            Some(r#"{"name": "Matrix Server"}"#),
            Rule::Scoped("servers:write", 200),
        ),
        row(
            "DELETE",
            "/v1/servers/{fresh_server}",
            None,
            Rule::Scoped("servers:write", 204),
        ),
    ];
    let mut world = World::new().await;
    assert_clean(world.run(&rows).await);
}

#[tokio::test]
async fn matrix_server_auth_and_clients_are_session_only() {
    let rows = [
        row(
            "GET",
            "/v1/servers/{server}/auth",
            None,
            Rule::ProjectSession(200),
        ),
        row(
            "PATCH",
            "/v1/servers/{server}/auth",
            Some(r#"{"authMode": "ezforge_managed"}"#),
            Rule::ProjectOwner(200),
        ),
        row(
            "GET",
            "/v1/servers/{server}/clients",
            None,
            Rule::ProjectSession(200),
        ),
        row(
            "POST",
            "/v1/servers/{server}/clients",
            Some(r#"{"name": "client {n}", "redirectUris": ["https://app.example.com/cb"]}"#),
            Rule::ProjectSession(201),
        ),
        row(
            "DELETE",
            "/v1/servers/{server}/clients/{fresh_client}",
            None,
            Rule::ProjectSession(204),
        ),
    ];
    let mut world = World::new().await;
    assert_clean(world.run(&rows).await);
}

#[tokio::test]
async fn matrix_env_vars() {
    let rows = [
        row(
            "GET",
            "/v1/servers/{server}/env",
            None,
            Rule::Scoped("servers:read", 200),
        ),
        row(
            "POST",
            "/v1/servers/{server}/env",
            Some(r#"{"name": "VAR_{n}", "value": "v"}"#),
            Rule::Scoped("deployments:write", 201),
        ),
        row(
            "PUT",
            "/v1/servers/{server}/env/PUT_{n}",
            Some(r#"{"value": "v"}"#),
            Rule::Scoped("deployments:write", 201),
        ),
        row(
            "DELETE",
            "/v1/servers/{server}/env/{fresh_env}",
            None,
            Rule::Scoped("deployments:write", 204),
        ),
    ];
    let mut world = World::new().await;
    assert_clean(world.run(&rows).await);
}

/// The same matrix rows answer identically under `/api/v1` (a sample across the rules).
#[tokio::test]
async fn matrix_holds_under_api_v1() {
    let rows = [
        row("GET", "/api/v1/projects", None, Rule::AnyCredential(200)),
        row("GET", "/api/v1/users", None, Rule::Admin(200)),
        row(
            "GET",
            "/api/v1/projects/{project}/members",
            None,
            Rule::ProjectOwner(200),
        ),
        row(
            "GET",
            "/api/v1/servers/{server}",
            None,
            Rule::Scoped("servers:read", 200),
        ),
        row(
            "DELETE",
            "/api/v1/keys/{fresh_key}",
            None,
            Rule::Scoped("servers:write", 204),
        ),
        row(
            "GET",
            "/api/v1/servers/{server}/clients",
            None,
            Rule::ProjectSession(200),
        ),
    ];
    let mut world = World::new().await;
    assert_clean(world.run(&rows).await);
}
