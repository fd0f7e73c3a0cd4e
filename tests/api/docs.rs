//! The documentation against the code and itself: the control API reference (`docs/api.md`)
//! names every route of the route table and no other, and every relative link of the README and
//! the `docs/` pages reaches a file, and a heading of it when it names one.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::control::openapi::route_table;

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

/// The anchor GitHub gives a heading: lower case, letters, digits, `-` and `_` kept, spaces made
/// `-`, everything else dropped.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// Markdown outside fenced code blocks.
fn prose(text: &str) -> Vec<&str> {
    let mut fenced = false;
    text.lines()
        .filter(|l| {
            if l.starts_with("```") {
                fenced = !fenced;
                return false;
            }
            !fenced
        })
        .collect()
}

/// The anchors of a Markdown file's headings (a repeated heading gets `-1`, `-2`…).
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for line in prose(text) {
        let Some(h) = line.strip_prefix('#') else {
            continue;
        };
        let h = h.trim_start_matches('#');
        if !h.starts_with(' ') {
            continue;
        }
        let base = anchor(h);
        let mut a = base.clone();
        let mut n = 0;
        while seen.contains(&a) {
            n += 1;
            a = format!("{base}-{n}");
        }
        seen.insert(a);
    }
    seen
}

/// The targets of the inline links `[text](target)` of a Markdown text.
fn links(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in prose(text) {
        let mut rest = line;
        while let Some(at) = rest.find("](") {
            rest = &rest[at + 2..];
            let Some(end) = rest.find(')') else { break };
            out.push(rest[..end].to_owned());
            rest = &rest[end..];
        }
    }
    out
}

fn markdown_files(root: &Path) -> Vec<PathBuf> {
    let mut files = vec![root.join("README.md"), root.join("ARCHITECTURE.md")];
    let mut pages: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    pages.sort();
    files.extend(pages);
    files
}

#[test]
fn every_link_between_the_pages_reaches_its_target() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut broken = Vec::new();
    let mut checked = 0;
    for file in markdown_files(&root) {
        let text = std::fs::read_to_string(&file).expect("read");
        let name = file
            .strip_prefix(&root)
            .expect("in the repo")
            .display()
            .to_string();
        for target in links(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            let (path, fragment) = match target.split_once('#') {
                Some((p, f)) => (p, Some(f)),
                None => (target.as_str(), None),
            };
            let dest = if path.is_empty() {
                file.clone()
            } else {
                file.parent().expect("dir").join(path)
            };
            if !dest.exists() {
                broken.push(format!("{name}: ({target}): no file {}", dest.display()));
                continue;
            }
            if let Some(f) = fragment {
                let dest_text = std::fs::read_to_string(&dest).unwrap_or_default();
                if !anchors(&dest_text).contains(f) {
                    broken.push(format!("{name}: ({target}): no heading #{f} there"));
                }
            }
        }
    }
    assert!(checked > 30, "links found: {checked}");
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn anchors_are_githubs() {
    assert_eq!(
        anchor("Verifying the front door's identity at the upstream"),
        "verifying-the-front-doors-identity-at-the-upstream"
    );
    assert_eq!(anchor("The control API (`/v1`)"), "the-control-api-v1");
    assert_eq!(
        anchor("Trust model: who can do what"),
        "trust-model-who-can-do-what"
    );
    assert_eq!(anchor("Logs, metrics and usage"), "logs-metrics-and-usage");
    let text = "# A\n## B b\n```\n# not a heading\n```\n## B b\n#nope\n";
    assert_eq!(
        anchors(text),
        BTreeSet::from(["a".into(), "b-b".into(), "b-b-1".into()])
    );
    assert_eq!(
        links("see [x](a.md#b) and [y](#c)\n```\n[w](e)\n```"),
        ["a.md#b", "#c"]
    );
}
