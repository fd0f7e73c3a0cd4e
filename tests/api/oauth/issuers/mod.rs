//! Issue 19's rules, each with its refusals: one issuer per managed server (and `resource`
//! forgiving but binding), OpenID Connect, refresh rotation with a grace, `private_key_jwt`,
//! native redirect URIs.

use serde_json::{Value, json};

use crate::fakes::{ClientKey, DocServer, TestIssuer};
use crate::helpers::ApiResponse;
use crate::oauth::browser::*;
use crate::oauth::clients_tested::{Discovered, call_a_tool, discover, sign_in};

mod client_auth;
mod openid_refresh;
mod per_server;

pub fn public(id: &str) -> ClientAuth {
    ClientAuth::Public(id.to_owned())
}

/// `POST /oauth/register` with a JSON body.
pub async fn register_json(w: &World, body: &Value) -> ApiResponse {
    ApiResponse::read(
        bare_client()
            .post(w.app.url("/oauth/register"))
            .json(body)
            .send()
            .await
            .expect("register"),
    )
    .await
}

/// The flow at the discovered issuer: (request, token reply).
async fn flow_at(w: &World, d: &Discovered, req: AuthRequest) -> (AuthRequest, ApiResponse) {
    let out = sign_in(w, d, &req).await;
    let code = out.code();
    let reply = post_endpoint(
        &w.app,
        &d.path("token_endpoint"),
        &public(req.client_id()),
        &[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", req.redirect_uri()),
            ("code_verifier", req.verifier.as_str()),
        ],
    )
    .await;
    (req, reply)
}

/// A world with a dynamic `private_key_jwt` client holding `key` inline; (world, client_id).
pub async fn jwt_client(key: &ClientKey, private: bool) -> (World, String) {
    let w = world_with(move |c| c.outbound.allow_private_addresses = private).await;
    let body = json!({
        "redirect_uris": [REDIRECT], "client_name": "Signed",
        "token_endpoint_auth_method": "private_key_jwt", "jwks": key.jwks(),
    });
    let reg = register_json(&w, &body).await;
    assert_eq!(reg.status, 201, "{}", reg.text);
    assert!(
        reg.body.get("client_secret").is_none(),
        "no secret: {}",
        reg.text
    );
    (w, reg.str("client_id"))
}
