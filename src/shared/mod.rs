//! What several parts share, below them and above `store/` and `domain/`: the destination
//! policy (and, as issue 21 lands, the rate limiter, the log queue and hub, the upstream
//! endpoint, the clock).

pub mod destinations;
