//! Server-rendered pages (login, consent, errors): minijinja templates embedded in the binary,
//! HTML-escaped, sent with headers that forbid framing and caching.

use std::sync::OnceLock;

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use actix_web::http::header;
use minijinja::Environment;

fn env() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        // Escape what HTML needs (& < > " ') and nothing more, so URLs stay readable.
        env.set_formatter(|out, state, value| {
            if value.is_safe() || state.auto_escape() == minijinja::AutoEscape::None {
                return minijinja::escape_formatter(out, state, value);
            }
            let text = value.to_string();
            let mut escaped = String::with_capacity(text.len());
            for c in text.chars() {
                match c {
                    '&' => escaped.push_str("&amp;"),
                    '<' => escaped.push_str("&lt;"),
                    '>' => escaped.push_str("&gt;"),
                    '"' => escaped.push_str("&quot;"),
                    '\'' => escaped.push_str("&#39;"),
                    c => escaped.push(c),
                }
            }
            out.write_str(&escaped).map_err(|_| {
                minijinja::Error::new(minijinja::ErrorKind::WriteFailure, "write failed")
            })
        });
        // Every template is a .html file, so minijinja escapes every value.
        for (name, source) in [
            ("base.html", include_str!("../../templates/base.html")),
            ("login.html", include_str!("../../templates/login.html")),
            ("consent.html", include_str!("../../templates/consent.html")),
            ("error.html", include_str!("../../templates/error.html")),
        ] {
            if let Err(e) = env.add_template(name, source) {
                tracing::error!(template = name, error = %e, "template does not compile");
            }
        }
        env
    })
}

/// Renders a page with the security headers every page gets.
pub fn render(status: StatusCode, template: &str, ctx: minijinja::Value) -> HttpResponse {
    let body = env()
        .get_template(template)
        .and_then(|t| t.render(ctx))
        .unwrap_or_else(|e| {
            tracing::error!(template, error = %e, "page rendering failed");
            "<!doctype html><title>Error</title><p>Something went wrong.</p>".to_owned()
        });
    HttpResponse::build(status)
        .insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'",
        ))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        // Not `no-referrer`: with it a browser posts our own forms with `Origin: null`. With
        // `same-origin` it sends the real origin to us, and nothing (no Referer carrying the
        // authorization request) to anyone else.
        .insert_header((header::REFERRER_POLICY, "same-origin"))
        .insert_header(("x-content-type-options", "nosniff"))
        .body(body)
}

pub fn error(status: StatusCode, title: &str, message: &str) -> HttpResponse {
    render(status, "error.html", minijinja::context! { title, message })
}

/// An error page with a link the user may follow to tell the application (`app`: the scheme
/// the link opens).
pub fn error_with_link(
    status: StatusCode,
    title: &str,
    message: &str,
    link: &str,
    app: &str,
) -> HttpResponse {
    render(
        status,
        "error.html",
        minijinja::context! { title, message, link, app },
    )
}

/// Plain words for a scope on the consent page.
pub fn describe_scope(scope: &str) -> String {
    match scope {
        "mcp:read" => {
            "See this server's tools, resources and prompts, and use its read-only tools".into()
        }
        "mcp:write" => "Use tools that change data".into(),
        "mcp:execute" => "Run any of this server's tools".into(),
        "offline_access" => "Stay connected while you are away".into(),
        other => format!("The permission \u{201c}{other}\u{201d} defined by this server"),
    }
}
