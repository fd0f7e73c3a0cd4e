//! The scope matrix: every control API endpoint x every kind of caller, against the status codes
//! of docs/api.md. Table-driven: a row is (method, path template, body template, rule); the rule gives
//! the expected status for each caller. Objects a row destroys are made fresh for each cell.

use std::collections::HashMap;

use serde_json::{Value, json};

use crate::helpers::{
    ADMIN_EMAIL, ADMIN_PASSWORD, ApiResponse, TestApp, USER_PASSWORD, add_member, admin_token,
    call, create_key, create_project, create_server, create_user, invite, invite_user, login,
    post_as, put_as, user_session,
};

mod rows;
mod visibility;

const SCOPES: [&str; 7] = [
    "servers:read",
    "servers:write",
    "deployments:read",
    "deployments:write",
    "logs:read",
    "metrics:read",
    "billing:read",
];

/// The callers of the matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Who {
    /// No credentials at all.
    Anonymous,
    /// A signed-in user who is not a member of the project (a member of another one).
    NonMember,
    /// A signed-in user added to the project as `member`.
    Member,
    /// The (non-admin) user who created the project.
    Owner,
    /// The admin (sees every project, not a member).
    Admin,
    /// An API key of another project, holding every scope.
    OtherKey,
    /// An API key of the project holding exactly this scope.
    Key(&'static str),
}

fn everyone() -> Vec<Who> {
    let mut v = vec![
        Who::Anonymous,
        Who::NonMember,
        Who::Member,
        Who::Owner,
        Who::Admin,
        Who::OtherKey,
    ];
    v.extend(SCOPES.iter().map(|s| Who::Key(s)));
    v
}

/// Who may do what, per docs/api.md.
#[derive(Clone, Copy, Debug)]
enum Rule {
    /// Anyone, with or without credentials.
    Public(u16),
    /// Any session; API keys 403.
    Session(u16),
    /// Any session, or any API key (`GET /v1/projects`).
    AnyCredential(u16),
    /// Admin sessions only.
    Admin(u16),
    /// Sessions that can see the project; API keys 403 ("session only").
    ProjectSession(u16),
    /// Owner (or admin) sessions; a member 403; API keys 403.
    ProjectOwner(u16),
    /// Sessions that can see the project, or a key of the project with the scope.
    Scoped(&'static str, u16),
    /// Like `Scoped`, but not bound to one project (`GET /v1/servers`): every session, and
    /// every key with the scope, gets an answer about what it can see.
    ScopedEverywhere(&'static str, u16),
}

fn expected(rule: Rule, who: Who) -> u16 {
    use Who::*;
    if let Rule::Public(ok) = rule {
        return ok;
    }
    if who == Anonymous {
        return 401;
    }
    let is_key = matches!(who, OtherKey | Key(_));
    match rule {
        Rule::Public(ok) => ok,
        Rule::Session(ok) => {
            if is_key {
                403
            } else {
                ok
            }
        }
        Rule::AnyCredential(ok) => ok,
        Rule::Admin(ok) => match who {
            Admin => ok,
            _ => 403,
        },
        Rule::ProjectSession(ok) => match who {
            OtherKey | Key(_) => 403,
            NonMember => 404,
            _ => ok,
        },
        Rule::ProjectOwner(ok) => match who {
            OtherKey | Key(_) => 403,
            NonMember => 404,
            Member => 403,
            _ => ok,
        },
        Rule::Scoped(scope, ok) => match who {
            Key(s) if s != scope => 403,
            OtherKey | NonMember => 404,
            _ => ok,
        },
        Rule::ScopedEverywhere(scope, ok) => match who {
            Key(s) if s != scope => 403,
            _ => ok,
        },
    }
}

/// The scope a 403 must name in `details.requiredScope`, if any.
fn required_scope(rule: Rule, who: Who) -> Option<&'static str> {
    match (rule, who) {
        (Rule::Scoped(scope, _) | Rule::ScopedEverywhere(scope, _), Who::Key(s)) if s != scope => {
            Some(scope)
        }
        _ => None,
    }
}

struct Row {
    method: &'static str,
    path: &'static str,
    body: Option<&'static str>,
    rule: Rule,
    /// Sessions sign in afresh for each cell (the request ends the session).
    fresh_session: bool,
}

const fn row(
    method: &'static str,
    path: &'static str,
    body: Option<&'static str>,
    rule: Rule,
) -> Row {
    Row {
        method,
        path,
        body,
        rule,
        fresh_session: false,
    }
}

/// Everyone and everything the matrix needs, in one app.
struct World {
    app: TestApp,
    admin: String,
    owner: String,
    owner_email: String,
    member: String,
    member_email: String,
    nonmember: String,
    nonmember_email: String,
    other_key: String,
    keys: HashMap<&'static str, String>,
    project: String,
    server: String,
    n: usize,
}

impl World {
    async fn new() -> World {
        let app = TestApp::builder()
            .config(|c| {
                c.control.rate_limit.per_minute = 1_000_000;
                c.control.rate_limit.burst = 1_000_000;
            })
            .spawn()
            .await;
        let admin = admin_token(&app).await;
        let (_, owner) = user_session(&app, &admin, "owner@example.com").await;
        let (_, member) = user_session(&app, &admin, "member@example.com").await;
        let (_, nonmember) = user_session(&app, &admin, "outsider@example.com").await;
        let project = create_project(&app, &owner, "Matrix Project").await["id"]
            .as_str()
            .expect("project id")
            .to_owned();
        add_member(&app, &owner, &project, "member@example.com", "member").await;
        // The outsider belongs to a project of their own, with a key holding every scope.
        let other = create_project(&app, &nonmember, "Other Project").await["id"]
            .as_str()
            .expect("id")
            .to_owned();
        let other_key = create_key(&app, &nonmember, &other, &SCOPES).await;
        let mut keys = HashMap::new();
        for s in SCOPES {
            keys.insert(s, create_key(&app, &owner, &project, &[s]).await);
        }
        let server = create_server(&app, &owner, &project, "Matrix Server").await["id"]
            .as_str()
            .expect("server id")
            .to_owned();
        World {
            app,
            admin,
            owner,
            owner_email: "owner@example.com".into(),
            member,
            member_email: "member@example.com".into(),
            nonmember,
            nonmember_email: "outsider@example.com".into(),
            other_key,
            keys,
            project,
            server,
            n: 0,
        }
    }

    async fn token(&self, who: Who, fresh: bool) -> Option<String> {
        let session = |email: &str, token: &str| {
            let email = email.to_owned();
            let token = token.to_owned();
            async move {
                if fresh {
                    let pw = if email == ADMIN_EMAIL {
                        ADMIN_PASSWORD
                    } else {
                        USER_PASSWORD
                    };
                    login(&self.app, &email, pw).await
                } else {
                    token
                }
            }
        };
        Some(match who {
            Who::Anonymous => return None,
            Who::NonMember => session(&self.nonmember_email, &self.nonmember).await,
            Who::Member => session(&self.member_email, &self.member).await,
            Who::Owner => session(&self.owner_email, &self.owner).await,
            Who::Admin => session(ADMIN_EMAIL, &self.admin).await,
            Who::OtherKey => self.other_key.clone(),
            Who::Key(s) => self.keys[s].clone(),
        })
    }

    /// Replaces the placeholders of a path or body template, making fresh objects as needed.
    async fn expand(&mut self, path: &str, body: Option<&str>) -> (String, Option<Value>) {
        self.n += 1;
        let n = self.n;
        let all = format!("{path} {}", body.unwrap_or(""));
        let mut subst: Vec<(&str, String)> = vec![
            ("{project}", self.project.clone()),
            ("{server}", self.server.clone()),
            ("{n}", n.to_string()),
        ];
        let app = &self.app;
        if all.contains("{fresh_project}") {
            let p = create_project(app, &self.owner, &format!("Doomed {n}")).await;
            let id = p["id"].as_str().expect("id").to_owned();
            add_member(app, &self.owner, &id, &self.member_email, "member").await;
            subst.push(("{fresh_project}", id));
        }
        if all.contains("{fresh_member}") {
            let email = format!("fresh-member-{n}@example.com");
            let (id, _) = create_user(app, &self.admin, &email, "member").await;
            add_member(app, &self.owner, &self.project, &email, "member").await;
            subst.push(("{fresh_member}", id));
        }
        if all.contains("{fresh_user}") {
            let (id, _) =
                invite_user(app, &self.admin, &format!("fresh-user-{n}@example.com")).await;
            subst.push(("{fresh_user}", id));
        }
        if all.contains("{fresh_user_email}") {
            let email = format!("fresh-invitee-{n}@example.com");
            invite_user(app, &self.admin, &email).await;
            subst.push(("{fresh_user_email}", email));
        }
        if all.contains("{invite_token}") {
            let (_, token) =
                invite_user(app, &self.admin, &format!("invited-{n}@example.com")).await;
            subst.push(("{invite_token}", token));
        }
        if all.contains("{fresh_invitation}") || all.contains("{invitation_token}") {
            let email = format!("fresh-invited-{n}@example.com");
            let inv = invite(app, &self.owner, &self.project, &email, "member").await;
            subst.push((
                "{fresh_invitation}",
                inv["id"].as_str().expect("id").to_owned(),
            ));
            subst.push((
                "{invitation_token}",
                inv["inviteToken"].as_str().expect("token").to_owned(),
            ));
        }
        if all.contains("{admin_invitation_token}") {
            let email = format!("admin-invited-{n}@example.com");
            let inv = invite(app, &self.admin, &self.project, &email, "member").await;
            subst.push((
                "{admin_invitation_token}",
                inv["inviteToken"].as_str().expect("token").to_owned(),
            ));
        }
        if all.contains("{fresh_key}") {
            let res = post_as(
                app,
                &self.owner,
                &format!("/v1/projects/{}/keys", self.project),
                json!({ "name": format!("doomed {n}"), "scopes": ["servers:read"] }),
            )
            .await;
            let id = res.expect(201)["data"]["id"]
                .as_str()
                .expect("id")
                .to_owned();
            subst.push(("{fresh_key}", id));
        }
        if all.contains("{fresh_server}") {
            let s = create_server(app, &self.owner, &self.project, &format!("doomed {n}")).await;
            subst.push(("{fresh_server}", s["id"].as_str().expect("id").to_owned()));
        }
        if all.contains("{fresh_client}") {
            let res = post_as(
                app,
                &self.owner,
                &format!("/v1/servers/{}/clients", self.server),
                json!({ "name": format!("doomed {n}"), "redirectUris": ["https://app.example.com/cb"] }),
            )
            .await;
            let data = &res.expect(201)["data"];
            // Both forms of the id are accepted; alternate between them.
            let id = if n.is_multiple_of(2) {
                &data["id"]
            } else {
                &data["clientId"]
            };
            subst.push(("{fresh_client}", id.as_str().expect("id").to_owned()));
        }
        if all.contains("{fresh_env}") {
            let name = format!("DOOMED_{n}");
            put_as(
                app,
                &self.owner,
                &format!("/v1/servers/{}/env/{name}", self.server),
                json!({ "value": "x" }),
            )
            .await
            .expect(201);
            subst.push(("{fresh_env}", name));
        }
        let apply = |t: &str| {
            let mut t = t.to_owned();
            for (k, v) in &subst {
                t = t.replace(k, v);
            }
            t
        };
        let body = body.map(|b| {
            let text = apply(b);
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("bad body template {text}: {e}"))
        });
        (apply(path), body)
    }

    /// Runs every row for every caller; returns one line per cell that differs from the rule.
    async fn run(&mut self, rows: &[Row]) -> Vec<String> {
        let mut failures = Vec::new();
        for r in rows {
            for who in everyone() {
                let (path, body) = self.expand(r.path, r.body).await;
                let token = self.token(who, r.fresh_session).await;
                let res = call(&self.app, r.method, &path, token.as_deref(), body.as_ref()).await;
                let want = expected(r.rule, who);
                let cell = format!("{} {} as {who:?}", r.method, r.path);
                if let Some(problem) = check(&res, want, required_scope(r.rule, who)) {
                    failures.push(format!("{cell}: {problem}"));
                }
            }
        }
        failures
    }
}

/// Compares one answer with what the rule expects; `None` when it matches.
fn check(res: &ApiResponse, want: u16, scope: Option<&str>) -> Option<String> {
    if res.status != want {
        return Some(format!(
            "expected {want}, got {} ({})",
            res.status,
            truncate(&res.text)
        ));
    }
    for h in [
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "x-ratelimit-reset",
    ] {
        if res.header(h).is_none() {
            return Some(format!("missing header {h}"));
        }
    }
    let code = match want {
        401 => "UNAUTHENTICATED",
        403 => "FORBIDDEN",
        404 => "NOT_FOUND",
        _ => return None,
    };
    let e = &res.body["error"];
    if e["code"] != code || !e["message"].is_string() || !e["details"].is_object() {
        return Some(format!(
            "error shape/code, want {code}: {}",
            truncate(&res.text)
        ));
    }
    if let Some(scope) = scope
        && e["details"]["requiredScope"] != scope
    {
        return Some(format!(
            "details.requiredScope must be {scope}: {}",
            truncate(&res.text)
        ));
    }
    None
}

fn truncate(s: &str) -> String {
    s.chars().take(300).collect()
}

fn assert_clean(failures: Vec<String>) {
    assert!(
        failures.is_empty(),
        "{} cell(s) differ from docs/api.md:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
