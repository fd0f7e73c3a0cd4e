//! Who a client is: pre-registered or dynamically registered (in the store), or a Client ID
//! Metadata Document (an https URL as `client_id`, fetched, validated and cached). Also client
//! authentication at the token, revocation and introspection endpoints, and redirect URI matching.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::HttpRequest;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use url::Url;

use super::OAuthError;
use super::params::Params;
use crate::app::AppState;
use crate::crypto;
use crate::domain::validate;
use crate::store;

#[derive(Debug, Clone)]
pub struct Client {
    pub client_id: String,
    pub name: String,
    pub redirect_uris: Vec<String>,
    /// What this client may ask for; `None` = any scope the server supports.
    pub scopes: Option<Vec<String>>,
    pub trusted: bool,
    /// Pre-registered for one server only.
    pub server_id: Option<String>,
    pub secret_hash: Option<String>,
    pub auth_method: String,
    pub grant_types: Vec<String>,
    /// Registered in the store (rather than known only by its metadata document).
    pub stored: bool,
}

impl Client {
    pub fn is_confidential(&self) -> bool {
        self.secret_hash.is_some()
    }

    pub fn may_use_grant(&self, grant: &str) -> bool {
        self.grant_types.iter().any(|g| g == grant)
    }
}

/// Why a client cannot be used: shown on a page (authorize) or as `invalid_client`.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("unknown client {0:?}")]
    Unknown(String),
    #[error("the client's metadata document cannot be used: {0}")]
    Metadata(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

#[derive(Debug, Deserialize)]
struct MetadataDocument {
    client_id: String,
    client_name: Option<String>,
    redirect_uris: Vec<String>,
    token_endpoint_auth_method: Option<String>,
}

/// What a usable metadata document says.
struct Document {
    name: String,
    redirect_uris: Vec<String>,
}

struct Cached {
    /// The document, or why it cannot be used.
    document: Result<Arc<Document>, Arc<str>>,
    until: Instant,
}

/// Client ID Metadata Documents, cached per their HTTP caching headers (clamped).
#[derive(Default)]
pub struct MetadataCache {
    entries: Mutex<HashMap<String, Cached>>,
}

const METADATA_FLOOR: Duration = Duration::from_secs(60);
const METADATA_CEILING: Duration = Duration::from_secs(24 * 3600);
const METADATA_DEFAULT: Duration = Duration::from_secs(3600);
/// A document that could not be fetched or used is not fetched again for this long: naming it
/// over and over must not turn into a request to its host each time.
const METADATA_FAILURE_TTL: Duration = Duration::from_secs(30);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// Is `client_id` a metadata document URL (https with a path)?
pub fn is_metadata_url(client_id: &str) -> bool {
    client_id.starts_with("https://")
}

fn from_row(r: store::clients::ClientRow) -> Client {
    let scopes: Vec<String> = r.scopes.split_whitespace().map(str::to_owned).collect();
    Client {
        redirect_uris: serde_json::from_str(&r.redirect_uris).unwrap_or_default(),
        // Dynamic clients may ask for any scope the server offers; pre-registered ones for theirs.
        scopes: if r.server_id.is_some() {
            Some(scopes)
        } else {
            None
        },
        trusted: r.trusted,
        server_id: r.server_id,
        secret_hash: r.secret_hash,
        auth_method: r.auth_method,
        grant_types: r
            .grant_types
            .split_whitespace()
            .map(str::to_owned)
            .collect(),
        name: r.name,
        client_id: r.client_id,
        stored: true,
    }
}

/// Resolves a `client_id`: the store, else (for an https URL) its metadata document.
pub async fn resolve(state: &AppState, client_id: &str) -> Result<Arc<Client>, ClientError> {
    if client_id.len() > 2048 {
        return Err(ClientError::Unknown(client_id.chars().take(64).collect()));
    }
    let id = client_id.to_owned();
    let stored = state
        .store
        .run(move |c| store::clients::find(c, &id))
        .await?;
    if !is_metadata_url(client_id) {
        return match stored {
            Some(row) if row.client_id == client_id => Ok(Arc::new(from_row(row))),
            _ => Err(ClientError::Unknown(client_id.chars().take(64).collect())),
        };
    }
    // A metadata document client; a pre-registration may mark it trusted or limit its scopes.
    // The document (or why it cannot be used) is cached; the pre-registration is read each time.
    let pre = stored.filter(|r| r.client_id == client_id);
    // Checks that need no fetch are not cached: they cost nothing to repeat.
    let url = Url::parse(client_id)
        .map_err(|_| ClientError::Metadata("client_id is not a URL".into()))?;
    if url.path() == "/" || url.fragment().is_some() {
        return Err(ClientError::Metadata(
            "a metadata document URL needs a path and no fragment".into(),
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ClientError::Metadata(
            "a metadata document URL must not contain a username or password".into(),
        ));
    }
    // One client, one spelling: `/a/../b` would be fetched as `/b` under another identity.
    if url.as_str() != client_id {
        return Err(ClientError::Metadata(format!(
            "a metadata document URL must be in normal form (no dot segments, lowercase host, no default port): {url}"
        )));
    }
    let cached = lock(&state.oauth_clients.entries)
        .get(client_id)
        .filter(|hit| hit.until > Instant::now())
        .map(|hit| hit.document.clone());
    let document = match cached {
        Some(d) => d,
        None => {
            let (document, ttl) = match fetch_document(state, client_id, &url).await {
                Ok((doc, max_age)) => (
                    Ok(doc),
                    max_age
                        .unwrap_or(METADATA_DEFAULT)
                        .clamp(METADATA_FLOOR, METADATA_CEILING),
                ),
                Err(why) => (Err(why), METADATA_FAILURE_TTL),
            };
            remember(
                &mut lock(&state.oauth_clients.entries),
                client_id,
                Cached {
                    document: document.clone(),
                    until: Instant::now() + ttl,
                },
            );
            document
        }
    };
    let document = document.map_err(|why| ClientError::Metadata(why.to_string()))?;
    Ok(Arc::new(Client {
        client_id: client_id.to_owned(),
        name: document.name.clone(),
        redirect_uris: document.redirect_uris.clone(),
        scopes: pre
            .as_ref()
            .map(|r| r.scopes.split_whitespace().map(str::to_owned).collect()),
        trusted: pre.as_ref().is_some_and(|r| r.trusted),
        server_id: pre.as_ref().and_then(|r| r.server_id.clone()),
        secret_hash: None,
        auth_method: "none".into(),
        grant_types: vec!["authorization_code".into(), "refresh_token".into()],
        stored: pre.is_some(),
    }))
}

/// Fetches and checks the metadata document at `client_id` (`url`, parsed); with how long it
/// may be cached.
async fn fetch_document(
    state: &AppState,
    client_id: &str,
    url: &Url,
) -> Result<(Arc<Document>, Option<Duration>), Arc<str>> {
    let (json, max_age) = state
        .outbound
        .get_json(client_id)
        .await
        .map_err(|e| e.to_string())?;
    let doc: MetadataDocument =
        serde_json::from_value(json).map_err(|e| format!("not a client metadata document: {e}"))?;
    if doc.client_id != client_id {
        return Err("its client_id is not the URL it was fetched from".into());
    }
    if doc.redirect_uris.is_empty() {
        return Err("it lists no redirect_uris".into());
    }
    for uri in &doc.redirect_uris {
        native_or_web_redirect(uri).map_err(|e| format!("redirect URI {uri:?} {e}"))?;
    }
    if doc
        .token_endpoint_auth_method
        .as_deref()
        .is_some_and(|m| m != "none")
    {
        return Err(
            "only public clients (token_endpoint_auth_method \"none\") are supported".into(),
        );
    }
    let document = Document {
        name: doc
            .client_name
            .and_then(|n| validate::name(&n, 255).ok())
            .unwrap_or_else(|| url.host_str().unwrap_or("client").to_owned()),
        redirect_uris: doc.redirect_uris,
    };
    Ok((Arc::new(document), max_age))
}

/// Most metadata documents kept at once: anyone may name a document URL, so the cache must
/// not grow with them.
const METADATA_CACHE_MAX: usize = 10_000;

/// Caches a document. When full, expired entries go first, then failures; if that frees too
/// little, half of the rest (any half: they are fetched again when next used).
fn remember(cache: &mut HashMap<String, Cached>, client_id: &str, entry: Cached) {
    if cache.len() >= METADATA_CACHE_MAX {
        let now = Instant::now();
        cache.retain(|_, c| c.until > now);
    }
    if cache.len() >= METADATA_CACHE_MAX {
        cache.retain(|_, c| c.document.is_ok());
    }
    if cache.len() >= METADATA_CACHE_MAX {
        let mut keep = false;
        cache.retain(|_, _| {
            keep = !keep;
            keep
        });
    }
    cache.insert(client_id.to_owned(), entry);
}

/// A redirect URI a dynamic client may register: https; http on loopback; or, for native
/// apps, a private-use scheme (`com.example.app:/callback`, RFC 8252 §7.1). Never a fragment.
pub fn native_or_web_redirect(uri: &str) -> Result<(), String> {
    if validate::redirect_uri(uri).is_ok() {
        return Ok(());
    }
    let url = Url::parse(uri).map_err(|_| "is not an absolute URI".to_owned())?;
    let scheme = url.scheme();
    if url.fragment().is_some() {
        return Err("must not have a fragment".into());
    }
    if matches!(
        scheme,
        "http"
            | "https"
            | "javascript"
            | "data"
            | "file"
            | "vbscript"
            | "about"
            | "blob"
            | "ws"
            | "wss"
    ) {
        return validate::redirect_uri(uri).map(|_| ());
    }
    if !scheme.contains('.') {
        return Err(
            "must be https, http on loopback, or a private-use scheme such as com.example.app"
                .into(),
        );
    }
    Ok(())
}

/// Does the requested redirect URI match a registered one? Exact match, except that a
/// loopback registration matches any port (RFC 8252 §7.3).
pub fn redirect_matches(registered: &[String], requested: &str) -> bool {
    if registered.iter().any(|r| r == requested) {
        return true;
    }
    let Ok(mut req) = Url::parse(requested) else {
        return false;
    };
    // Parsing must not have changed anything (`/a/../b`, `%2e`, case): compare what was sent.
    if req.as_str() != requested
        || req.scheme() != "http"
        || !validate::is_loopback_host(&req)
        || !req.username().is_empty()
        || req.password().is_some()
        || req.fragment().is_some()
    {
        return false;
    }
    if req.set_port(None).is_err() {
        return false;
    }
    registered.iter().any(|r| {
        Url::parse(r).is_ok_and(|mut reg| {
            validate::is_loopback_host(&reg)
                && reg.set_port(None).is_ok()
                && reg.as_str() == req.as_str()
        })
    })
}

/// Authenticates the client of a token, revocation or introspection request:
/// `client_secret_basic`, `client_secret_post`, or `none` (public clients: `client_id` only).
pub async fn authenticate(
    state: &AppState,
    req: &HttpRequest,
    params: &Params,
) -> Result<Arc<Client>, OAuthError> {
    let basic = match req.headers().get(actix_web::http::header::AUTHORIZATION) {
        Some(h) => {
            let v = h
                .to_str()
                .map_err(|_| OAuthError::invalid_client("malformed Authorization header"))?;
            let encoded = v
                .strip_prefix("Basic ")
                .or_else(|| v.strip_prefix("basic "))
                .ok_or_else(|| {
                    OAuthError::invalid_client("client authentication must use HTTP Basic")
                })?;
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
            Some((unescape(id), unescape(secret)))
        }
        None => None,
    };
    let (client_id, secret) = match (basic, params.get("client_secret")) {
        (Some(_), Some(_)) => {
            return Err(OAuthError::invalid_request(
                "use one client authentication method, not two",
            ));
        }
        (Some((id, secret)), None) => {
            if params.get("client_id").is_some_and(|c| c != id) {
                return Err(OAuthError::invalid_client(
                    "client_id does not match the credentials",
                ));
            }
            (id, Some(secret))
        }
        (None, Some(secret)) => (
            params.require("client_id")?.to_owned(),
            Some(secret.to_owned()),
        ),
        (None, None) => (
            params
                .require("client_id")
                .map_err(|_| OAuthError::invalid_client("client_id is required"))?
                .to_owned(),
            None,
        ),
    };
    let client = resolve(state, &client_id).await.map_err(|e| match e {
        ClientError::Store(s) => s.into(),
        other => OAuthError::invalid_client(other.to_string()),
    })?;
    match (&client.secret_hash, secret) {
        (Some(hash), Some(secret)) => {
            // Both secret methods are accepted; the registered one is only a preference.
            if !crypto::ct_eq(crypto::token_hash(&secret).as_bytes(), hash.as_bytes()) {
                return Err(OAuthError::invalid_client("client authentication failed"));
            }
        }
        (Some(_), None) => return Err(OAuthError::invalid_client("this client must authenticate")),
        (None, Some(_)) => {
            return Err(OAuthError::invalid_client(
                "this client is public and has no secret",
            ));
        }
        (None, None) => {}
    }
    Ok(client)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_metadata_cache_stays_bounded() {
        let document = Arc::new(Document {
            name: "c".into(),
            redirect_uris: vec![],
        });
        let entry = |live: bool| Cached {
            document: Ok(document.clone()),
            until: if live {
                Instant::now() + Duration::from_secs(3600)
            } else {
                Instant::now()
                    .checked_sub(Duration::from_secs(1))
                    .unwrap_or_else(Instant::now)
            },
        };
        let mut cache = HashMap::new();
        // Full of expired entries: they make room.
        for i in 0..METADATA_CACHE_MAX {
            remember(&mut cache, &format!("https://x.example/{i}"), entry(false));
        }
        remember(&mut cache, "https://new.example/a", entry(true));
        assert_eq!(cache.len(), 1);
        // Full of live entries, from distinct URLs without end: never over the cap.
        for i in 0..3 * METADATA_CACHE_MAX {
            remember(&mut cache, &format!("https://y.example/{i}"), entry(true));
            assert!(cache.len() <= METADATA_CACHE_MAX);
        }
        assert!(cache.contains_key(&format!("https://y.example/{}", 3 * METADATA_CACHE_MAX - 1)));
        // Full of live documents and live failures: the failures make room.
        cache.clear();
        for i in 0..METADATA_CACHE_MAX {
            let e = if i % 10 == 0 {
                entry(true)
            } else {
                Cached {
                    document: Err("down".into()),
                    ..entry(true)
                }
            };
            remember(&mut cache, &format!("https://z.example/{i}"), e);
        }
        remember(&mut cache, "https://new.example/b", entry(true));
        assert_eq!(cache.len(), METADATA_CACHE_MAX / 10 + 1);
        assert!(cache.values().all(|c| c.document.is_ok()));
    }

    #[test]
    fn redirect_matching() {
        let reg = vec![
            "http://127.0.0.1/callback".to_owned(),
            "https://app.example.com/cb".to_owned(),
        ];
        assert!(redirect_matches(&reg, "http://127.0.0.1:54321/callback"));
        assert!(redirect_matches(&reg, "https://app.example.com/cb"));
        for bad in [
            "https://app.example.com/cb?x=1",
            "https://app.example.com/cb/",
            "https://app.example.com/other",
            "http://evil@127.0.0.1/callback",
            "http://localhost.evil.com/callback",
            "http://localhost/callback",
            "http://127.0.0.1:1/callback#f",
            "http://127.0.0.1:1/callback?x",
            "http://127.0.0.1:1/callback/../callback",
            "http://127.0.0.1:1/x/../callback",
            "http://127.0.0.1:1/%63allback",
        ] {
            assert!(!redirect_matches(&reg, bad), "{bad}");
        }
    }

    #[test]
    fn dynamic_redirects() {
        assert!(native_or_web_redirect("com.example.app:/callback").is_ok());
        assert!(native_or_web_redirect("https://app.example.com/cb").is_ok());
        assert!(native_or_web_redirect("http://127.0.0.1:3000/cb").is_ok());
        assert!(native_or_web_redirect("http://example.com/cb").is_err());
        assert!(native_or_web_redirect("javascript:alert(1)").is_err());
        assert!(native_or_web_redirect("myapp:/cb").is_err());
        assert!(native_or_web_redirect("com.example.app:/cb#x").is_err());
    }
}
