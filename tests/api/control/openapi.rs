//! The OpenAPI document (`docs/openapi.json`, served at `/v1/openapi.json`) against the control
//! API itself: every route of the route table (`src/control/mod.rs`) is documented and nothing
//! else is, every documented operation is routed, and the access it documents (public, session,
//! admin, owner, or a key's scope) is what the server enforces.

use std::collections::{BTreeSet, HashSet};
use std::path::PathBuf;

use serde_json::{Value, json};

use crate::helpers::{
    ApiResponse, admin_token, call, create_key, create_project, create_server, roomy,
};

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

fn repo_file(path: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn document() -> Value {
    serde_json::from_str(&repo_file("docs/openapi.json")).expect("docs/openapi.json is JSON")
}

/// `/servers/{server}/clients/{client:.+}` -> `/servers/{}/clients/{}`.
fn shape(path: &str) -> String {
    let mut out = String::new();
    let mut depth = 0;
    for c in path.chars() {
        match c {
            '{' => {
                if depth == 0 {
                    out.push_str("{}");
                }
                depth += 1;
            }
            '}' => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

/// `(METHOD, path shape)` of every route `src/control/mod.rs` registers under `/v1`: each
/// `resource("…")` with the `web::method()` calls that follow it.
pub fn route_table() -> BTreeSet<(String, String)> {
    let source = repo_file("src/control/mod.rs");
    let body = source
        .split_once("fn v1(")
        .and_then(|(_, rest)| rest.split_once("\nfn "))
        .expect("fn v1 in src/control/mod.rs")
        .0;
    let mut routes = BTreeSet::new();
    let mut parts = body.split("resource(\"").skip(1).peekable();
    assert!(parts.peek().is_some(), "no resource(\"…\") in fn v1");
    for part in parts {
        let (path, rest) = part.split_once('"').expect("a closing quote");
        let mut any = false;
        for m in METHODS {
            if rest.contains(&format!("web::{m}()")) {
                routes.insert((m.to_uppercase(), shape(path)));
                any = true;
            }
        }
        assert!(any, "resource {path} has no route");
    }
    routes
}

/// `(METHOD, path shape)` of every operation in the document.
fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, _) in item.as_object().expect("path item") {
            assert!(METHODS.contains(&method.as_str()), "{method} {path}");
            ops.insert((method.to_uppercase(), shape(path)));
        }
    }
    ops
}

#[test]
fn every_route_is_documented_and_nothing_else() {
    let routes = route_table();
    let ops = documented(&document());
    assert!(routes.len() > 40, "the route table parsed: {routes:?}");
    let undocumented: Vec<_> = routes.difference(&ops).collect();
    let unrouted: Vec<_> = ops.difference(&routes).collect();
    assert!(
        undocumented.is_empty() && unrouted.is_empty(),
        "routes missing from docs/openapi.json: {undocumented:?}\n\
         operations in docs/openapi.json that are not routes: {unrouted:?}"
    );
}

/// Every `$ref` in `v`, as its JSON pointer.
fn refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get("$ref") {
                out.push(r.clone());
            }
            m.values().for_each(|x| refs(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
        _ => {}
    }
}

#[test]
fn the_document_holds_together() {
    let doc = document();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(
        doc["info"]["version"],
        env!("CARGO_PKG_VERSION"),
        "info.version follows the crate's version"
    );
    let mut all = Vec::new();
    refs(&doc, &mut all);
    for r in &all {
        let pointer = r
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("local refs only: {r}"));
        assert!(doc.pointer(pointer).is_some(), "{r} points at nothing");
    }
    let resolve = |v: &Value| -> Value {
        match v["$ref"].as_str() {
            Some(r) => doc.pointer(&r[1..]).cloned().unwrap_or(Value::Null),
            None => v.clone(),
        }
    };
    let mut ids = HashSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        let wanted: BTreeSet<String> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}').map(str::to_owned))
            .collect();
        for (method, op) in item.as_object().expect("item") {
            let at = format!("{method} {path}");
            let id = op["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{at}: id"));
            assert!(ids.insert(id.to_owned()), "{at}: operationId {id} twice");
            assert!(
                op["responses"].as_object().is_some_and(|r| !r.is_empty()),
                "{at}: responses"
            );
            let declared: BTreeSet<String> = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .map(resolve)
                .filter(|p| p["in"] == "path")
                .map(|p| {
                    assert_eq!(p["required"], true, "{at}: {p}");
                    p["name"].as_str().expect("name").to_owned()
                })
                .collect();
            assert_eq!(declared, wanted, "{at}: path parameters");
            let access = op["x-ezforge-access"].as_str().unwrap_or_default();
            assert!(
                ["public", "session", "admin", "owner", "scoped", "any"].contains(&access),
                "{at}: x-ezforge-access {access:?}"
            );
            assert_eq!(
                access == "scoped",
                op["x-ezforge-scope"].is_string(),
                "{at}: x-ezforge-scope goes with scoped, and only there"
            );
        }
    }
}

/// The document's paths, methods and access, checked against the running server: each one is
/// routed (neither 405 nor the API's own "no route"), answers 401 without a credential unless
/// public, and refuses an API key as documented.
#[tokio::test]
async fn every_operation_is_routed_and_guarded_as_documented() {
    let app = roomy().await;
    let admin = admin_token(&app).await;
    let project = create_project(&app, &admin, "Documented").await;
    let project = project["id"].as_str().expect("id").to_owned();
    let server = create_server(&app, &admin, &project, "documented").await;
    let server = server["id"].as_str().expect("id").to_owned();
    let billing_key = create_key(&app, &admin, &project, &["billing:read"]).await;
    let reader_key = create_key(&app, &admin, &project, &["servers:read"]).await;

    let served = app.get("/v1/openapi.json").await;
    assert_eq!(served.status(), 200);
    assert!(
        served.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("application/json")
    );
    let served: Value = served.json().await.expect("JSON");
    let doc = document();
    assert_eq!(served, doc, "the served document is docs/openapi.json");

    let mut failures = Vec::new();
    for (template, item) in doc["paths"].as_object().expect("paths") {
        let path = template
            .replace("{projectId}", &project)
            .replace("{serverId}", &server)
            .replace("{userId}", "usr_aaaaaaaaaaaaaaaaaaaaaaaa")
            .replace("{invitationId}", "inv_aaaaaaaaaaaaaaaaaaaaaaaa")
            .replace("{keyId}", "key_aaaaaaaaaaaaaaaaaaaaaaaa")
            .replace("{clientId}", "oac_aaaaaaaaaaaaaaaaaaaaaaaa")
            .replace("{grantId}", "grt_aaaaaaaaaaaaaaaaaaaaaaaa")
            .replace("{name}", "DOCUMENTED");
        assert!(!path.contains('{'), "a parameter left in {path}");
        for (method, op) in item.as_object().expect("item") {
            let method = method.to_uppercase();
            let body = (method != "GET" && method != "DELETE").then(|| json!({}));
            let at = format!("{method} {template}");
            let access = op["x-ezforge-access"].as_str().unwrap_or_default();
            for prefix in ["/v1", "/api/v1"] {
                let res = call(
                    &app,
                    &method,
                    &format!("{prefix}{path}"),
                    None,
                    body.as_ref(),
                )
                .await;
                if let Some(why) = unrouted(&res) {
                    failures.push(format!("{at} under {prefix}: {why}"));
                }
                if access != "public" && res.status != 401 {
                    failures.push(format!(
                        "{at}: {} without a credential, not 401",
                        res.status
                    ));
                }
            }
            if access == "public" {
                continue;
            }
            // A key of the project that lacks the operation's scope.
            let scope = op["x-ezforge-scope"].as_str();
            let key = if scope == Some("billing:read") {
                &reader_key
            } else {
                &billing_key
            };
            let res = call(
                &app,
                &method,
                &format!("/v1{path}"),
                Some(key),
                body.as_ref(),
            )
            .await;
            let problem = match access {
                "any" => (res.status != 200).then(|| "a key is let in".to_owned()),
                "scoped" => {
                    let named = &res.body["error"]["details"]["requiredScope"];
                    // `logs` also takes servers:read, and names it when both are missing.
                    let ok = res.status == 403
                        && (named == scope.unwrap_or_default()
                            || (template == "/servers/{serverId}/logs" && named == "servers:read"));
                    (!ok).then(|| format!("403 naming the scope {scope:?}"))
                }
                _ => (res.status != 403
                    || !res.body["error"]["details"]["requiredScope"].is_null())
                .then(|| "403: a key may not".to_owned()),
            };
            if let Some(want) = problem {
                failures.push(format!(
                    "{at} with a key: want {want}, got {} {}",
                    res.status,
                    res.text.chars().take(200).collect::<String>()
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Why an answer says the route does not exist, if it does.
fn unrouted(res: &ApiResponse) -> Option<String> {
    let message = res.body["error"]["message"].as_str().unwrap_or_default();
    (res.status == 405 || (res.status == 404 && message.starts_with("no route for")))
        .then(|| format!("{} {message}", res.status))
}
