//! Form and query parameters, with RFC 6749's rule that none may appear twice.

use actix_web::HttpRequest;

use super::OAuthError;

/// No OAuth request needs more parameters than this (a client sends a dozen at most).
const MAX_PARAMS: usize = 100;

#[derive(Debug, Default, Clone)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    /// Parses `application/x-www-form-urlencoded` text. `repeatable` names may appear more
    /// than once (their later values are kept for `all`).
    pub fn parse(text: &[u8]) -> Result<Params, OAuthError> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (k, v) in url::form_urlencoded::parse(text) {
            if pairs.len() == MAX_PARAMS {
                return Err(OAuthError::invalid_request(format!(
                    "too many parameters (at most {MAX_PARAMS})"
                )));
            }
            if k != "resource" && !seen.insert(k.clone()) {
                let name: String = k.chars().take(64).collect();
                return Err(OAuthError::invalid_request(format!(
                    "the parameter {name} appears more than once"
                )));
            }
            pairs.push((k.into_owned(), v.into_owned()));
        }
        Ok(Params { pairs })
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    pub fn all(&self, name: &str) -> Vec<&str> {
        self.pairs
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn require(&self, name: &str) -> Result<&str, OAuthError> {
        self.get(name)
            .ok_or_else(|| OAuthError::invalid_request(format!("{name} is required")))
    }
}

/// A form body must be `application/x-www-form-urlencoded`.
pub fn form(req: &HttpRequest, body: &[u8]) -> Result<Params, OAuthError> {
    let ct = req
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct
        .to_ascii_lowercase()
        .starts_with("application/x-www-form-urlencoded")
    {
        return Err(OAuthError::invalid_request(
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    Params::parse(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parameter_may_appear_once_except_resource() {
        let p = Params::parse(b"a=1&resource=x&resource=y&b=").expect("parses");
        assert_eq!(p.get("a"), Some("1"));
        assert_eq!(p.get("b"), None, "empty counts as absent");
        assert_eq!(p.all("resource"), ["x", "y"]);
        let e = Params::parse(b"a=1&b=2&a=3").expect_err("duplicate");
        assert!(e.description.contains("a appears more than once"), "{e}");
    }

    #[test]
    fn a_form_with_too_many_parameters_is_refused_early() {
        let ok: String = (0..MAX_PARAMS).map(|i| format!("k{i}=v&")).collect();
        assert!(Params::parse(ok.as_bytes()).is_ok());
        // 200,000 distinct names: refused at the 101st, not compared with each other.
        let hostile: String = (0..200_000).map(|i| format!("{i}=&")).collect();
        let e = Params::parse(hostile.as_bytes()).expect_err("too many");
        assert!(e.description.contains("too many parameters"), "{e}");
    }
}
