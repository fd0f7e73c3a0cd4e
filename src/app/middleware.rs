//! The middleware every request passes: its id, and one access-log line.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceResponse};

use crate::shared::request_id::{REQUEST_ID, request_id};

/// One log line per request: method, path (never the query: it may hold codes), status,
/// latency and request id. The id is echoed in `X-Request-Id`.
pub(super) fn access_log<S, B>(
    req: actix_web::dev::ServiceRequest,
    srv: &S,
) -> impl std::future::Future<Output = Result<ServiceResponse<B>, actix_web::Error>> + use<S, B>
where
    S: Service<
            actix_web::dev::ServiceRequest,
            Response = ServiceResponse<B>,
            Error = actix_web::Error,
        >,
    B: MessageBody,
{
    let start = Instant::now();
    let id = request_id(req.headers());
    // Handlers (the access log above all) and upstreams see the id the caller will see.
    let mut req = req;
    req.headers_mut().insert(REQUEST_ID.clone(), id.clone());
    let method = req.method().clone();
    // The path is copied only when the line will be written.
    let path = tracing::enabled!(target: "ezforge::access", tracing::Level::INFO)
        .then(|| req.path().to_owned());
    let fut = srv.call(req);
    async move {
        let mut res = fut.await?;
        let status = res.status().as_u16();
        let latency_ms = start.elapsed().as_secs_f64() * 1000.0;
        let rid = id.to_str().unwrap_or("-");
        if let Some(err) = res.response().error().filter(|_| status >= 500) {
            tracing::error!(request_id = rid, error = %err, "request failed");
        }
        tracing::info!(
            target: "ezforge::access",
            method = %method,
            path = %path.as_deref().unwrap_or_default(),
            status,
            latency_ms = format_args!("{latency_ms:.2}"),
            request_id = rid,
        );
        res.headers_mut().insert(REQUEST_ID.clone(), id);
        Ok(res)
    }
}
