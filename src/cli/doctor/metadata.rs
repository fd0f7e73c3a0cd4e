//! Judging the protected resource's metadata (RFC 9728), the first document an MCP client
//! reads; its authorization servers' are judged in `as_metadata`. Pure: the documents come in,
//! checks come out.

use serde_json::Value;
use url::Url;

use super::discovery::{self, Doc, Sameness};
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
    let Some((from, doc)) = chosen else {
        let well_known = inserted.map_or(root.0, |(u, _)| u);
        return Prm {
            checks: vec![none_found(url, &order, well_known)],
            chosen: None,
        };
    };
    let resource = doc.get("resource").and_then(Value::as_str).unwrap_or("");
    let mut checks = Vec::new();
    if let Some((u, d)) = challenge {
        checks.push(judge_challenge_location(u, d));
    }
    checks.push(judge_well_known(inserted, root, &from, resource));
    if inserted.is_some() {
        checks.push(judge_root(root));
    }
    checks.push(judge_authorization_servers(&doc));
    checks.push(judge_resource(resource, url));
    Prm {
        checks,
        chosen: Some((from, doc)),
    }
}

/// No location serves the metadata: what each answered, and what to serve where.
fn none_found(url: &Url, order: &[(&str, &Doc)], well_known: &str) -> Check {
    let seen: Vec<String> = order
        .iter()
        .map(|(u, d)| format!("{u}: {}", describe_prm(d)))
        .collect();
    Check::fail(
        "prm",
        format!("no protected-resource metadata found ({})", seen.join("; ")),
        format!(
            "serve RFC 9728 metadata {{\"resource\": \"{url}\", \"authorization_servers\": [\"…\"]}} at {well_known}, and name it in the challenge's resource_metadata"
        ),
    )
}

/// The location the challenge's `resource_metadata` names serves the metadata.
fn judge_challenge_location(u: &str, d: &Doc) -> Check {
    match resource_of(d) {
        Some(_) => Check::ok("prm.challenge", format!("{u} serves the metadata")),
        None => Check::fail(
            "prm.challenge",
            format!("{u}, named by the challenge: {}", describe_prm(d)),
            "serve the metadata at the URL resource_metadata names, or name the URL that serves it",
        ),
    }
}

/// The well-known location clients look at when the challenge names none (or they do not read
/// it) serves the same document as the one chosen (`from`, naming `resource`).
fn judge_well_known(
    inserted: Option<(&str, &Doc)>,
    root: (&str, &Doc),
    from: &str,
    resource: &str,
) -> Check {
    let id = |form: &str| {
        if inserted.is_some() {
            format!("prm.{form}")
        } else {
            "prm.well_known".to_owned()
        }
    };
    let (wk_url, wk_doc) = inserted.unwrap_or(root);
    match (resource_of(wk_doc), wk_doc) {
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
    }
}

/// The root well-known location, when the path-inserted one comes before it: not needed, but
/// it must not serve something broken.
fn judge_root((u, d): (&str, &Doc)) -> Check {
    match (resource_of(d), d) {
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
}
