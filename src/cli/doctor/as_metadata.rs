//! Judging an authorization server's metadata (RFC 8414, OpenID Connect Discovery), as an MCP
//! client reads it after the protected resource's (`metadata`). Pure: the documents come in,
//! checks come out.

use serde_json::Value;
use url::Url;

use super::discovery::{self, AsForm, Doc};
use super::report::Check;

/// What an issuer's metadata says, judged; the document clients would use, if any.
pub fn judge_authorization_server(
    issuer: &str,
    found: &[(AsForm, String, Doc)],
) -> (Vec<Check>, Option<Value>) {
    let Ok(issuer_url) = Url::parse(issuer) else {
        return (
            vec![Check::fail(
                "as.metadata",
                format!("{issuer:?} is not a URL"),
                "name the issuer by its URL in authorization_servers",
            )],
            None,
        );
    };
    let mut checks = Vec::new();
    let first_found = found.iter().position(|(_, _, d)| d.found().is_some());
    let Some(at) = first_found else {
        let seen: Vec<String> = found
            .iter()
            .map(|(_, u, d)| format!("{u}: {}", d.describe()))
            .collect();
        let oauth = found.first().map_or("", |(_, u, _)| u.as_str());
        checks.push(Check::fail(
            "as.metadata",
            format!("no metadata for {issuer} ({})", seen.join("; ")),
            format!("serve RFC 8414 authorization server metadata at {oauth}"),
        ));
        return (checks, None);
    };
    // Clients move on past a 404 only.
    let blocking: Vec<String> = found[..at]
        .iter()
        .filter(|(_, _, d)| matches!(d, Doc::Bad(_)))
        .map(|(_, u, d)| format!("{u}: {}", d.describe()))
        .collect();
    let forms: Vec<&str> = found
        .iter()
        .filter(|(_, _, d)| d.found().is_some())
        .map(|(f, _, _)| f.name())
        .collect();
    checks.push(if !blocking.is_empty() {
        Check::fail(
            "as.metadata",
            format!("{issuer}: {}; clients stop there before the metadata found further on", blocking.join("; ")),
            "answer 404 where no metadata is served, or serve it there",
        )
    } else if found[at].0 != AsForm::Oauth {
        let oauth = &found[0].1;
        Check::warn(
            "as.metadata",
            format!("{issuer}: only OpenID discovery is served; clients of MCP 2025-03-26 read RFC 8414 metadata only"),
            format!("serve the same document at {oauth} too"),
        )
    } else {
        Check::ok("as.metadata", format!("{issuer}: {}", forms.join(", ")))
    });
    let wrong: Vec<String> = found
        .iter()
        .filter_map(|(_, u, d)| {
            let said = d.found()?.get("issuer").and_then(Value::as_str);
            (said != Some(issuer)).then(|| format!("{u} says {}", said.unwrap_or("nothing")))
        })
        .collect();
    checks.push(if wrong.is_empty() {
        Check::ok("as.issuer", format!("`issuer` is {issuer} in every document"))
    } else {
        Check::fail(
            "as.issuer",
            format!("{}, not {issuer}: clients must reject metadata for another issuer (RFC 8414 §3.3)", wrong.join("; ")),
            format!("make `issuer` exactly {issuer}, or list the issuer it names in the protected resource's authorization_servers"),
        )
    });
    let doc = found[at].2.found().cloned().unwrap_or_default();
    checks.push(judge_endpoints(&issuer_url, &doc));
    checks.push(judge_pkce(issuer, &doc));
    checks.push(judge_registration(issuer, &doc));
    checks.push(judge_iss(issuer, &doc));
    (checks, Some(doc))
}

fn strings<'a>(doc: &'a Value, key: &str) -> Option<Vec<&'a str>> {
    doc.get(key)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
}

pub fn judge_pkce(issuer: &str, doc: &Value) -> Check {
    match strings(doc, "code_challenge_methods_supported") {
        Some(m) if m.contains(&"S256") => Check::ok("as.pkce", format!("{issuer}: PKCE S256")),
        Some(m) => Check::fail(
            "as.pkce",
            format!(
                "{issuer}: code_challenge_methods_supported is {m:?}, without S256: MCP clients refuse to go on"
            ),
            "support PKCE with S256 and list it: \"code_challenge_methods_supported\": [\"S256\"]",
        ),
        None => Check::fail(
            "as.pkce",
            format!(
                "{issuer}: no code_challenge_methods_supported: MCP clients take it as no PKCE and refuse to go on"
            ),
            "support PKCE with S256 and list it: \"code_challenge_methods_supported\": [\"S256\"]",
        ),
    }
}

pub fn judge_registration(issuer: &str, doc: &Value) -> Check {
    let cimd = doc.get("client_id_metadata_document_supported") == Some(&Value::Bool(true));
    let dcr = doc.get("registration_endpoint").and_then(Value::as_str);
    match (cimd, dcr) {
        (true, Some(_)) => Check::ok(
            "as.registration",
            format!("{issuer}: client ID metadata documents and dynamic registration"),
        ),
        (true, None) => Check::ok(
            "as.registration",
            format!("{issuer}: client ID metadata documents"),
        ),
        (false, Some(_)) => Check::ok(
            "as.registration",
            format!(
                "{issuer}: dynamic registration (no client ID metadata documents, which MCP 2025-11-25 clients prefer)"
            ),
        ),
        (false, None) => Check::warn(
            "as.registration",
            format!(
                "{issuer}: neither client ID metadata documents nor dynamic registration: each client needs a client_id made for it beforehand"
            ),
            "accept client ID metadata documents (\"client_id_metadata_document_supported\": true) or dynamic registration (a registration_endpoint)",
        ),
    }
}

pub fn judge_iss(issuer: &str, doc: &Value) -> Check {
    if doc.get("authorization_response_iss_parameter_supported") == Some(&Value::Bool(true)) {
        Check::ok(
            "as.iss",
            format!("{issuer}: iss in authorization responses (RFC 9207)"),
        )
    } else {
        Check::warn(
            "as.iss",
            format!(
                "{issuer}: authorization_response_iss_parameter_supported is not true: a client using several authorization servers cannot tell their redirects apart (mix-up)"
            ),
            "return iss in authorization responses and advertise \"authorization_response_iss_parameter_supported\": true (RFC 9207)",
        )
    }
}

fn judge_endpoints(issuer: &Url, doc: &Value) -> Check {
    let mut problems = Vec::new();
    if !discovery::is_secure(issuer) {
        problems.push(format!("the issuer {issuer} is not https"));
    }
    for (key, required) in [
        ("authorization_endpoint", true),
        ("token_endpoint", true),
        ("registration_endpoint", false),
        ("jwks_uri", false),
    ] {
        match doc.get(key).and_then(Value::as_str) {
            None if required => problems.push(format!("no {key}")),
            Some(u) if !Url::parse(u).is_ok_and(|u| discovery::is_secure(&u)) => {
                problems.push(format!("{key} {u} is not an https URL"));
            }
            _ => {}
        }
    }
    if strings(doc, "response_types_supported").is_some_and(|t| !t.contains(&"code")) {
        problems.push("response_types_supported lacks \"code\"".into());
    }
    if strings(doc, "grant_types_supported").is_some_and(|g| !g.contains(&"authorization_code")) {
        problems.push("grant_types_supported lacks \"authorization_code\"".into());
    }
    if problems.is_empty() {
        Check::ok(
            "as.endpoints",
            format!(
                "{issuer}: authorization and token endpoints listed, over https (or on this machine)",
                issuer = issuer.as_str().trim_end_matches('/')
            ),
        )
    } else {
        Check::fail(
            "as.endpoints",
            format!(
                "{}: {}",
                issuer.as_str().trim_end_matches('/'),
                problems.join("; ")
            ),
            "serve the authorization code flow over https and list its endpoints in the metadata",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::doctor::report::Status;
    use serde_json::json;

    fn statuses(checks: &[Check]) -> Vec<(&str, Status)> {
        checks.iter().map(|c| (c.id.as_str(), c.status)).collect()
    }

    fn as_doc(issuer: &str) -> Value {
        json!({
            "issuer": issuer,
            "authorization_endpoint": format!("{issuer}/authorize"),
            "token_endpoint": format!("{issuer}/token"),
            "registration_endpoint": format!("{issuer}/register"),
            "response_types_supported": ["code"],
            "code_challenge_methods_supported": ["S256"],
            "client_id_metadata_document_supported": true,
            "authorization_response_iss_parameter_supported": true,
        })
    }

    #[test]
    fn a_complete_authorization_server_is_all_ok() {
        let issuer = "https://auth.example.com/tenant";
        let forms = discovery::as_locations(&Url::parse(issuer).expect("url"));
        let found: Vec<(AsForm, String, Doc)> = forms
            .into_iter()
            .map(|(f, u)| (f, u, Doc::Found(as_doc(issuer))))
            .collect();
        let (checks, doc) = judge_authorization_server(issuer, &found);
        assert!(doc.is_some());
        assert!(checks.iter().all(|c| c.status == Status::Ok), "{checks:#?}");
    }

    #[test]
    fn what_clients_trip_on_in_authorization_server_metadata_fails() {
        let issuer = "https://auth.example.com";
        let mut doc = as_doc(issuer);
        doc["issuer"] = json!("https://auth.example.com/");
        doc["code_challenge_methods_supported"] = json!(["plain"]);
        doc.as_object_mut().map(|o| {
            o.remove("client_id_metadata_document_supported");
            o.remove("registration_endpoint");
            o.remove("authorization_response_iss_parameter_supported")
        });
        doc["token_endpoint"] = json!("http://auth.example.com/token");
        let found = vec![
            (
                AsForm::Oauth,
                format!("{issuer}/.well-known/oauth-authorization-server"),
                Doc::Found(doc),
            ),
            (
                AsForm::OidcInserted,
                format!("{issuer}/.well-known/openid-configuration"),
                Doc::Missing(404),
            ),
        ];
        let (checks, _) = judge_authorization_server(issuer, &found);
        assert_eq!(
            statuses(&checks),
            [
                ("as.metadata", Status::Ok),
                ("as.issuer", Status::Fail),
                ("as.endpoints", Status::Fail),
                ("as.pkce", Status::Fail),
                ("as.registration", Status::Warn),
                ("as.iss", Status::Warn)
            ]
        );
        // OpenID only: a warning; a 500 before it: clients stop there.
        let oidc_only = vec![
            (AsForm::Oauth, "https://a/x".to_owned(), Doc::Missing(404)),
            (
                AsForm::OidcInserted,
                "https://a/y".to_owned(),
                Doc::Found(as_doc(issuer)),
            ),
        ];
        assert_eq!(
            judge_authorization_server(issuer, &oidc_only).0[0].status,
            Status::Warn
        );
        let broken = vec![
            (
                AsForm::Oauth,
                "https://a/x".to_owned(),
                Doc::Bad("HTTP 500".into()),
            ),
            (
                AsForm::OidcInserted,
                "https://a/y".to_owned(),
                Doc::Found(as_doc(issuer)),
            ),
        ];
        assert_eq!(
            judge_authorization_server(issuer, &broken).0[0].status,
            Status::Fail
        );
        let nothing = vec![(AsForm::Oauth, "https://a/x".to_owned(), Doc::Missing(404))];
        let (checks, doc) = judge_authorization_server(issuer, &nothing);
        assert_eq!(statuses(&checks), [("as.metadata", Status::Fail)]);
        assert!(doc.is_none());
        assert_eq!(judge_pkce(issuer, &json!({})).status, Status::Fail);
    }
}
