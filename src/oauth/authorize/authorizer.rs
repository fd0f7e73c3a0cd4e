//! What answers authorization requests: the services both handlers use.

use actix_web::{FromRequest, HttpRequest, web};

use crate::config::Config;
use crate::oauth::{OAuthError, OAuthState};
use crate::outbound::Outbound;
use crate::services::accounts::Accounts;
use crate::services::gateway::Gateway;
use crate::store::Store;

/// What answers authorization requests (an extractor for both handlers): the gateway (the
/// issuer and the servers a request names), the client lookup (store, metadata-document cache,
/// outbound client), accounts (sign-in, sessions, cookies) and the config (lifetimes).
pub struct Authorizer {
    pub gateway: web::Data<Gateway>,
    pub store: web::Data<Store>,
    pub oauth: web::Data<OAuthState>,
    pub outbound: web::Data<Outbound>,
    pub accounts: web::Data<Accounts>,
    pub config: web::Data<Config>,
}

impl FromRequest for Authorizer {
    type Error = OAuthError;
    type Future = std::future::Ready<Result<Self, OAuthError>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        use crate::oauth::service;
        std::future::ready((|| {
            Ok(Authorizer {
                gateway: service(req)?,
                store: service(req)?,
                oauth: service(req)?,
                outbound: service(req)?,
                accounts: service(req)?,
                config: service(req)?,
            })
        })())
    }
}
