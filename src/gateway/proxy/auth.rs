//! Who is calling: the bearer token (only from the `Authorization` header), verified; the
//! caller's rate-limit bucket charged; the scopes the request needs held by the token.

use std::sync::Arc;

use actix_web::HttpRequest;
use actix_web::http::header;

use super::{Env, Trace};
use crate::gateway::error::GatewayError;
use crate::services::gateway::policy;
use crate::services::gateway::registry::ServerEntry;
use crate::services::gateway::verify::{Verified, VerifyError};
use crate::shared::rate_limit::{Decision, Limiter};

/// `Authorization: Bearer <token>`: `Ok(None)` without one (or with another scheme: RFC 6750
/// §3.1 answers an unsupported method like a missing one), `Err` when malformed.
pub(super) fn bearer(req: &HttpRequest) -> Result<Option<&str>, ()> {
    let Some(h) = req.headers().get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let v = h.to_str().map_err(|_| ())?;
    let (scheme, token) = v.split_once(' ').unwrap_or((v, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Ok(None);
    }
    let token = token.trim();
    if token.is_empty() {
        Err(())
    } else {
        Ok(Some(token))
    }
}

/// Charges the bucket of the caller's address at this server (callers without a good token).
pub(super) fn charge_address(
    limiter: &Limiter,
    server: &ServerEntry,
    req: &HttpRequest,
) -> Result<(), GatewayError> {
    let key = format!(
        "{}|{}",
        server.id,
        crate::shared::rate_limit::address_bucket(req.peer_addr())
    );
    charged(limiter.check(key))
}

/// Charges the bucket of the token's owner (subject and client) at this server.
pub(super) fn charge_owner(
    limiter: &Limiter,
    server: &ServerEntry,
    who: &Verified,
) -> Result<(), GatewayError> {
    charged(limiter.check(format!("{}|{}", server.id, who.owner)))
}

fn charged(decision: Decision) -> Result<(), GatewayError> {
    match decision {
        Decision::Limited { retry_after } => Err(GatewayError::RateLimited { retry_after }),
        _ => Ok(()),
    }
}

/// The caller, from the token `presented`; a refused token is charged to the caller's
/// address like none. `needed` are the scopes the body asks for (what a challenge names).
pub(super) async fn authenticate(
    env: Env<'_>,
    server: &ServerEntry,
    presented: Result<Option<&str>, ()>,
    needed: &[String],
    limiter: &Limiter,
    req: &HttpRequest,
    trace: &mut Trace,
) -> Result<Arc<Verified>, GatewayError> {
    let challenge_scope = || {
        if needed.is_empty() {
            server.base_scope().to_owned()
        } else {
            needed.join(" ")
        }
    };
    let token = match presented {
        Ok(Some(t)) => t,
        Ok(None) => {
            trace.auth_failure = Some("missing");
            return Err(GatewayError::MissingToken {
                scope: challenge_scope(),
            });
        }
        Err(()) => {
            trace.auth_failure = Some("malformed");
            return Err(GatewayError::MalformedAuthorization {
                scope: challenge_scope(),
            });
        }
    };
    let verifier = &env.gateway.verifier;
    let verified = match verifier.verify(server, token).await {
        Ok(v) => v,
        Err(e) => {
            trace.auth_failure = Some(e.reason());
            if matches!(e, VerifyError::IssuerUnavailable) {
                tracing::warn!(server = %server.slug, "token not checked: the issuer's keys are unavailable");
                return Err(GatewayError::IssuerUnavailable);
            }
            charge_address(limiter, server, req)?;
            return Err(GatewayError::InvalidToken {
                scope: challenge_scope(),
                cause: e,
            });
        }
    };
    trace.subject = Some(verified.subject.clone());
    trace.client_id = verified.client_id.clone();
    Ok(verified)
}

/// Every scope the request needs must be held by the token.
pub(super) fn authorize(who: &Verified, needed: &[String]) -> Result<(), GatewayError> {
    let missing: Vec<&String> = needed
        .iter()
        .filter(|n| !policy::satisfied(&who.scopes, n))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    // Everything the request needs plus what the token already holds: clients re-authorize
    // with exactly this scope, and must not lose access they had (step-up, not swap).
    let mut wanted: Vec<&str> = who
        .scopes
        .iter()
        .map(String::as_str)
        .chain(needed.iter().map(String::as_str))
        .collect();
    wanted.sort_unstable();
    wanted.dedup();
    let description = format!(
        "this request needs the scope {}",
        missing
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    );
    Err(GatewayError::InsufficientScope {
        scope: wanted.join(" "),
        description,
    })
}
