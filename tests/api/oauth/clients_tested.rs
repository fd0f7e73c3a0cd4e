//! Issue 19: the MCP clients people use, replayed with the requests they really send (as their
//! public issue trackers record them), each from the bare MCP URL to a tool call through the
//! front door: discovery from the 401, registration (dynamic, or a metadata document served
//! over https), the authorization request, our login and consent forms, the token requests.
//!
//! Sources of each shape (where a detail is not recorded, the test says what it assumes):
//! - Claude Code: claude-code #10572 and #90497 (no `resource` at /authorize nor /token; the
//!   AS's `scopes_supported` as its scope, `prompt=consent`), #52871 (`resource` with a trailing
//!   slash), #37747/#42301 (its metadata document `https://claude.ai/oauth/claude-code-client-metadata`
//!   with port-less loopback redirect URIs, `http://localhost:PORT/callback` used), fastmcp #4265
//!   (refresh with `resource` and `client_id`), #91641/#85236 (processes sharing one refresh
//!   token refresh at once).
//! - Codex: codex #24890 (no `resource`); its registration (`application_type: "native"`,
//!   `http://127.0.0.1:PORT/callback/{id}`) as elmo #684 logged it.
//! - Cursor: its registration of three redirect URIs, `cursor://anysphere.cursor-mcp/oauth/callback`
//!   first, without `application_type` (accounted #2225, openwork #3059).
//! - ChatGPT: its metadata document (django-oauth-toolkit #1845/#1857, Altinity #118):
//!   `private_key_jwt`, `token_endpoint_auth_methods_supported: ["none", "private_key_jwt"]`,
//!   RS256, `jwks_uri`; its redirect URI.
//! - VS Code: registration with `http://127.0.0.1:33418` and `https://vscode.dev/redirect`
//!   (contextstream #57, zeptonow #39), `resource` sent (vscode #252892).
//! - claude.ai: registration with `https://claude.ai/api/mcp/auth_callback`, no
//!   `application_type`; `resource` as the bare origin (the issue); refreshes from two nodes
//!   replaying a just-rotated token (fastmcp #4264).
//! - MCP Inspector: its registration (`http://localhost:6274/oauth/callback` and `/debug`,
//!   `client_uri`), the challenge's scope, `resource` exactly.

use serde_json::{Value, json};

use crate::fakes::{ClientKey, DocServer};
use crate::helpers::ApiResponse;
use crate::oauth::browser::*;

/// What a client learns from the bare MCP URL: the 401's scope, the protected-resource
/// metadata and its authorization server's metadata (RFC 8414, path inserted).
pub struct Discovered {
    pub challenge_scope: String,
    pub prm: Value,
    pub issuer: String,
    pub meta: Value,
}

impl Discovered {
    pub fn endpoint(&self, name: &str) -> String {
        self.meta[name].as_str().expect(name).to_owned()
    }

    /// The path of one of the issuer's endpoints on the test server.
    pub fn path(&self, name: &str) -> String {
        url::Url::parse(&self.endpoint(name))
            .expect("endpoint")
            .path()
            .to_owned()
    }
}

pub async fn discover(w: &World) -> Discovered {
    let res = bare_client()
        .post(&w.resource)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{}}).to_string())
        .send()
        .await
        .expect("front door");
    assert_eq!(res.status(), 401);
    let www = res
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .expect("challenge")
        .to_owned();
    let param = |name: &str| {
        let start = www.find(&format!("{name}=\"")).expect(name) + name.len() + 2;
        www[start..start + www[start..].find('"').expect("quote")].to_owned()
    };
    let prm: Value = bare_client()
        .get(param("resource_metadata"))
        .send()
        .await
        .expect("prm")
        .json()
        .await
        .expect("prm json");
    let issuer = prm["authorization_servers"][0]
        .as_str()
        .expect("issuer")
        .to_owned();
    let u = url::Url::parse(&issuer).expect("issuer url");
    let meta_url = format!(
        "{}/.well-known/oauth-authorization-server{}",
        u.origin().ascii_serialization(),
        u.path()
    );
    let meta: Value = bare_client()
        .get(&meta_url)
        .send()
        .await
        .expect("metadata")
        .json()
        .await
        .expect("metadata json");
    assert_eq!(meta["issuer"], issuer, "RFC 8414 §3.3: the same issuer");
    Discovered {
        challenge_scope: param("scope"),
        prm,
        issuer,
        meta,
    }
}

/// Registers at the discovered registration endpoint with a client's own body.
pub async fn register(d: &Discovered, body: Value) -> ApiResponse {
    ApiResponse::read(
        bare_client()
            .post(d.endpoint("registration_endpoint"))
            .json(&body)
            .send()
            .await
            .expect("register"),
    )
    .await
}

/// Signs in and consents at the discovered authorization endpoint.
pub async fn sign_in(w: &World, d: &Discovered, req: &AuthRequest) -> Outcome {
    authorize_url(
        &w.browser(),
        &req.url_at(&d.endpoint("authorization_endpoint")),
        &Person::admin(),
    )
    .await
}

/// `tools/list`, then a read-only tool through the front door: both answered by the upstream.
pub async fn call_a_tool(w: &World, token: &str) {
    let (status, body) = tools_list(&w.resource, token).await;
    assert_eq!(status, 200, "tools/list: {body}");
    let res = bare_client()
        .post(&w.resource)
        .bearer_auth(token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(
            json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"get_weather","arguments":{}}})
                .to_string(),
        )
        .send()
        .await
        .expect("tools/call");
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["result"]["echo"], "tools/call", "{body}");
}

fn without_resource(client_id: &str, redirect_uri: &str) -> AuthRequest {
    AuthRequest::new(client_id, redirect_uri, "").without("resource")
}

/// The whole flow's code exchange at the discovered token endpoint.
async fn exchange_at(
    w: &World,
    d: &Discovered,
    auth: &ClientAuth,
    req: &AuthRequest,
    code: &str,
    extra: &[(&str, &str)],
) -> ApiResponse {
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", req.redirect_uri()),
        ("code_verifier", req.verifier.as_str()),
    ];
    form.extend_from_slice(extra);
    post_endpoint(&w.app, &d.path("token_endpoint"), auth, &form).await
}

async fn refresh_at(
    w: &World,
    d: &Discovered,
    auth: &ClientAuth,
    token: &str,
    extra: &[(&str, &str)],
) -> ApiResponse {
    let mut form = vec![("grant_type", "refresh_token"), ("refresh_token", token)];
    form.extend_from_slice(extra);
    post_endpoint(&w.app, &d.path("token_endpoint"), auth, &form).await
}

fn aud_of(token: &str) -> Value {
    jwt_parts(token).1["aud"].clone()
}

async fn docs_world(docs: &DocServer) -> World {
    let ca = docs.ca_file.clone();
    world_with(move |c| {
        c.outbound.allow_private_addresses = true;
        c.outbound.ca_files = vec![ca];
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn claude_code_metadata_document_without_resource() {
    let docs = DocServer::start().await;
    let path = "/oauth/claude-code-client-metadata";
    let client_id = format!("{}{path}", docs.origin);
    docs.set(
        path,
        json!({
            "client_id": client_id,
            "client_name": "Claude Code",
            "redirect_uris": ["http://localhost/callback", "http://127.0.0.1/callback"],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
        }),
    );
    let w = docs_world(&docs).await;
    let d = discover(&w).await;
    assert_eq!(d.meta["client_id_metadata_document_supported"], true);
    // Every scope the authorization server lists, prompt=consent, no resource.
    let scope: Vec<&str> = d.meta["scopes_supported"]
        .as_array()
        .expect("scopes")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let req = without_resource(&client_id, "http://localhost:54545/callback")
        .scope(&scope.join(" "))
        .set("prompt", "consent");
    let out = sign_in(&w, &d, &req).await;
    assert_eq!(out.iss.as_deref(), Some(d.issuer.as_str()), "RFC 9207");
    let code = out.code();
    let auth = ClientAuth::Public(client_id.clone());
    let reply = exchange_at(&w, &d, &auth, &req, &code, &[]).await;
    reply.assert_ok();
    assert_eq!(aud_of(&reply.access_token()), json!(w.resource));
    let (_, claims) = jwt_parts(&reply.access_token());
    assert_eq!(claims["iss"], d.issuer);
    assert!(reply.body["id_token"].is_string(), "openid: {}", reply.text);
    call_a_tool(&w, &reply.access_token()).await;

    // A refresh naming the resource with a trailing slash (claude-code #52871), then two
    // processes refreshing with the same token at once: both get the same successor.
    let slash = format!("{}/", w.resource);
    let r1 = reply.refresh_token();
    let extra = [
        ("resource", slash.as_str()),
        ("client_id", client_id.as_str()),
    ];
    let (a, b) = tokio::join!(
        refresh_at(&w, &d, &ClientAuth::None, &r1, &extra),
        refresh_at(&w, &d, &ClientAuth::None, &r1, &extra),
    );
    a.assert_ok();
    b.assert_ok();
    assert_eq!(
        a.refresh_token(),
        b.refresh_token(),
        "the family never branches"
    );
    assert_eq!(aud_of(&b.access_token()), json!(w.resource));
    call_a_tool(&w, &b.access_token()).await;
    // The successor works on.
    let next = refresh_at(&w, &d, &ClientAuth::None, &a.refresh_token(), &extra).await;
    next.assert_ok();
    call_a_tool(&w, &next.access_token()).await;
}

#[tokio::test]
async fn codex_registers_natively_and_sends_no_resource() {
    let w = world().await;
    let d = discover(&w).await;
    let redirect = "http://127.0.0.1:37819/callback/6MFBM1In3Ey-";
    let reg = register(
        &d,
        json!({
            "client_name": "Codex",
            "redirect_uris": [redirect],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
            "application_type": "native",
        }),
    )
    .await;
    assert_eq!(reg.status, 201, "{}", reg.text);
    let client_id = reg.str("client_id");
    // Assumed: no scope either (the server's base scope is granted).
    let req = without_resource(&client_id, redirect);
    let code = sign_in(&w, &d, &req).await.code();
    let reply = exchange_at(&w, &d, &ClientAuth::Public(client_id), &req, &code, &[]).await;
    reply.assert_ok();
    assert_eq!(reply.body["scope"], "mcp:read");
    assert!(
        reply.body["refresh_token"].is_string(),
        "registered the grant"
    );
    assert_eq!(aud_of(&reply.access_token()), json!(w.resource));
    call_a_tool(&w, &reply.access_token()).await;
}

#[tokio::test]
async fn cursor_registers_its_own_scheme_and_gets_codes_and_errors_there() {
    let w = world().await;
    let d = discover(&w).await;
    let cursor = "cursor://anysphere.cursor-mcp/oauth/callback";
    let reg = register(
        &d,
        json!({
            "client_name": "Cursor",
            "redirect_uris": [cursor, "https://www.cursor.com/agents/mcp/oauth/callback", "http://localhost:8787/callback"],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
        }),
    )
    .await;
    assert_eq!(reg.status, 201, "{}", reg.text);
    assert_eq!(reg.body["application_type"], "native", "{}", reg.text);
    let client_id = reg.str("client_id");
    // An error once the client and redirect are known goes back to Cursor, not to a page.
    let bad =
        AuthRequest::new(&client_id, cursor, &w.resource).set("code_challenge_method", "plain");
    let out = sign_in(&w, &d, &bad).await;
    out.assert_redirect_error("invalid_request", &bad, &d.issuer);
    assert!(
        out.redirect
            .as_ref()
            .is_some_and(|u| u.as_str().starts_with(cursor)),
        "{}",
        out.describe()
    );
    let req = AuthRequest::new(&client_id, cursor, &w.resource);
    let out = sign_in(&w, &d, &req).await;
    let to = out.redirect.clone().expect("redirect");
    assert!(to.as_str().starts_with(&format!("{cursor}?")), "{to}");
    let reply = exchange_at(
        &w,
        &d,
        &ClientAuth::Public(client_id),
        &req,
        &out.code(),
        &[],
    )
    .await;
    reply.assert_ok();
    call_a_tool(&w, &reply.access_token()).await;
}

#[tokio::test]
async fn chatgpt_authenticates_with_private_key_jwt_from_its_jwks_uri() {
    let docs = DocServer::start().await;
    let key = ClientKey::generate(jsonwebtoken::Algorithm::RS256, "chatgpt-2026");
    let jwks_uri = docs.set("/oauth/jwks.json", key.jwks());
    let client_id = format!("{}/oauth/client.json", docs.origin);
    let redirect = "https://chatgpt.com/connector_platform_oauth_redirect";
    docs.set(
        "/oauth/client.json",
        json!({
            "client_id": client_id,
            "client_uri": "https://chatgpt.com/",
            "redirect_uris": [redirect],
            "token_endpoint_auth_method": "private_key_jwt",
            "token_endpoint_auth_methods_supported": ["none", "private_key_jwt"],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "client_name": "ChatGPT",
            "token_endpoint_auth_signing_alg": "RS256",
            "jwks_uri": jwks_uri,
        }),
    );
    let w = docs_world(&docs).await;
    let d = discover(&w).await;
    let methods = d.meta["token_endpoint_auth_methods_supported"].to_string();
    assert!(methods.contains("private_key_jwt"), "{methods}");
    assert!(
        d.meta["token_endpoint_auth_signing_alg_values_supported"]
            .to_string()
            .contains("RS256")
    );
    // Assumed: ChatGPT names the resource and asks for the challenge's scope.
    let req = AuthRequest::new(&client_id, redirect, &w.resource).scope(&d.challenge_scope);
    let code = sign_in(&w, &d, &req).await.code();
    let token_endpoint = d.endpoint("token_endpoint");
    let jwt = key.assertion(&client_id, &token_endpoint, |_| {});
    let auth = ClientAuth::Assertion(client_id.clone(), jwt.clone());
    let reply = exchange_at(&w, &d, &auth, &req, &code, &[("resource", &w.resource)]).await;
    reply.assert_ok();
    call_a_tool(&w, &reply.access_token()).await;
    assert_eq!(
        docs.fetches_of("/oauth/jwks.json"),
        1,
        "fetched once, cached"
    );
    // A refresh with a new assertion (its aud the issuer this time); the old one is spent.
    let replayed = refresh_at(&w, &d, &auth, &reply.refresh_token(), &[]).await;
    replayed.assert_error(401, "invalid_client");
    let fresh = ClientAuth::Assertion(
        client_id.clone(),
        key.assertion(&client_id, &d.issuer, |_| {}),
    );
    let again = refresh_at(&w, &d, &fresh, &reply.refresh_token(), &[]).await;
    again.assert_ok();
    call_a_tool(&w, &again.access_token()).await;
    // The document also lists `none`: served as a public client too.
    let req = AuthRequest::new(&client_id, redirect, &w.resource);
    let code = sign_in(&w, &d, &req).await.code();
    let public = exchange_at(
        &w,
        &d,
        &ClientAuth::Public(client_id.clone()),
        &req,
        &code,
        &[],
    )
    .await;
    public.assert_ok();
    // Without an assertion it proves nothing: not a confidential client, no introspection.
    introspect(
        &w.app,
        &ClientAuth::Public(client_id),
        &public.access_token(),
    )
    .await
    .assert_error(401, "invalid_client");
}

#[tokio::test]
async fn vscode_registers_a_portless_loopback_and_sends_the_resource() {
    let w = world().await;
    let d = discover(&w).await;
    let reg = register(
        &d,
        json!({
            "client_name": "Visual Studio Code",
            "redirect_uris": ["http://127.0.0.1:33418", "https://vscode.dev/redirect"],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
        }),
    )
    .await;
    assert_eq!(reg.status, 201, "{}", reg.text);
    let client_id = reg.str("client_id");
    let req = AuthRequest::new(&client_id, "http://127.0.0.1:33418", &w.resource)
        .scope(&d.challenge_scope);
    let code = sign_in(&w, &d, &req).await.code();
    let auth = ClientAuth::Public(client_id);
    let reply = exchange_at(&w, &d, &auth, &req, &code, &[("resource", &w.resource)]).await;
    reply.assert_ok();
    call_a_tool(&w, &reply.access_token()).await;
}

#[tokio::test]
async fn claude_ai_names_the_bare_origin_and_refreshes_from_two_nodes() {
    let w = world().await;
    let d = discover(&w).await;
    let redirect = "https://claude.ai/api/mcp/auth_callback";
    let reg = register(
        &d,
        json!({
            "client_name": "Claude",
            "redirect_uris": [redirect],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
        }),
    )
    .await;
    assert_eq!(reg.status, 201, "{}", reg.text);
    assert_eq!(reg.body["application_type"], "web");
    let client_id = reg.str("client_id");
    let origin = url::Url::parse(&w.resource)
        .expect("url")
        .origin()
        .ascii_serialization();
    let req = AuthRequest::new(&client_id, redirect, &format!("{origin}/"));
    let code = sign_in(&w, &d, &req).await.code();
    let auth = ClientAuth::Public(client_id);
    let reply = exchange_at(&w, &d, &auth, &req, &code, &[("resource", &origin)]).await;
    reply.assert_ok();
    assert_eq!(
        aud_of(&reply.access_token()),
        json!(w.resource),
        "the server it discovered"
    );
    // Node A refreshes; node B replays the same token a moment later: the same successor.
    let r1 = reply.refresh_token();
    let a = refresh_at(&w, &d, &auth, &r1, &[]).await;
    a.assert_ok();
    let b = refresh_at(&w, &d, &auth, &r1, &[]).await;
    b.assert_ok();
    assert_eq!(a.refresh_token(), b.refresh_token());
    call_a_tool(&w, &b.access_token()).await;
}

#[tokio::test]
async fn the_inspector_registers_and_names_the_resource_exactly() {
    let w = world().await;
    let d = discover(&w).await;
    assert_eq!(d.prm["resource"], json!(w.resource));
    let redirect = "http://localhost:6274/oauth/callback";
    let reg = register(
        &d,
        json!({
            "redirect_uris": ["http://localhost:6274/oauth/callback/debug", redirect],
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "client_name": "MCP Inspector",
            "client_uri": "https://github.com/modelcontextprotocol/inspector",
        }),
    )
    .await;
    assert_eq!(reg.status, 201, "{}", reg.text);
    let client_id = reg.str("client_id");
    let req = AuthRequest::new(&client_id, redirect, &w.resource).scope(&d.challenge_scope);
    let code = sign_in(&w, &d, &req).await.code();
    // The Inspector runs in a browser: its token request is a cross-origin fetch.
    let res = bare_client()
        .post(d.endpoint("token_endpoint"))
        .header("origin", "http://localhost:6274")
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", redirect),
            ("code_verifier", req.verifier.as_str()),
            ("client_id", client_id.as_str()),
            ("resource", w.resource.as_str()),
        ])
        .send()
        .await
        .expect("token");
    assert_eq!(
        res.headers()
            .get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok()),
        Some("*")
    );
    let reply = ApiResponse::read(res).await;
    reply.assert_ok();
    call_a_tool(&w, &reply.access_token()).await;
}
