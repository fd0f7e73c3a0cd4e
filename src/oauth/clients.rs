//! Who a client is: pre-registered or dynamically registered (in the store), or a Client ID
//! Metadata Document (an https URL as `client_id`, fetched, validated and cached). Also redirect
//! URI rules and matching; client authentication is `client_auth`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;
use url::Url;

use super::OAuthState;
use crate::domain::validate;
use crate::outbound::Outbound;
use crate::shared::jwks;
use crate::store::{self, Store};

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
    /// `private_key_jwt` (RFC 7523): the client's keys, inline or at a URL.
    pub jwks: Option<Arc<serde_json::Value>>,
    pub jwks_uri: Option<String>,
    /// A `private_key_jwt` metadata document that also lists `none` among its methods: it may
    /// be served as a public client too.
    pub public_allowed: bool,
}

impl Client {
    pub fn is_confidential(&self) -> bool {
        self.secret_hash.is_some() || self.auth_method == PRIVATE_KEY_JWT
    }

    pub fn may_use_grant(&self, grant: &str) -> bool {
        self.grant_types.iter().any(|g| g == grant)
    }

    /// Does the client hold keys for `private_key_jwt` (it declared the method, even when a
    /// request of it goes without an assertion)?
    pub fn has_keys(&self) -> bool {
        self.jwks.is_some() || self.jwks_uri.is_some()
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

pub const PRIVATE_KEY_JWT: &str = "private_key_jwt";

#[derive(Debug, Deserialize)]
struct MetadataDocument {
    client_id: String,
    client_name: Option<String>,
    redirect_uris: Vec<String>,
    token_endpoint_auth_method: Option<String>,
    /// Not in RFC 7591: the methods a client can use (ChatGPT lists `none` and
    /// `private_key_jwt`).
    token_endpoint_auth_methods_supported: Option<Vec<String>>,
    grant_types: Option<Vec<String>>,
    jwks: Option<serde_json::Value>,
    jwks_uri: Option<String>,
}

/// What a usable metadata document says.
struct Document {
    name: String,
    redirect_uris: Vec<String>,
    grant_types: Vec<String>,
    auth_method: String,
    jwks: Option<Arc<serde_json::Value>>,
    jwks_uri: Option<String>,
    public_allowed: bool,
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
    // A dynamic client's keys, for private_key_jwt, are in its registered metadata.
    let registered: serde_json::Value = r
        .metadata
        .as_deref()
        .and_then(|m| serde_json::from_str(m).ok())
        .unwrap_or_default();
    let jwt = r.auth_method == PRIVATE_KEY_JWT;
    Client {
        jwks: registered
            .get("jwks")
            .filter(|_| jwt)
            .cloned()
            .map(Arc::new),
        jwks_uri: registered
            .get("jwks_uri")
            .and_then(|u| u.as_str())
            .filter(|_| jwt)
            .map(str::to_owned),
        public_allowed: false,
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

/// Resolves a `client_id`: the store, else (for an https URL) its metadata document (cached in
/// `oauth`, fetched with `outbound`).
pub async fn resolve(
    store: &Store,
    oauth: &OAuthState,
    outbound: &Outbound,
    client_id: &str,
) -> Result<Arc<Client>, ClientError> {
    if client_id.len() > 2048 {
        return Err(ClientError::Unknown(client_id.chars().take(64).collect()));
    }
    let id = client_id.to_owned();
    let stored = store.run(move |c| store::clients::find(c, &id)).await?;
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
    let cached = lock(&oauth.clients.entries)
        .get(client_id)
        .filter(|hit| hit.until > Instant::now())
        .map(|hit| hit.document.clone());
    let document = match cached {
        Some(d) => d,
        None => {
            let (document, ttl) = match fetch_document(outbound, client_id, &url).await {
                Ok((doc, max_age)) => (
                    Ok(doc),
                    max_age
                        .unwrap_or(METADATA_DEFAULT)
                        .clamp(METADATA_FLOOR, METADATA_CEILING),
                ),
                Err(why) => (Err(why), METADATA_FAILURE_TTL),
            };
            remember(
                &mut lock(&oauth.clients.entries),
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
        auth_method: document.auth_method.clone(),
        grant_types: document.grant_types.clone(),
        stored: pre.is_some(),
        jwks: document.jwks.clone(),
        jwks_uri: document.jwks_uri.clone(),
        public_allowed: document.public_allowed,
    }))
}

/// Fetches and checks the metadata document at `client_id` (`url`, parsed); with how long it
/// may be cached.
async fn fetch_document(
    outbound: &Outbound,
    client_id: &str,
    url: &Url,
) -> Result<(Arc<Document>, Option<Duration>), Arc<str>> {
    let (json, max_age) = outbound
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
    let method = doc.token_endpoint_auth_method.as_deref().unwrap_or("none");
    let lists_none = doc
        .token_endpoint_auth_methods_supported
        .as_ref()
        .is_some_and(|m| m.iter().any(|m| m == "none"));
    let (auth_method, public_allowed) = match method {
        "none" => ("none", true),
        PRIVATE_KEY_JWT => (PRIVATE_KEY_JWT, lists_none),
        // A secret cannot be shared through a public document; a client that can also be
        // public is served as one.
        _ if lists_none => ("none", true),
        other => {
            return Err(format!(
                "token_endpoint_auth_method {other:?} is not supported for metadata documents (none or private_key_jwt)"
            )
            .into());
        }
    };
    let (jwks, jwks_uri) = if auth_method == PRIVATE_KEY_JWT {
        client_keys(doc.jwks, doc.jwks_uri)?
    } else {
        (None, None)
    };
    // RFC 7591's default is the authorization code grant alone.
    let grant_types: Vec<String> = match doc.grant_types {
        Some(g) => g
            .into_iter()
            .filter(|g| matches!(g.as_str(), "authorization_code" | "refresh_token"))
            .collect(),
        None => vec!["authorization_code".into()],
    };
    let document = Document {
        name: doc
            .client_name
            .and_then(|n| validate::name(&n, 255).ok())
            .unwrap_or_else(|| url.host_str().unwrap_or("client").to_owned()),
        redirect_uris: doc.redirect_uris,
        grant_types,
        auth_method: auth_method.to_owned(),
        jwks,
        jwks_uri,
        public_allowed,
    };
    Ok((Arc::new(document), max_age))
}

/// A `private_key_jwt` client's keys: exactly one of `jwks` (public keys only) and `jwks_uri`
/// (https; fetched through the SSRF guard when used).
#[allow(clippy::type_complexity)]
pub fn client_keys(
    jwks: Option<serde_json::Value>,
    jwks_uri: Option<String>,
) -> Result<(Option<Arc<serde_json::Value>>, Option<String>), String> {
    match (jwks, jwks_uri) {
        (Some(_), Some(_)) => Err("give jwks or jwks_uri, not both".into()),
        (None, None) => Err("private_key_jwt needs jwks or jwks_uri".into()),
        (None, Some(uri)) => {
            validate::https_url(&uri).map_err(|e| format!("jwks_uri {e}"))?;
            Ok((None, Some(uri)))
        }
        (Some(set), None) => {
            let keys = set
                .get("keys")
                .and_then(|k| k.as_array())
                .filter(|k| !k.is_empty() && k.len() <= 20)
                .ok_or("jwks must be a JWK Set with 1 to 20 keys")?;
            // Public keys only: a private or symmetric key has no place in a public document.
            if keys.iter().any(|k| {
                k.get("d").is_some()
                    || k.get("k").is_some()
                    || k.get("kty").and_then(|t| t.as_str()) == Some("oct")
            }) {
                return Err("jwks must hold public keys only".into());
            }
            // Read as verification reads it: a set none of whose keys can ever verify an
            // assertion is refused now rather than at every token request.
            let usable = jwks::usable_keys(&set, &super::assertion::ALGORITHMS)?;
            if usable == 0 {
                return Err("jwks holds no key that can verify a client assertion (RSA of 2048 to 8192 bits for RS256 or PS256, EC P-256 for ES256, OKP Ed25519 for EdDSA)".into());
            }
            Ok((Some(Arc::new(set)), None))
        }
    }
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

/// Schemes a browser must never be sent to as a redirect, or that are not native apps' own:
/// script and local content, and the schemes that hand a web address to a browser (an error
/// redirect to `microsoft-edge:https://…` would be an open redirect).
const DANGEROUS_SCHEMES: [&str; 22] = [
    "javascript",
    "data",
    "file",
    "vbscript",
    "about",
    "blob",
    "ws",
    "wss",
    "intent",
    "microsoft-edge",
    "microsoft-edge-holographic",
    "x-safari-http",
    "x-safari-https",
    "googlechrome",
    "googlechromes",
    "firefox",
    "opera-http",
    "opera-https",
    "ftp",
    "jar",
    "view-source",
    "filesystem",
];

/// Private-use schemes without a dot (RFC 8252 §7.1 asks for a reverse domain name) of MCP
/// clients people use: Cursor (`cursor://anysphere.cursor-mcp/oauth/callback`), VS Code and
/// its Insiders build, Windsurf, Claude.
const KNOWN_APP_SCHEMES: [&str; 5] = ["cursor", "vscode", "vscode-insiders", "windsurf", "claude"];

/// Is `uri` a native app's redirect (RFC 8252): a private-use scheme or an http loopback?
pub fn is_native_redirect(uri: &str) -> bool {
    Url::parse(uri).is_ok_and(|u| match u.scheme() {
        "http" => validate::is_loopback_host(&u),
        "https" => false,
        scheme => !DANGEROUS_SCHEMES.contains(&scheme),
    })
}

/// May an error go back to `uri` as a redirect before the user has done anything? Only when it
/// reaches the user's own machine and nothing else: an http loopback, or a private-use scheme
/// that names its app (reverse domain, RFC 8252 §7.1: `com.example.app:/cb`) or is a known MCP
/// client's. Any other scheme may be one an operating system hands to a browser, which anyone
/// could register to turn this server into an open redirector.
pub fn error_redirect_allowed(uri: &str) -> bool {
    Url::parse(uri).is_ok_and(|u| match u.scheme() {
        "http" => validate::is_loopback_host(&u),
        "https" => false,
        scheme if DANGEROUS_SCHEMES.contains(&scheme) => false,
        scheme => scheme.contains('.') || KNOWN_APP_SCHEMES.contains(&scheme),
    })
}

/// A redirect URI a dynamic client may register: https; http on loopback; or, for native
/// apps, a private-use scheme (`com.example.app:/callback`, `cursor://…`, RFC 8252 §7.1) other
/// than those dangerous in a browser. Never a fragment.
pub fn native_or_web_redirect(uri: &str) -> Result<(), String> {
    if uri.len() > 2048 {
        return Err("must be at most 2048 characters".into());
    }
    let url = Url::parse(uri).map_err(|_| "is not an absolute URI".to_owned())?;
    if url.fragment().is_some() {
        return Err("must not have a fragment".into());
    }
    match url.scheme() {
        "http" | "https" => validate::redirect_uri(uri).map(|_| ()),
        s if DANGEROUS_SCHEMES.contains(&s) => Err(format!(
            "must not use the {s}: scheme (https, http on loopback, or an app's private-use scheme)"
        )),
        _ if !url.username().is_empty() || url.password().is_some() => {
            Err("must not contain a username or password".into())
        }
        _ => Ok(()),
    }
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
    // Parsing must not have changed anything (`/a/../b`, `%2e`, case) but add the empty path's
    // `/` (`http://127.0.0.1:33418`, as VS Code registers it): compare what was sent.
    let as_sent = req.as_str() == requested
        || (req.path() == "/" && req.query().is_none() && req.as_str() == format!("{requested}/"));
    if !as_sent
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_metadata_cache_stays_bounded() {
        let document = Arc::new(Document {
            name: "c".into(),
            redirect_uris: vec![],
            grant_types: vec![],
            auth_method: "none".into(),
            jwks: None,
            jwks_uri: None,
            public_allowed: true,
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
        let vscode = vec!["http://127.0.0.1:33418".to_owned()];
        assert!(redirect_matches(&vscode, "http://127.0.0.1:33418"));
        assert!(redirect_matches(&vscode, "http://127.0.0.1:40001"));
        assert!(redirect_matches(&vscode, "http://127.0.0.1:40001/"));
        assert!(!redirect_matches(&vscode, "http://127.0.0.1:40001/x"));
        assert!(!redirect_matches(&vscode, "http://127.0.0.1:40001?x"));
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
        assert!(native_or_web_redirect("myapp:/cb").is_ok());
        assert!(native_or_web_redirect("cursor://anysphere.cursor-mcp/oauth/callback").is_ok());
        assert!(native_or_web_redirect("com.example.app:/cb#x").is_err());
        for bad in [
            "JavaScript:alert(1)",
            "data:text/html,x",
            "file:///etc/passwd",
            "vbscript:x",
            "blob:https://a.example/x",
            "about:blank",
            "wss://a.example/x",
            "intent://evil.example/#Intent;scheme=https;end",
            "microsoft-edge:https://evil.example/x",
            "Microsoft-Edge-Holographic:https://evil.example/x",
            "x-safari-https://evil.example/x",
            "x-safari-http://evil.example/x",
            "googlechrome://evil.example/x",
            "googlechromes://evil.example/x",
            "firefox://open-url?url=https://evil.example/x",
            "opera-http://evil.example/x",
            "opera-https://evil.example/x",
            "ftp://evil.example/x",
            "jar:https://evil.example/a.jar!/x",
            "view-source:https://evil.example/x",
            "filesystem:https://evil.example/temporary/x",
            "ws://evil.example/x",
        ] {
            assert!(native_or_web_redirect(bad).is_err(), "{bad}");
            assert!(!is_native_redirect(bad), "{bad}");
            assert!(!error_redirect_allowed(bad), "{bad}");
        }
        assert!(native_or_web_redirect("x-app://user:pw@host/cb").is_err());
        assert!(is_native_redirect(
            "cursor://anysphere.cursor-mcp/oauth/callback"
        ));
        assert!(is_native_redirect("http://localhost:8787/callback"));
        assert!(is_native_redirect("http://127.0.0.1/cb"));
        assert!(!is_native_redirect(
            "https://claude.ai/api/mcp/auth_callback"
        ));
        assert!(!is_native_redirect("javascript:alert(1)"));
        // Errors are redirected to the user's own machine only.
        for ok in [
            "cursor://anysphere.cursor-mcp/oauth/callback",
            "vscode://vscode.github-authentication/did-authenticate",
            "vscode-insiders://x/cb",
            "windsurf://codeium.windsurf/cb",
            "claude://claude.ai/cb",
            "com.example.app:/callback",
            "http://127.0.0.1:43210/callback",
            "http://localhost:8787/callback",
            "http://[::1]:1/cb",
        ] {
            assert!(error_redirect_allowed(ok), "{ok}");
        }
        for no in [
            "myapp:/cb",
            "cursorx://a/b",
            "https://claude.ai/api/mcp/auth_callback",
            "http://example.com/cb",
            "not a uri",
        ] {
            assert!(!error_redirect_allowed(no), "{no}");
        }
        assert!(is_native_redirect("myapp:/cb"));
    }
}
