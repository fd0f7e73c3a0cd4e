//! `GET /v1/openapi.json`: the control API's OpenAPI 3.1 document, `docs/openapi.json` built into
//! the binary (a test checks it against the route table). Public, like `/v1/health`: it says
//! what the API is, nothing about this instance.

use std::sync::LazyLock;

use actix_web::HttpResponse;
use actix_web::http::header;
use bytes::Bytes;

const SOURCE: &str = include_str!("../../docs/openapi.json");

/// The document without the whitespace between tokens (a third of its size), made once.
static DOCUMENT: LazyLock<Bytes> = LazyLock::new(|| Bytes::from(minify(SOURCE)));

pub async fn get() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"))
        .body(DOCUMENT.clone())
}

/// JSON text without the whitespace outside its strings.
fn minify(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in json.chars() {
        if in_string {
            out.push(c);
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !c.is_ascii_whitespace() {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minifying_keeps_strings_and_meaning() {
        let text =
            "{\n  \"a b\": [1, 2],\n  \"q\": \"say \\\"hi\\\" \\\\\",\n  \"t\": \"x  y\"\n}\n";
        assert_eq!(
            minify(text),
            "{\"a b\":[1,2],\"q\":\"say \\\"hi\\\" \\\\\",\"t\":\"x  y\"}"
        );
        let served: serde_json::Value = serde_json::from_slice(&DOCUMENT).expect("JSON");
        let source: serde_json::Value = serde_json::from_str(SOURCE).expect("JSON");
        assert_eq!(served, source);
    }
}
