//! The documentation against the code: the control API reference (`docs/api.md`) names every
//! route of the route table and no other.

use std::collections::BTreeSet;
use std::path::PathBuf;

use crate::openapi::route_table;

fn repo_file(path: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Every `` `METHOD /v1/path…` `` in a Markdown text, as (METHOD, path shape): `:name`
/// segments become `{}`.
fn endpoints_named(text: &str) -> BTreeSet<(String, String)> {
    let mut found = BTreeSet::new();
    for (i, span) in text.split('`').enumerate() {
        if i % 2 == 0 {
            continue;
        }
        let mut words = span.split_whitespace();
        let (Some(method), Some(path)) = (words.next(), words.next()) else {
            continue;
        };
        if !["GET", "POST", "PUT", "PATCH", "DELETE"].contains(&method) {
            continue;
        }
        let Some(rest) = path.strip_prefix("/v1") else {
            continue;
        };
        let rest = rest.split('?').next().unwrap_or_default();
        let shape: Vec<String> = rest
            .split('/')
            .map(|seg| match seg.strip_prefix(':') {
                Some(_) => "{}".to_owned(),
                None => seg.to_owned(),
            })
            .collect();
        found.insert((method.to_owned(), shape.join("/")));
    }
    found
}

#[test]
fn the_api_reference_names_every_route_and_no_other() {
    let routes = route_table();
    let named = endpoints_named(&repo_file("docs/api.md"));
    let missing: Vec<_> = routes.difference(&named).collect();
    let unknown: Vec<_> = named.difference(&routes).collect();
    assert!(
        missing.is_empty() && unknown.is_empty(),
        "routes docs/api.md does not name: {missing:?}\n\
         endpoints docs/api.md names that are not routes: {unknown:?}"
    );
}

#[test]
fn endpoints_are_read_from_code_spans() {
    let text = "see `GET /v1/servers/:serverId/logs?level=warn` and `POST /v1/users {email}`, \
                not `GET /metrics` nor `ezforge logs`";
    assert_eq!(
        endpoints_named(text),
        BTreeSet::from([
            ("GET".to_owned(), "/servers/{}/logs".to_owned()),
            ("POST".to_owned(), "/users".to_owned()),
        ])
    );
}
