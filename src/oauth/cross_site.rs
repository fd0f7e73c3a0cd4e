//! The sign-in and consent forms accept posts from their own pages only. The double-submit
//! CSRF token guards them too, but its cookie is not `__Host-` over plain http (a sibling host
//! can plant one), so the browser's own word on where a post comes from is checked first:
//! an `Origin` that is not the public URL's, or `Sec-Fetch-Site: cross-site`, is refused.

use actix_web::HttpRequest;
use actix_web::http::header::{HeaderName, ORIGIN};

static SEC_FETCH_SITE: HeaderName = HeaderName::from_static("sec-fetch-site");

/// Why a form post did not come from our own pages, if it did not.
pub fn refused(req: &HttpRequest, public_url: &str) -> Option<&'static str> {
    let origins: Vec<_> = req.headers().get_all(ORIGIN).collect();
    match origins.as_slice() {
        [] => {}
        [one] if one.to_str().is_ok_and(|o| is_own_origin(o, public_url)) => {}
        _ => return Some("Origin is not this server's"),
    }
    let cross_site = req
        .headers()
        .get_all(&SEC_FETCH_SITE)
        .any(|v| v.as_bytes().eq_ignore_ascii_case(b"cross-site"));
    cross_site.then_some("Sec-Fetch-Site: cross-site")
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
        assert_eq!(with(&[]), None, "no Origin: the CSRF token decides");
        assert_eq!(with(&[("origin", "https://auth.example.com")]), None);
        assert_eq!(
            with(&[
                ("origin", "https://auth.example.com"),
                ("sec-fetch-site", "same-origin")
            ]),
            None
        );
        for bad in [
            &[("origin", "https://evil.example")][..],
            &[("origin", "null")],
            &[("origin", "http://auth.example.com")],
            &[("origin", "https://auth.example.com:8443")],
            &[("origin", "https://sub.auth.example.com")],
            &[("origin", "https://auth.example.com/")],
            &[
                ("origin", "https://auth.example.com"),
                ("origin", "https://evil.example"),
            ],
            &[("sec-fetch-site", "cross-site")],
            &[("sec-fetch-site", "Cross-Site")],
            &[
                ("origin", "https://auth.example.com"),
                ("sec-fetch-site", "cross-site"),
            ],
        ] {
            assert!(with(bad).is_some(), "{bad:?}");
        }
    }
}
