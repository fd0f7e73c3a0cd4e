//! Who a client is: pre-registered or dynamically registered (in the store), or a Client ID
//! Metadata Document (an https URL as `client_id`, fetched, validated and cached: `metadata`).
//! Also redirect URI rules and matching (`redirects`) and `private_key_jwt` clients' keys
//! (`keys`); client authentication is `client_auth`.

mod keys;
mod metadata;
mod redirects;

use std::sync::Arc;

use super::OAuthState;
use crate::outbound::Outbound;
use crate::store::{self, Store};

pub use keys::{ALGORITHMS, ASSERTION_ALGORITHMS, PRIVATE_KEY_JWT, client_keys};
pub use metadata::MetadataCache;
pub use redirects::{
    error_redirect_allowed, is_native_redirect, native_or_web_redirect, redirect_matches,
};

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
    let url = metadata::document_url(client_id).map_err(ClientError::Metadata)?;
    let document = oauth.clients.document(outbound, client_id, &url).await;
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
