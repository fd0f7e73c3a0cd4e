//! Redirect URI rules: which a client may register, which an error may be redirected to, and
//! how a requested one matches a registered one.

use url::Url;

use crate::domain::validate;

/// Schemes a browser must never be sent to as a redirect, or that are not native apps' own:
/// script and local content, and the schemes that hand a web address to a browser (an error
/// redirect to `microsoft-edge:https://…` would be an open redirect).
const DANGEROUS_SCHEMES: [&str; 22] = [
    "javascript",
    "data",
    "file",
    "vbscript",
    "about",
    "blob",
    "ws",
    "wss",
    "intent",
    "microsoft-edge",
    "microsoft-edge-holographic",
    "x-safari-http",
    "x-safari-https",
    "googlechrome",
    "googlechromes",
    "firefox",
    "opera-http",
    "opera-https",
    "ftp",
    "jar",
    "view-source",
    "filesystem",
];

/// Schemes a website may claim in a browser (HTML's `registerProtocolHandler` safelist, and
/// any `web+` one): a redirect there hands the code to whichever site registered for it, not
/// to an app.
const WEB_HANDLED_SCHEMES: [&str; 23] = [
    "bitcoin",
    "ftps",
    "geo",
    "im",
    "irc",
    "ircs",
    "magnet",
    "mailto",
    "matrix",
    "mms",
    "news",
    "nntp",
    "openpgp4fpr",
    "sftp",
    "sip",
    "sms",
    "smsto",
    "ssh",
    "tel",
    "urn",
    "webcal",
    "wtai",
    "xmpp",
];

/// Handed to a browser, or to whatever website registered for it: never a native app's own.
fn not_an_apps(scheme: &str) -> bool {
    DANGEROUS_SCHEMES.contains(&scheme)
        || WEB_HANDLED_SCHEMES.contains(&scheme)
        || scheme.starts_with("web+")
}

/// Private-use schemes without a dot (RFC 8252 §7.1 asks for a reverse domain name) of MCP
/// clients people use: Cursor (`cursor://anysphere.cursor-mcp/oauth/callback`), VS Code and
/// its Insiders build, Windsurf, Claude.
const KNOWN_APP_SCHEMES: [&str; 5] = ["cursor", "vscode", "vscode-insiders", "windsurf", "claude"];

/// Is `uri` a native app's redirect (RFC 8252): a private-use scheme or an http loopback?
pub fn is_native_redirect(uri: &str) -> bool {
    Url::parse(uri).is_ok_and(|u| match u.scheme() {
        "http" => validate::is_loopback_host(&u),
        "https" => false,
        scheme => !not_an_apps(scheme),
    })
}

/// May an error go back to `uri` as a redirect before the user has done anything? Only when it
/// reaches the user's own machine and nothing else: an http loopback, or a private-use scheme
/// that names its app (reverse domain, RFC 8252 §7.1: `com.example.app:/cb`) or is a known MCP
/// client's. Any other scheme may be one an operating system hands to a browser, which anyone
/// could register to turn this server into an open redirector.
pub fn error_redirect_allowed(uri: &str) -> bool {
    Url::parse(uri).is_ok_and(|u| match u.scheme() {
        "http" => validate::is_loopback_host(&u),
        "https" => false,
        scheme if not_an_apps(scheme) => false,
        scheme => scheme.contains('.') || KNOWN_APP_SCHEMES.contains(&scheme),
    })
}

/// A redirect URI a dynamic client may register: https; http on loopback; or, for native
/// apps, a private-use scheme (`com.example.app:/callback`, `cursor://…`, RFC 8252 §7.1) other
/// than those dangerous in a browser. Never a fragment.
pub fn native_or_web_redirect(uri: &str) -> Result<(), String> {
    if uri.len() > 2048 {
        return Err("must be at most 2048 characters".into());
    }
    let url = Url::parse(uri).map_err(|_| "is not an absolute URI".to_owned())?;
    if url.fragment().is_some() {
        return Err("must not have a fragment".into());
    }
    match url.scheme() {
        "http" | "https" => validate::redirect_uri(uri).map(|_| ()),
        s if DANGEROUS_SCHEMES.contains(&s) => Err(format!(
            "must not use the {s}: scheme (https, http on loopback, or an app's private-use scheme)"
        )),
        s if not_an_apps(s) => Err(format!(
            "must not use the {s}: scheme: a browser hands it to whichever website registered for it, not to an app"
        )),
        _ if !url.username().is_empty() || url.password().is_some() => {
            Err("must not contain a username or password".into())
        }
        _ => Ok(()),
    }
}

/// Does the requested redirect URI match a registered one? Exact match, except that a
/// loopback registration matches any port (RFC 8252 §7.3).
pub fn redirect_matches(registered: &[String], requested: &str) -> bool {
    if registered.iter().any(|r| r == requested) {
        return true;
    }
    let Ok(mut req) = Url::parse(requested) else {
        return false;
    };
    // Parsing must not have changed anything (`/a/../b`, `%2e`, case) but add the empty path's
    // `/` (`http://127.0.0.1:33418`, as VS Code registers it): compare what was sent.
    let as_sent = req.as_str() == requested
        || (req.path() == "/" && req.query().is_none() && req.as_str() == format!("{requested}/"));
    if !as_sent
        || req.scheme() != "http"
        || !validate::is_loopback_host(&req)
        || !req.username().is_empty()
        || req.password().is_some()
        || req.fragment().is_some()
    {
        return false;
    }
    if req.set_port(None).is_err() {
        return false;
    }
    registered.iter().any(|r| {
        Url::parse(r).is_ok_and(|mut reg| {
            validate::is_loopback_host(&reg)
                && reg.set_port(None).is_ok()
                && reg.as_str() == req.as_str()
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_matching() {
        let reg = vec![
            "http://127.0.0.1/callback".to_owned(),
            "https://app.example.com/cb".to_owned(),
        ];
        assert!(redirect_matches(&reg, "http://127.0.0.1:54321/callback"));
        assert!(redirect_matches(&reg, "https://app.example.com/cb"));
        let vscode = vec!["http://127.0.0.1:33418".to_owned()];
        assert!(redirect_matches(&vscode, "http://127.0.0.1:33418"));
        assert!(redirect_matches(&vscode, "http://127.0.0.1:40001"));
        assert!(redirect_matches(&vscode, "http://127.0.0.1:40001/"));
        assert!(!redirect_matches(&vscode, "http://127.0.0.1:40001/x"));
        assert!(!redirect_matches(&vscode, "http://127.0.0.1:40001?x"));
        for bad in [
            "https://app.example.com/cb?x=1",
            "https://app.example.com/cb/",
            "https://app.example.com/other",
            "http://evil@127.0.0.1/callback",
            "http://localhost.evil.com/callback",
            "http://localhost/callback",
            "http://127.0.0.1:1/callback#f",
            "http://127.0.0.1:1/callback?x",
            "http://127.0.0.1:1/callback/../callback",
            "http://127.0.0.1:1/x/../callback",
            "http://127.0.0.1:1/%63allback",
        ] {
            assert!(!redirect_matches(&reg, bad), "{bad}");
        }
    }

    #[test]
    fn schemes_a_website_can_claim_are_never_an_apps() {
        for handed_to_websites in [
            "web+evil://claude.ai/cb",
            "irc://claude.ai/cb",
            "mailto:a@b",
        ] {
            assert!(
                native_or_web_redirect(handed_to_websites).is_err(),
                "{handed_to_websites}"
            );
            assert!(
                !is_native_redirect(handed_to_websites),
                "{handed_to_websites}"
            );
            assert!(
                !error_redirect_allowed(handed_to_websites),
                "{handed_to_websites}"
            );
        }
    }

    #[test]
    fn dynamic_redirects() {
        assert!(native_or_web_redirect("com.example.app:/callback").is_ok());
        assert!(native_or_web_redirect("https://app.example.com/cb").is_ok());
        assert!(native_or_web_redirect("http://127.0.0.1:3000/cb").is_ok());
        assert!(native_or_web_redirect("http://example.com/cb").is_err());
        assert!(native_or_web_redirect("javascript:alert(1)").is_err());
        assert!(native_or_web_redirect("myapp:/cb").is_ok());
        assert!(native_or_web_redirect("cursor://anysphere.cursor-mcp/oauth/callback").is_ok());
        assert!(native_or_web_redirect("com.example.app:/cb#x").is_err());
        for bad in [
            "JavaScript:alert(1)",
            "data:text/html,x",
            "file:///etc/passwd",
            "vbscript:x",
            "blob:https://a.example/x",
            "about:blank",
            "wss://a.example/x",
            "intent://evil.example/#Intent;scheme=https;end",
            "microsoft-edge:https://evil.example/x",
            "Microsoft-Edge-Holographic:https://evil.example/x",
            "x-safari-https://evil.example/x",
            "x-safari-http://evil.example/x",
            "googlechrome://evil.example/x",
            "googlechromes://evil.example/x",
            "firefox://open-url?url=https://evil.example/x",
            "opera-http://evil.example/x",
            "opera-https://evil.example/x",
            "ftp://evil.example/x",
            "jar:https://evil.example/a.jar!/x",
            "view-source:https://evil.example/x",
            "filesystem:https://evil.example/temporary/x",
            "ws://evil.example/x",
        ] {
            assert!(native_or_web_redirect(bad).is_err(), "{bad}");
            assert!(!is_native_redirect(bad), "{bad}");
            assert!(!error_redirect_allowed(bad), "{bad}");
        }
        assert!(native_or_web_redirect("x-app://user:pw@host/cb").is_err());
        assert!(is_native_redirect(
            "cursor://anysphere.cursor-mcp/oauth/callback"
        ));
        assert!(is_native_redirect("http://localhost:8787/callback"));
        assert!(is_native_redirect("http://127.0.0.1/cb"));
        assert!(!is_native_redirect(
            "https://claude.ai/api/mcp/auth_callback"
        ));
        assert!(!is_native_redirect("javascript:alert(1)"));
        // Errors are redirected to the user's own machine only.
        for ok in [
            "cursor://anysphere.cursor-mcp/oauth/callback",
            "vscode://vscode.github-authentication/did-authenticate",
            "vscode-insiders://x/cb",
            "windsurf://codeium.windsurf/cb",
            "claude://claude.ai/cb",
            "com.example.app:/callback",
            "http://127.0.0.1:43210/callback",
            "http://localhost:8787/callback",
            "http://[::1]:1/cb",
        ] {
            assert!(error_redirect_allowed(ok), "{ok}");
        }
        for no in [
            "myapp:/cb",
            "cursorx://a/b",
            "https://claude.ai/api/mcp/auth_callback",
            "http://example.com/cb",
            "not a uri",
        ] {
            assert!(!error_redirect_allowed(no), "{no}");
        }
        assert!(is_native_redirect("myapp:/cb"));
    }
}
