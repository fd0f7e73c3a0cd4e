//! The authorization server, happy paths: the whole flow over HTTP, tokens and their claims,
//! refresh, consent, clients (pre-registered, dynamic, confidential), revocation, introspection,
//! JWKS, metadata.

use serde_json::{Value, json};

use crate::helpers::ApiResponse;
use crate::helpers::{ADMIN_EMAIL, ADMIN_PASSWORD, add_member, invite};
use crate::oauth::browser::*;

mod authorization;
mod clients;
mod metadata_grants;

fn public(id: &str) -> ClientAuth {
    ClientAuth::Public(id.to_owned())
}

/// A JSON POST with an optional bearer token.
async fn post_json(w: &World, path: &str, bearer: Option<&str>, body: Value) -> ApiResponse {
    send(w, "POST", &w.app.url(path), bearer, Some(body)).await
}

async fn send(
    w: &World,
    method: &str,
    url: &str,
    bearer: Option<&str>,
    body: Option<Value>,
) -> ApiResponse {
    let _ = w;
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut req = bare_client().request(method, url);
    if let Some(t) = bearer {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    ApiResponse::read(req.send().await.expect("request")).await
}

enum Deleted {
    Client,
    Server,
}

/// A server `phoenix` in `project`, served by `upstream`; its id.
async fn phoenix(
    app: &crate::helpers::TestApp,
    admin: &str,
    project: &str,
    upstream: &str,
) -> String {
    let server = crate::helpers::create_server(app, admin, project, "phoenix").await;
    let sid = server["id"].as_str().expect("id").to_owned();
    crate::helpers::patch_as(
        app,
        admin,
        &format!("/v1/servers/{sid}"),
        json!({ "upstreamUrl": upstream }),
    )
    .await
    .expect(200);
    sid
}

/// A client_credentials token stays refused after its client (or its whole server, whose slug
/// is then taken by a new server) is deleted, and after a restart.
async fn machine_token_refused_after(deleted: Deleted) {
    use crate::helpers::{TestApp, admin_token, create_project, delete_as, post_as};
    // A fixed public URL: tokens issued before the restart name the same resource after it.
    let public_url = "http://127.0.0.1:9";
    let fixed = |c: &mut ezforge::Config| c.server.public_url = Some(public_url.into());
    let mut app = TestApp::builder().config(fixed).spawn().await;
    let up = crate::fakes::FakeUpstream::start().await;
    let admin = admin_token(&app).await;
    let project = create_project(&app, &admin, "Restarts").await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let sid = phoenix(&app, &admin, &project, &up.url).await;
    let client = post_as(
        &app,
        &admin,
        &format!("/v1/servers/{sid}/clients"),
        json!({ "name": "agent", "redirectUris": ["https://agent.example/cb"], "confidential": true }),
    )
    .await
    .expect(201)["data"]
        .clone();
    let resource = format!("{public_url}/mcp/phoenix");
    let reply = token(
        &app,
        &ClientAuth::Basic(
            client["clientId"].as_str().expect("id").to_owned(),
            client["clientSecret"].as_str().expect("secret").to_owned(),
        ),
        &[
            ("grant_type", "client_credentials"),
            ("resource", &resource),
        ],
    )
    .await;
    reply.assert_ok();
    let access = reply.access_token();
    let call = |app: &TestApp| {
        app.client
            .post(app.url("/mcp/phoenix"))
            .bearer_auth(&access)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#)
            .send()
    };
    assert_eq!(call(&app).await.expect("call").status(), 200);
    match deleted {
        Deleted::Client => {
            let cid = client["id"].as_str().expect("id");
            delete_as(&app, &admin, &format!("/v1/servers/{sid}/clients/{cid}"))
                .await
                .expect(204);
        }
        Deleted::Server => {
            delete_as(&app, &admin, &format!("/v1/servers/{sid}"))
                .await
                .expect(204);
            // The slug is taken again: same URL, so the old token's audience matches.
            phoenix(&app, &admin, &project, &up.url).await;
        }
    }
    assert_eq!(call(&app).await.expect("call").status(), 401);

    // The rows are gone; the revocation is not.
    let tmp = app.take_tempdir().expect("tmp");
    let dir = app.data_dir.clone();
    app.stop().await;
    let app = TestApp::builder_in(&dir).config(fixed).spawn().await;
    assert_eq!(
        call(&app).await.expect("call").status(),
        401,
        "after the restart"
    );
    drop(tmp);
}
