//! The authorization server's own state: its per-address rate limiter and the caches of what
//! clients publish (Client ID Metadata Documents, `private_key_jwt` clients' keys).

use super::clients::MetadataCache;
use crate::shared::jwks::JwksCache;
use crate::shared::rate_limit::Limiter;

pub struct OAuthState {
    /// Per address, on `/oauth/*`.
    pub limiter: Limiter,
    /// Client ID Metadata Documents, cached.
    pub clients: MetadataCache,
    /// The keys of `private_key_jwt` clients that publish a `jwks_uri`, cached.
    pub client_jwks: JwksCache,
}
