//! Form and query parameters, with RFC 6749's rule that none may appear twice.

use actix_web::HttpRequest;

use super::OAuthError;

#[derive(Debug, Default, Clone)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    /// Parses `application/x-www-form-urlencoded` text. `repeatable` names may appear more
    /// than once (their later values are kept for `all`).
    pub fn parse(text: &[u8]) -> Result<Params, OAuthError> {
        let pairs: Vec<(String, String)> = url::form_urlencoded::parse(text).into_owned().collect();
        for (i, (k, _)) in pairs.iter().enumerate() {
            if k != "resource" && pairs[..i].iter().any(|(other, _)| other == k) {
                return Err(OAuthError::invalid_request(format!(
                    "the parameter {k} appears more than once"
                )));
            }
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
