//! The sign-in and consent forms accept posts from their own pages only. The double-submit
//! CSRF token guards them too, but its cookie is not `__Host-` over plain http (a sibling host
//! can plant one), so the browser's own word on where a post comes from is checked first.
//!
//! - `Sec-Fetch-Site: cross-site` is refused, and so is `same-site`: our pages post to
//!   themselves, which a browser reports as `same-origin`; `same-site` means a sibling host on
//!   the same registrable domain sent it, the very host that can plant the CSRF cookie.
//! - An `Origin` that is not the public URL's is refused (two of them too).
//! - `Origin: null` is what a browser sends when the page's referrer policy hides its origin
//!   (`no-referrer`; our pages say `same-origin`, so a browser sends the real one), or from a
//!   sandboxed frame or a `data:` page (which browsers report as `cross-site`, refused above).
//!   Without a `Sec-Fetch-Site` that refuses it, it tells nothing, and is treated as no
//!   `Origin` at all: the CSRF token decides.

use actix_web::HttpRequest;
use actix_web::http::header::{HeaderName, ORIGIN};

static SEC_FETCH_SITE: HeaderName = HeaderName::from_static("sec-fetch-site");

/// Why a form post did not come from our own pages, if it did not.
pub fn refused(req: &HttpRequest, public_url: &str) -> Option<&'static str> {
    for site in req.headers().get_all(&SEC_FETCH_SITE) {
        if site.as_bytes().eq_ignore_ascii_case(b"cross-site") {
            return Some("Sec-Fetch-Site: cross-site");
        }
        if site.as_bytes().eq_ignore_ascii_case(b"same-site") {
            return Some("Sec-Fetch-Site: same-site");
        }
    }
    let origins: Vec<_> = req.headers().get_all(ORIGIN).collect();
    match origins.as_slice() {
        [] => None,
        [one] if one.as_bytes() == b"null" => None,
        [one] if one.to_str().is_ok_and(|o| is_own_origin(o, public_url)) => None,
        _ => Some("Origin is not this server's"),
    }
}

/// Whether a browser's `Origin` is the public URL's (serialised as browsers do: lowercase
/// host, no default port, no path).
fn is_own_origin(origin: &str, public_url: &str) -> bool {
    url::Url::parse(public_url).is_ok_and(|u| u.origin().ascii_serialization() == origin)
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    #[test]
    fn only_our_own_origin_may_post() {
        let public = "https://Auth.Example.com:443";
        let with = |headers: &[(&str, &str)]| {
            let mut r = TestRequest::post();
            for h in headers {
                r = r.append_header(*h);
            }
            refused(&r.to_http_request(), public)
        };
        for fine in [
            &[][..],
            &[("origin", "https://auth.example.com")],
            &[
                ("origin", "https://auth.example.com"),
                ("sec-fetch-site", "same-origin"),
            ],
            // An opaque origin says nothing; the CSRF token decides.
            &[("origin", "null")],
            &[("origin", "null"), ("sec-fetch-site", "same-origin")],
            &[("origin", "null"), ("sec-fetch-site", "none")],
        ] {
            assert_eq!(with(fine), None, "{fine:?}");
        }
        for bad in [
            &[("origin", "https://evil.example")][..],
            &[("origin", "http://auth.example.com")],
            &[("origin", "https://auth.example.com:8443")],
            &[("origin", "https://sub.auth.example.com")],
            &[("origin", "https://auth.example.com/")],
            &[("origin", "NULL")],
            &[("origin", "null"), ("origin", "null")],
            &[
                ("origin", "https://auth.example.com"),
                ("origin", "https://evil.example"),
            ],
            &[("sec-fetch-site", "cross-site")],
            &[("sec-fetch-site", "Cross-Site")],
            &[("sec-fetch-site", "same-site")],
            &[("origin", "null"), ("sec-fetch-site", "cross-site")],
            &[("origin", "null"), ("sec-fetch-site", "same-site")],
            &[
                ("sec-fetch-site", "same-origin"),
                ("sec-fetch-site", "cross-site"),
            ],
            &[
                ("origin", "https://auth.example.com"),
                ("sec-fetch-site", "cross-site"),
            ],
        ] {
            assert!(with(bad).is_some(), "{bad:?}");
        }
    }
}
