//! Judging the metadata an MCP client reads: the protected resource's (RFC 9728) and its
//! authorization servers' (RFC 8414, OpenID Connect Discovery). Pure: the documents come in,
//! checks come out.

use serde_json::Value;
use url::Url;

use super::discovery::{self, AsForm, Doc, Sameness};
use super::report::Check;

/// A document that can serve as protected-resource metadata: a JSON object with `resource`.
fn resource_of(doc: &Doc) -> Option<&str> {
    doc.found()?.get("resource")?.as_str()
}

/// The protected-resource metadata found, in the order clients look, and what to say of each.
pub struct Prm {
    pub checks: Vec<Check>,
    /// The document a client would use, with where it came from.
    pub chosen: Option<(String, Value)>,
}

/// `challenge`: the location the 401 named, if any; `inserted`: the path-inserted well-known
/// location, when the URL has a path; `root`: the root well-known location.
pub fn judge_prm(
    url: &Url,
    challenge: Option<(&str, &Doc)>,
    inserted: Option<(&str, &Doc)>,
    root: (&str, &Doc),
) -> Prm {
    let order: Vec<(&str, &Doc)> = challenge
        .into_iter()
        .chain(inserted)
        .chain(std::iter::once(root))
        .collect();
    let chosen = order
        .iter()
        .find(|(_, d)| resource_of(d).is_some())
        .and_then(|(u, d)| Some(((*u).to_owned(), d.found()?.clone())));
    let well_known = inserted.map_or(root.0, |(u, _)| u);
    let Some((from, doc)) = chosen else {
        let seen: Vec<String> = order
            .iter()
            .map(|(u, d)| format!("{u}: {}", describe_prm(d)))
            .collect();
        return Prm {
            checks: vec![Check::fail(
                "prm",
                format!("no protected-resource metadata found ({})", seen.join("; ")),
                format!(
                    "serve RFC 9728 metadata {{\"resource\": \"{url}\", \"authorization_servers\": [\"…\"]}} at {well_known}, and name it in the challenge's resource_metadata"
                ),
            )],
            chosen: None,
        };
    };
    let resource = doc.get("resource").and_then(Value::as_str).unwrap_or("");
    let mut checks = Vec::new();
    if let Some((u, d)) = challenge {
        checks.push(match resource_of(d) {
            Some(_) => Check::ok("prm.challenge", format!("{u} serves the metadata")),
            None => Check::fail(
                "prm.challenge",
                format!("{u}, named by the challenge: {}", describe_prm(d)),
                "serve the metadata at the URL resource_metadata names, or name the URL that serves it",
            ),
        });
    }
    let id = |form: &str| {
        if inserted.is_some() {
            format!("prm.{form}")
        } else {
            "prm.well_known".to_owned()
        }
    };
    // The well-known location clients look at when the challenge names none (or they do not
    // read it).
    let (wk_url, wk_doc) = inserted.unwrap_or(root);
    checks.push(match (resource_of(wk_doc), wk_doc) {
        (Some(r), _) if r == resource => Check::ok(id("path"), format!("{wk_url} serves it")),
        (Some(r), _) => Check::warn(
            id("path"),
            format!("{wk_url} names the resource {r}, but {from} names {resource}"),
            "serve one and the same document at both",
        ),
        (None, Doc::Missing(status)) => Check::warn(
            id("path"),
            format!(
                "{wk_url} answers HTTP {status}: clients that do not read the challenge look there"
            ),
            format!("serve the same document at {wk_url} too"),
        ),
        (None, d) => Check::fail(
            id("path"),
            format!("{wk_url}: {}", describe_prm(d)),
            format!("serve the metadata at {wk_url}, or answer 404 there"),
        ),
    });
    if inserted.is_some() {
        let (u, d) = root;
        checks.push(match (resource_of(d), d) {
            (Some(r), _) => Check::ok("prm.root", format!("{u} serves metadata for {r}")),
            (None, Doc::Missing(_)) => Check::ok(
                "prm.root",
                format!("{u} is not served; not needed, the metadata is found before it"),
            ),
            (None, d) => Check::warn(
                "prm.root",
                format!("{u}: {}", describe_prm(d)),
                "answer 404 there, or serve the metadata",
            ),
        });
    }
    checks.push(judge_authorization_servers(&doc));
    checks.push(judge_resource(resource, url));
    Prm {
        checks,
        chosen: Some((from, doc)),
    }
}

fn describe_prm(d: &Doc) -> String {
    match d {
        Doc::Found(_) => "a JSON document without `resource`".into(),
        d => d.describe(),
    }
}

/// The issuers a protected resource names (those that are URLs).
pub fn authorization_servers(doc: &Value) -> Vec<String> {
    doc.get("authorization_servers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn judge_authorization_servers(doc: &Value) -> Check {
    let servers = authorization_servers(doc);
    if servers.is_empty() {
        return Check::fail(
            "prm.authorization_servers",
            "the metadata names no authorization server: clients cannot get a token",
            "list the issuer clients get tokens from: \"authorization_servers\": [\"https://…\"]",
        );
    }
    let bad: Vec<&String> = servers
        .iter()
        .filter(|s| !Url::parse(s).is_ok_and(|u| discovery::is_secure(&u)))
        .collect();
    if !bad.is_empty() {
        return Check::fail(
            "prm.authorization_servers",
            format!(
                "not https issuer URLs: {}",
                bad.iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            "name each issuer by its https URL, exactly as its metadata's `issuer`",
        );
    }
    Check::ok("prm.authorization_servers", servers.join(", "))
}

/// RFC 8707: clients send the metadata's `resource` as the `resource` parameter, after checking
/// it is the server they were given.
pub fn judge_resource(resource: &str, url: &Url) -> Check {
    match discovery::compare_resource(resource, url) {
        Sameness::Exact => Check::ok(
            "resource",
            format!("{resource}: the URL itself, which clients send as the RFC 8707 resource"),
        ),
        Sameness::Normalised => Check::ok(
            "resource",
            format!("{resource}: the URL, normalised (case, default port, trailing slash)"),
        ),
        Sameness::Parent => Check::warn(
            "resource",
            format!(
                "{resource} is above the URL {url}: clients that compare exactly refuse it, and its tokens are good for everything under it"
            ),
            format!("set \"resource\": \"{url}\""),
        ),
        Sameness::Different => Check::fail(
            "resource",
            format!(
                "the metadata is for {resource}, not {url}: MCP clients refuse metadata for another resource (RFC 9728 §3.3)"
            ),
            format!("set \"resource\": \"{url}\", the URL clients are given"),
        ),
    }
}

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

    const URL: &str = "https://mcp.example.com/mcp";
    const PRM_PATH: &str = "https://mcp.example.com/.well-known/oauth-protected-resource/mcp";
    const PRM_ROOT: &str = "https://mcp.example.com/.well-known/oauth-protected-resource";

    fn url() -> Url {
        Url::parse(URL).expect("url")
    }

    fn prm(resource: &str) -> Doc {
        Doc::Found(
            json!({"resource": resource, "authorization_servers": ["https://auth.example.com"]}),
        )
    }

    fn statuses(checks: &[Check]) -> Vec<(&str, Status)> {
        checks.iter().map(|c| (c.id.as_str(), c.status)).collect()
    }

    #[test]
    fn metadata_found_everywhere_it_is_looked_for_is_all_ok() {
        let doc = prm(URL);
        let p = judge_prm(
            &url(),
            Some((PRM_PATH, &doc)),
            Some((PRM_PATH, &doc)),
            (PRM_ROOT, &Doc::Missing(404)),
        );
        assert_eq!(
            statuses(&p.checks),
            [
                ("prm.challenge", Status::Ok),
                ("prm.path", Status::Ok),
                ("prm.root", Status::Ok),
                ("prm.authorization_servers", Status::Ok),
                ("resource", Status::Ok)
            ]
        );
        assert_eq!(p.chosen.map(|c| c.0).as_deref(), Some(PRM_PATH));
    }

    #[test]
    fn missing_or_wrong_metadata_fails_with_what_to_serve() {
        let none = judge_prm(
            &url(),
            None,
            Some((PRM_PATH, &Doc::Missing(404))),
            (PRM_ROOT, &Doc::Bad("HTTP 500".into())),
        );
        assert_eq!(statuses(&none.checks), [("prm", Status::Fail)]);
        assert!(
            none.checks[0]
                .fix
                .as_deref()
                .is_some_and(|f| f.contains(PRM_PATH))
        );
        let other = prm("https://other.example.com/mcp");
        let wrong = judge_prm(
            &url(),
            None,
            Some((PRM_PATH, &other)),
            (PRM_ROOT, &Doc::Missing(404)),
        );
        let resource = wrong
            .checks
            .iter()
            .find(|c| c.id == "resource")
            .expect("resource");
        assert_eq!(resource.status, Status::Fail);
        assert_eq!(
            resource.fix.as_deref(),
            Some("set \"resource\": \"https://mcp.example.com/mcp\", the URL clients are given")
        );
        // Named by the challenge but not served there; found at the well-known place.
        let good = prm(URL);
        let gone = judge_prm(
            &url(),
            Some(("https://mcp.example.com/prm", &Doc::Missing(404))),
            Some((PRM_PATH, &good)),
            (PRM_ROOT, &Doc::Missing(404)),
        );
        assert_eq!(gone.checks[0].status, Status::Fail);
        // Only where the challenge says: the well-known place is worth a warning.
        let only = judge_prm(
            &url(),
            Some(("https://mcp.example.com/prm", &good)),
            Some((PRM_PATH, &Doc::Missing(404))),
            (PRM_ROOT, &Doc::Missing(404)),
        );
        assert_eq!(only.checks[1].status, Status::Warn);
        let empty = Doc::Found(json!({"resource": URL, "authorization_servers": []}));
        let no_as = judge_prm(
            &url(),
            None,
            Some((PRM_PATH, &empty)),
            (PRM_ROOT, &Doc::Missing(404)),
        );
        assert!(
            no_as
                .checks
                .iter()
                .any(|c| c.id == "prm.authorization_servers" && c.status == Status::Fail)
        );
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
