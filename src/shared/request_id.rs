//! Request ids: the caller's `X-Request-Id` if it is reasonable, else a new one; every log
//! line of a request, and its upstream, see the same.

use actix_web::http::header::{HeaderName, HeaderValue};

/// The header.
pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A request id: the caller's `X-Request-Id` if it is short and printable, else a new one.
pub fn request_id(headers: &actix_web::http::header::HeaderMap) -> HeaderValue {
    if let Some(v) = headers.get(&REQUEST_ID) {
        let ok = v.len() <= 128 && v.as_bytes().iter().all(|b| b.is_ascii_graphic());
        if ok {
            return v.clone();
        }
    }
    new_request_id()
}

/// 96 bits as 24 hex digits, from a per-thread SplitMix64 seeded by the OS. Request ids
/// correlate log lines; they are not secrets, so they need not cost a CSPRNG call each.
fn new_request_id() -> HeaderValue {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = Cell::new(u64::from_le_bytes(crate::domain::random_bytes()));
    }
    let next = |s: &Cell<u64>| {
        let x = s.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
        s.set(x);
        let z = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        let z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let (a, b) = STATE.with(|s| (next(s), next(s)));
    let mut bytes = [0u8; 12];
    bytes[..8].copy_from_slice(&a.to_le_bytes());
    bytes[8..].copy_from_slice(&b.to_le_bytes()[..4]);
    HeaderValue::from_str(&crate::crypto::hex(&bytes)).unwrap_or(HeaderValue::from_static("-"))
}
