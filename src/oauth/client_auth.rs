//! Client authentication at the token, revocation and introspection endpoints:
//! `client_secret_basic`, `client_secret_post`, `private_key_jwt` (RFC 7523, see `assertion`),
//! or `none` (public clients: `client_id` only).

use std::sync::Arc;

use actix_web::{FromRequest, HttpRequest, web};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::assertion;
use super::clients::{self, Client, ClientError, PRIVATE_KEY_JWT};
use super::issuer::Issuer;
use super::params::Params;
use super::{OAuthError, OAuthState};
use crate::crypto;
use crate::outbound::Outbound;
use crate::services::gateway::Gateway;
use crate::services::gateway::urls::ServerUrls;
use crate::store::Store;

/// What the metadata documents list (`none` first: the introspection endpoint takes the rest).
pub const AUTH_METHODS: [&str; 4] = [
    "none",
    "client_secret_basic",
    "client_secret_post",
    PRIVATE_KEY_JWT,
];

const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// `Authorization: Basic` credentials, if sent.
fn basic(req: &HttpRequest) -> Result<Option<(String, String)>, OAuthError> {
    let Some(h) = req.headers().get(actix_web::http::header::AUTHORIZATION) else {
        return Ok(None);
    };
    let v = h
        .to_str()
        .map_err(|_| OAuthError::invalid_client("malformed Authorization header"))?;
    let encoded = v
        .strip_prefix("Basic ")
        .or_else(|| v.strip_prefix("basic "))
        .ok_or_else(|| OAuthError::invalid_client("client authentication must use HTTP Basic"))?;
    let decoded = STANDARD
        .decode(encoded.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| OAuthError::invalid_client("malformed Basic credentials"))?;
    let (id, secret) = decoded
        .split_once(':')
        .ok_or_else(|| OAuthError::invalid_client("malformed Basic credentials"))?;
    let unescape = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    Ok(Some((unescape(id), unescape(secret))))
}

/// What authenticating a client uses (an extractor for the token, revocation and
/// introspection endpoints): the store (clients, spent assertion ids), the authorization
/// server's caches of metadata documents and client keys, the outbound client that fills them,
/// and the gateway's server URLs (which an assertion's `aud` may name).
pub struct ClientAuth {
    store: web::Data<Store>,
    oauth: web::Data<OAuthState>,
    outbound: web::Data<Outbound>,
    gateway: web::Data<Gateway>,
}

impl FromRequest for ClientAuth {
    type Error = OAuthError;
    type Future = std::future::Ready<Result<Self, OAuthError>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        std::future::ready((|| {
            Ok(ClientAuth {
                store: super::service(req)?,
                oauth: super::service(req)?,
                outbound: super::service(req)?,
                gateway: super::service(req)?,
            })
        })())
    }
}

impl ClientAuth {
    async fn client(&self, client_id: &str) -> Result<Arc<Client>, OAuthError> {
        clients::resolve(&self.store, &self.oauth, &self.outbound, client_id)
            .await
            .map_err(|e| match e {
                ClientError::Store(s) => s.into(),
                other => OAuthError::invalid_client(other.to_string()),
            })
    }
}

/// Authenticates the client of a request to `issuer`'s endpoint `endpoint` (`token`, `revoke`,
/// `introspect`). The client returned has as `auth_method` the method this request used.
pub async fn authenticate(
    auth: &ClientAuth,
    req: &HttpRequest,
    params: &Params,
    issuer: &Issuer,
    endpoint: &str,
) -> Result<Arc<Client>, OAuthError> {
    let basic = basic(req)?;
    let assertion = assertion_of(params)?;
    let methods = usize::from(basic.is_some())
        + usize::from(params.get("client_secret").is_some())
        + usize::from(assertion.is_some());
    if methods > 1 {
        return Err(OAuthError::invalid_request(
            "use one client authentication method, not two",
        ));
    }
    if let Some(jwt) = assertion {
        return by_assertion(auth, params, issuer, endpoint, jwt).await;
    }
    let secret_method = if basic.is_some() {
        "client_secret_basic"
    } else {
        "client_secret_post"
    };
    let (client_id, secret) = credentials(basic, params)?;
    let client = auth.client(&client_id).await?;
    by_secret(client, secret, secret_method)
}

/// The client assertion (`private_key_jwt`), if the request sends one.
fn assertion_of(params: &Params) -> Result<Option<&str>, OAuthError> {
    match (
        params.get("client_assertion_type"),
        params.get("client_assertion"),
    ) {
        (None, None) => Ok(None),
        (Some(JWT_BEARER), Some(a)) => Ok(Some(a)),
        (Some(_), Some(_)) => Err(OAuthError::invalid_client(format!(
            "client_assertion_type must be {JWT_BEARER}"
        ))),
        _ => Err(OAuthError::invalid_request(
            "client_assertion and client_assertion_type go together",
        )),
    }
}

/// `private_key_jwt`: the client the assertion names, if it verifies with that client's keys.
async fn by_assertion(
    auth: &ClientAuth,
    params: &Params,
    issuer: &Issuer,
    endpoint: &str,
    jwt: &str,
) -> Result<Arc<Client>, OAuthError> {
    let claimed = assertion::claimed_client(jwt)?;
    if params.get("client_id").is_some_and(|c| c != claimed) {
        return Err(OAuthError::invalid_client(
            "client_id does not match the client assertion",
        ));
    }
    let client = auth.client(&claimed).await?;
    if client.auth_method != PRIVATE_KEY_JWT {
        return Err(OAuthError::invalid_client(
            "this client does not authenticate with private_key_jwt",
        ));
    }
    let audiences = audiences(&auth.gateway.urls, issuer, endpoint);
    assertion::verify(&auth.store, &auth.oauth, &client, jwt, &audiences).await?;
    Ok(client)
}

/// The client id and the secret (if any) of a request without an assertion: HTTP Basic, else
/// the form's `client_id` and `client_secret`.
fn credentials(
    basic: Option<(String, String)>,
    params: &Params,
) -> Result<(String, Option<String>), OAuthError> {
    match (basic, params.get("client_secret")) {
        (Some((id, secret)), _) => {
            if params.get("client_id").is_some_and(|c| c != id) {
                return Err(OAuthError::invalid_client(
                    "client_id does not match the credentials",
                ));
            }
            Ok((id, Some(secret)))
        }
        (None, Some(secret)) => Ok((
            params.require("client_id")?.to_owned(),
            Some(secret.to_owned()),
        )),
        (None, None) => Ok((
            params
                .require("client_id")
                .map_err(|_| OAuthError::invalid_client("client_id is required"))?
                .to_owned(),
            None,
        )),
    }
}

/// Checks `secret` (sent with `secret_method`) against `client`'s, or that a client with none
/// may go without.
fn by_secret(
    client: Arc<Client>,
    secret: Option<String>,
    secret_method: &str,
) -> Result<Arc<Client>, OAuthError> {
    match (&client.secret_hash, secret) {
        (Some(hash), Some(secret)) => {
            // Both secret methods are accepted; the registered one is only a preference.
            if !crypto::ct_eq(crypto::token_hash(&secret).as_bytes(), hash.as_bytes()) {
                return Err(OAuthError::invalid_client("client authentication failed"));
            }
            if client.auth_method != secret_method {
                return Ok(Arc::new(Client {
                    auth_method: secret_method.into(),
                    ..(*client).clone()
                }));
            }
        }
        (Some(_), None) => return Err(OAuthError::invalid_client("this client must authenticate")),
        (None, Some(_)) => {
            return Err(OAuthError::invalid_client(
                "this client has no secret (it is public, or uses private_key_jwt)",
            ));
        }
        (None, None) if client.auth_method == PRIVATE_KEY_JWT => {
            if !client.public_allowed {
                return Err(OAuthError::invalid_client(
                    "this client must authenticate with private_key_jwt (a client_assertion)",
                ));
            }
            // A document that also lists `none`, used without an assertion: a public client
            // for this request (nothing here proves it holds the keys).
            return Ok(Arc::new(Client {
                auth_method: "none".into(),
                ..(*client).clone()
            }));
        }
        (None, None) => {}
    }
    Ok(client)
}

/// The `aud` a client assertion sent to `issuer`'s `endpoint` may name (RFC 7523 §3: the
/// authorization server's identity; OpenID Connect Core §9 and RFC 7521 name the token
/// endpoint): the issuer the request is made to and its token endpoint, and the deployment's
/// root issuer and its token endpoint (the same server, keys and store). At the revocation and
/// introspection endpoints, also that endpoint of this issuer (some clients name the endpoint
/// they post to). Never any other URL, nor another endpoint than the one posted to: an
/// assertion made for revocation is not a token request's.
fn audiences(urls: &ServerUrls, issuer: &Issuer, endpoint: &str) -> Vec<String> {
    let root = Issuer::root(urls);
    let mut v = vec![
        issuer.url.clone(),
        issuer.endpoint("token"),
        root.url.clone(),
        root.endpoint("token"),
    ];
    if endpoint != "token" {
        v.push(issuer.endpoint(endpoint));
    }
    v
}

/// What a client authentication method proves: nothing, a shared secret, or a private key.
fn proof(method: &str) -> &'static str {
    match method {
        PRIVATE_KEY_JWT => PRIVATE_KEY_JWT,
        "client_secret_basic" | "client_secret_post" => "client_secret",
        _ => "none",
    }
}

/// May a refresh request that authenticated with `used` refresh a grant whose code exchange
/// authenticated with `recorded`? It must prove what the exchange proved: a grant obtained with
/// the client's key is never refreshed without it (the refresh token is bound to the client's
/// credentials, RFC 6749 §6 and §10.4). A grant obtained with none may be refreshed with a
/// proof. A grant recorded before the method was (`None`) needs the key of a client that holds
/// one (`has_keys`): fail closed.
///
/// `invalid_client` (RFC 6749 §5.2: "no client authentication included, or unsupported
/// authentication method"), not `invalid_grant`: the refresh token is fine, the request lacks
/// the client's authentication; it is refused before the token is touched, so the client may
/// retry with its assertion and nothing is revoked.
pub fn may_refresh(recorded: Option<&str>, used: &str, has_keys: bool) -> Result<(), OAuthError> {
    let recorded = recorded.unwrap_or(if has_keys { PRIVATE_KEY_JWT } else { "none" });
    let needed = proof(recorded);
    if needed == "none" || needed == proof(used) {
        return Ok(());
    }
    Err(OAuthError::invalid_client(format!(
        "this grant was obtained with {needed} client authentication: refresh it with the same"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refresh_proves_what_its_grant_proved() {
        let ok = |recorded: Option<&str>, used: &str, keys: bool| {
            may_refresh(recorded, used, keys).is_ok()
        };
        assert!(ok(Some(PRIVATE_KEY_JWT), PRIVATE_KEY_JWT, true));
        assert!(!ok(Some(PRIVATE_KEY_JWT), "none", true));
        assert!(!ok(Some(PRIVATE_KEY_JWT), "client_secret_post", false));
        assert!(ok(Some("client_secret_basic"), "client_secret_post", false));
        assert!(!ok(Some("client_secret_basic"), "none", false));
        assert!(ok(Some("none"), "none", true));
        assert!(ok(Some("none"), PRIVATE_KEY_JWT, true));
        // Recorded before the method was: a client holding keys must use them.
        assert!(!ok(None, "none", true));
        assert!(ok(None, PRIVATE_KEY_JWT, true));
        assert!(ok(None, "none", false));
        let e = may_refresh(Some(PRIVATE_KEY_JWT), "none", true).expect_err("refused");
        assert_eq!(e.code, "invalid_client");
    }
}
