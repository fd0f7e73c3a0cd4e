//! Client ID Metadata Documents: an https URL as `client_id`, fetched, validated and cached.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;
use url::Url;

use super::keys::{PRIVATE_KEY_JWT, client_keys};
use super::redirects::native_or_web_redirect;
use crate::domain::validate;
use crate::outbound::Outbound;

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
pub(super) struct Document {
    pub name: String,
    pub redirect_uris: Vec<String>,
    pub grant_types: Vec<String>,
    pub auth_method: String,
    pub jwks: Option<Arc<serde_json::Value>>,
    pub jwks_uri: Option<String>,
    pub public_allowed: bool,
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

impl MetadataCache {
    /// The document at `client_id` (`url`, parsed and checked by [`document_url`]), or why it
    /// cannot be used: from the cache, else fetched with `outbound` and cached.
    pub(super) async fn document(
        &self,
        outbound: &Outbound,
        client_id: &str,
        url: &Url,
    ) -> Result<Arc<Document>, Arc<str>> {
        let cached = lock(&self.entries)
            .get(client_id)
            .filter(|hit| hit.until > Instant::now())
            .map(|hit| hit.document.clone());
        if let Some(d) = cached {
            return d;
        }
        let (document, ttl) = match fetch_document(outbound, client_id, url).await {
            Ok((doc, max_age)) => (
                Ok(doc),
                max_age
                    .unwrap_or(METADATA_DEFAULT)
                    .clamp(METADATA_FLOOR, METADATA_CEILING),
            ),
            Err(why) => (Err(why), METADATA_FAILURE_TTL),
        };
        remember(
            &mut lock(&self.entries),
            client_id,
            Cached {
                document: document.clone(),
                until: Instant::now() + ttl,
            },
        );
        document
    }
}

/// The URL of a metadata document `client_id`, if it may be one. These checks need no fetch and
/// are not cached: they cost nothing to repeat.
pub(super) fn document_url(client_id: &str) -> Result<Url, String> {
    let url = Url::parse(client_id).map_err(|_| "client_id is not a URL".to_owned())?;
    if url.path() == "/" || url.fragment().is_some() {
        return Err("a metadata document URL needs a path and no fragment".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("a metadata document URL must not contain a username or password".into());
    }
    // One client, one spelling: `/a/../b` would be fetched as `/b` under another identity.
    if url.as_str() != client_id {
        return Err(format!(
            "a metadata document URL must be in normal form (no dot segments, lowercase host, no default port): {url}"
        ));
    }
    Ok(url)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// Fetches and checks the metadata document at `client_id` (`url`, parsed); with how long it
/// may be cached.
async fn fetch_document(
    outbound: &Outbound,
    client_id: &str,
    url: &Url,
) -> Result<(Arc<Document>, Option<Duration>), Arc<str>> {
    // The document's URL is the client's identity: one served from elsewhere (through a
    // redirect, an open one included) is not the client's.
    let (json, max_age) = outbound
        .get_json_exact(client_id)
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
}
