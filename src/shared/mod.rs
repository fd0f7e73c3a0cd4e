//! What several parts share, below all of them and above `store/` and `domain/`: the rate
//! limiter, the log queue and hub, the upstream HTTP client and the destination policy its
//! connections pass, the JWKS cache.

pub mod destinations;
pub mod jwks;
pub mod log_queue;
pub mod logs;
pub mod rate_limit;
pub mod request_id;
pub mod upstream;
