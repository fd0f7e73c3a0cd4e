//! Request rate limits for the control API (`X-RateLimit-*` on every response, 429 past the
//! limit), and the failed-login throttle shared with the login page.

use actix_web::ResponseError;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;

use super::ControlState;
use crate::error::ApiError;
use crate::shared::rate_limit::{Decision, address_bucket, credential_bucket, retry_secs};
use crate::store::Store;

static LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
static REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
static RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");

/// Middleware for the control API scopes.
pub async fn limit(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let services = (
        super::auth::service::<ControlState>(req.request()),
        super::auth::service::<Store>(req.request()),
    );
    let (control, store) = match services {
        (Ok(control), Ok(store)) => (control, store),
        (Err(e), _) | (_, Err(e)) => return Ok(req.into_response(e.error_response())),
    };
    let limiter = &control.limiter;
    let now = crate::domain::now();
    // A malformed credential is the extractor's to refuse; here it counts as none.
    let token = super::auth::presented(req.request())
        .ok()
        .flatten()
        .map(|(t, _)| t);
    let own = token.as_deref().and_then(|t| credential_bucket(limiter, t));
    let by_address = own.is_none();
    let mut decision = match own {
        Some(bucket) => limiter.check(bucket),
        None => limiter.check(address_bucket(req.peer_addr())),
    };
    // The address is spent (perhaps by someone else behind the same one), but a credential that
    // verifies is limited on its own bucket, not held back with the address.
    if let (Decision::Limited { .. }, true, Some(t)) = (&decision, by_address, token.as_deref())
        && super::auth::verifies(&store, &control, t).await
        && let Some(bucket) = credential_bucket(limiter, t)
    {
        decision = limiter.check(bucket);
    }
    let (mut res, remaining, reset) = match decision {
        Decision::Allowed {
            remaining,
            reset_in,
        } => {
            let res = next.call(req).await?.map_into_boxed_body();
            (res, remaining, now + reset_in.as_secs() as i64 + 1)
        }
        Decision::Limited { retry_after } => {
            let secs = retry_secs(retry_after);
            let err = ApiError::RateLimited { retry_after: secs };
            (
                req.into_response(err.error_response()),
                0,
                now + secs as i64,
            )
        }
    };
    let headers = res.headers_mut();
    headers.insert(LIMIT.clone(), HeaderValue::from(limiter.per_minute()));
    headers.insert(REMAINING.clone(), HeaderValue::from(remaining));
    headers.insert(RESET.clone(), HeaderValue::from(reset));
    Ok(res)
}
