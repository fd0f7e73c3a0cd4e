//! Validated values from the edge: slugs, names, emails, scopes, URLs. Each parser returns the
//! reason a value is refused, phrased for an error message naming the field.

use url::Url;

/// A DNS label: 1–63 of `a-z 0-9 -`, not starting or ending with `-`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slug(String);

impl Slug {
    pub fn parse(s: &str) -> Result<Slug, String> {
        let ok_chars = s
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if s.is_empty() || s.len() > 63 || !ok_chars || s.starts_with('-') || s.ends_with('-') {
            return Err("must be a DNS label: 1-63 characters of a-z, 0-9 and '-', not starting or ending with '-'".into());
        }
        Ok(Slug(s.to_owned()))
    }

    /// A slug made from a display name (`"Weather Server!"` -> `weather-server`).
    pub fn derive(name: &str) -> Option<Slug> {
        let mut out = String::new();
        for c in name.chars() {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                out.push(c);
            } else if !out.ends_with('-') && !out.is_empty() {
                out.push('-');
            }
            if out.len() >= 63 {
                break;
            }
        }
        let trimmed = out.trim_end_matches('-');
        Slug::parse(trimmed).ok()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// Characters that make text lie about itself: controls, bidi overrides, zero-width marks.
fn is_deceptive(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
}

/// A display name: trimmed, 1–`max` characters, no control or invisible formatting characters.
pub fn name(s: &str, max: usize) -> Result<String, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("must not be empty".into());
    }
    if t.chars().count() > max {
        return Err(format!("must be at most {max} characters"));
    }
    if t.chars().any(is_deceptive) {
        return Err("must not contain control or invisible formatting characters".into());
    }
    Ok(t.to_owned())
}

/// An email address, loosely: one `@` with text on both sides, no spaces, at most 254 bytes.
/// Stored as given; compared case-insensitively by the database.
pub fn email(s: &str) -> Result<String, String> {
    let t = s.trim();
    let valid = t.len() <= 254
        && t.split('@').count() == 2
        && t.split('@').all(|p| !p.is_empty())
        && !t.chars().any(|c| c.is_whitespace() || is_deceptive(c));
    if valid {
        Ok(t.to_owned())
    } else {
        Err("must be an email address".into())
    }
}

/// An OAuth scope token (RFC 6749 §3.3): printable ASCII except space, `"` and `\`, ≤ 64.
pub fn scope_token(s: &str) -> Result<String, String> {
    let valid = !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b));
    if valid {
        Ok(s.to_owned())
    } else {
        Err(format!("{s:?} is not a valid scope"))
    }
}

/// The scope a tool requires: a scope token that is not one of the reserved names
/// ([`super::scopes::RESERVED_SCOPES`]).
pub fn tool_scope(s: &str) -> Result<String, String> {
    let s = scope_token(s)?;
    if super::scopes::is_reserved(&s) {
        return Err(format!(
            "{s:?} is reserved for OpenID Connect and refresh tokens ({}): name the tool's scope otherwise, e.g. \"tools:{s}\"",
            super::scopes::RESERVED_SCOPES.join(", ")
        ));
    }
    Ok(s)
}

/// An absolute `https` URL with a host and no fragment or credentials.
pub fn https_url(s: &str) -> Result<Url, String> {
    let url = absolute_url(s)?;
    if url.scheme() != "https" {
        return Err("must be an https URL".into());
    }
    Ok(url)
}

/// An upstream address: absolute `http` or `https` URL with a host, no fragment or credentials.
pub fn upstream_url(s: &str) -> Result<Url, String> {
    let url = absolute_url(s)?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("must be an http or https URL".into());
    }
    // What the front door's client can connect to: for https, a host name TLS accepts (the
    // URL parser allows `-a.example` or labels over 63 characters, which no certificate names).
    if crate::domain::endpoint::Endpoint::new(url.clone()).is_none() {
        return Err("must have a host name the front door can connect to over TLS".into());
    }
    Ok(url)
}

fn absolute_url(s: &str) -> Result<Url, String> {
    if s.len() > 2048 {
        return Err("must be at most 2048 characters".into());
    }
    let url = Url::parse(s).map_err(|e| format!("is not an absolute URL ({e})"))?;
    if url.host_str().is_none_or(str::is_empty) {
        return Err("must have a host".into());
    }
    if url.fragment().is_some() {
        return Err("must not have a fragment".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not contain credentials".into());
    }
    Ok(url)
}

/// Is this host a loopback name or address (`localhost`, `127.0.0.1`, `[::1]`)?
pub fn is_loopback_host(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// A redirect URI a client may register: absolute, no fragment, `https`, or `http` on a
/// loopback host (RFC 8252 §7.3).
pub fn redirect_uri(s: &str) -> Result<Url, String> {
    let url = absolute_url(s)?;
    match url.scheme() {
        "https" => Ok(url),
        "http" if is_loopback_host(&url) => Ok(url),
        "http" => {
            Err("http is allowed only for loopback hosts (localhost, 127.0.0.1, [::1])".into())
        }
        _ => Err("must be an https URL or an http loopback URL".into()),
    }
}

/// An issuer identifier (RFC 8414 §2): https, no query, no fragment.
pub fn issuer(s: &str) -> Result<Url, String> {
    let url = https_url(s)?;
    if url.query().is_some() {
        return Err("must not have a query (RFC 8414 §2)".into());
    }
    Ok(url)
}

/// A resource URI in the form servers are looked up by: an absolute http(s) URI without query,
/// fragment or credentials, its scheme and host lowercase, no default port, and no trailing
/// slash (a bare origin is `scheme://host[:port]`). `None` when it cannot name a server.
pub fn normalize_resource(resource: &str) -> Option<String> {
    if resource.len() > 2048 {
        return None;
    }
    let url = Url::parse(resource).ok()?;
    if !matches!(url.scheme(), "http" | "https")
        || url.host_str().is_none_or(str::is_empty)
        || url.query().is_some()
        || url.fragment().is_some()
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return None;
    }
    let path = url.path();
    let path = path.strip_suffix('/').unwrap_or(path);
    Some(format!("{}{path}", url.origin().ascii_serialization()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        assert!(Slug::parse("weather-server").is_ok());
        assert!(Slug::parse("a").is_ok());
        for bad in ["", "-a", "a-", "A", "a_b", "a.b", &"a".repeat(64), "é"] {
            assert!(Slug::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Slug::derive("Weather Server!")
                .map(Slug::into_string)
                .as_deref(),
            Some("weather-server")
        );
        assert_eq!(
            Slug::derive("  --Ünïcode ok")
                .map(Slug::into_string)
                .as_deref(),
            Some("n-code-ok")
        );
        assert!(Slug::derive("!!!").is_none());
    }

    #[test]
    fn names() {
        assert_eq!(name("  My Server ", 255).as_deref(), Ok("My Server"));
        assert!(name("", 255).is_err());
        assert!(name("a\r\nb", 255).is_err());
        assert!(name("evil\u{202E}txt", 255).is_err());
        assert!(name(&"x".repeat(256), 255).is_err());
        assert!(name("日本語のサーバー", 255).is_ok());
    }

    #[test]
    fn urls() {
        assert!(https_url("https://auth.example.com/x").is_ok());
        assert!(https_url("http://auth.example.com").is_err());
        assert!(https_url("https://u:p@auth.example.com").is_err());
        assert!(https_url("https://auth.example.com/#f").is_err());
        assert!(https_url("/relative").is_err());
        assert!(issuer("https://auth.example.com?x=1").is_err());
        assert!(upstream_url("http://127.0.0.1:3001/mcp").is_ok());
        assert!(upstream_url("ftp://x").is_err());
        assert!(upstream_url("https://mcp.example.com/mcp").is_ok());
        assert!(upstream_url("https://[::1]:8443/mcp").is_ok());
        // Hosts the URL parser takes but TLS does not.
        assert!(upstream_url("https://-a.example/mcp").is_err());
        assert!(upstream_url(&format!("https://{}.example/mcp", "a".repeat(64))).is_err());
        assert!(redirect_uri("http://127.0.0.1:9999/cb").is_ok());
        assert!(redirect_uri("http://localhost/cb").is_ok());
        assert!(redirect_uri("http://[::1]:1/cb").is_ok());
        assert!(redirect_uri("http://example.com/cb").is_err());
        assert!(redirect_uri("http://localhost.evil.com/cb").is_err());
        assert!(redirect_uri("https://app.example.com/cb#frag").is_err());
        assert!(redirect_uri("javascript:alert(1)").is_err());
    }

    #[test]
    fn scopes_and_emails() {
        assert!(scope_token("mcp:read").is_ok());
        assert!(scope_token("a b").is_err());
        assert!(scope_token("a\"b").is_err());
        assert!(tool_scope("repo:delete").is_ok());
        assert!(tool_scope("mcp:write").is_ok());
        for reserved in super::super::scopes::RESERVED_SCOPES {
            let e = tool_scope(reserved).expect_err(reserved);
            assert!(e.contains("reserved"), "{e}");
        }
        assert!(email("a@b.example").is_ok());
        assert!(email("a@@b").is_err());
        assert!(email("no-at").is_err());
        assert!(email("a @b").is_err());
    }

    #[test]
    fn resources_are_normalised() {
        let n = |s: &str| normalize_resource(s);
        let want = Some("https://h.example/mcp/x".to_owned());
        for same in [
            "https://h.example/mcp/x",
            "https://h.example/mcp/x/",
            "HTTPS://H.Example/mcp/x",
            "https://h.example:443/mcp/x",
        ] {
            assert_eq!(n(same), want, "{same}");
        }
        assert_eq!(
            n("http://127.0.0.1:8080/"),
            Some("http://127.0.0.1:8080".into())
        );
        assert_eq!(n("https://a.example"), Some("https://a.example".into()));
        assert_eq!(
            n("http://a.example:80/m"),
            Some("http://a.example/m".into())
        );
        // The path keeps its case; one trailing slash goes, not two.
        assert_eq!(
            n("https://h.example/MCP/x"),
            Some("https://h.example/MCP/x".into())
        );
        assert_eq!(
            n("https://h.example/mcp/x//"),
            Some("https://h.example/mcp/x/".into())
        );
        for bad in [
            "https://h.example/mcp/x#f",
            "https://h.example/mcp/x?q=1",
            "https://u:p@h.example/mcp/x",
            "ftp://h.example/x",
            "urn:x:y",
            "not a url",
            "",
        ] {
            assert_eq!(n(bad), None, "{bad}");
        }
    }
}
