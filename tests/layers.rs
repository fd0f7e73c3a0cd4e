//! The import rule of ARCHITECTURE.md ("Layers"), checked over the source: every `crate::…`
//! path a module names must be in its own layer or a lower one, and the edges (control API,
//! authorization server, front door, metrics) never name one another. A new import against the
//! rule fails here with the file, the line and the rule it breaks.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Top-level modules by layer, highest first. A module may name its own layer's modules only
/// where [`SAME_LAYER`] allows it.
const LAYERS: &[(&str, &[&str])] = &[
    ("root", &["main", "lib", "app", "cli"]),
    ("edge", &["control", "oauth", "gateway", "metrics"]),
    ("services", &["services", "deploy"]),
    (
        "shared",
        &["shared", "outbound", "telemetry", "tls", "error", "config"],
    ),
    ("store", &["store"]),
    ("domain", &["domain", "crypto", "data_dir"]),
];

/// Imports allowed between different modules of one layer (importer, imported). Anything else
/// within a layer is refused: those would be cycles waiting to happen.
const SAME_LAYER: &[(&str, &str)] = &[
    // The CLI reads the config and starts the app.
    ("main", "cli"),
    ("main", "lib"),
    ("cli", "app"),
    ("lib", "app"),
    // The routing table holds the deployer's targets; the deployer reaches it only through
    // the `deploy::Routes` trait.
    ("services", "deploy"),
    // The shared pieces read their settings.
    ("shared", "config"),
    ("shared", "outbound"),
    ("shared", "error"),
    ("outbound", "config"),
    ("outbound", "error"),
    ("telemetry", "config"),
    ("tls", "config"),
    ("error", "config"),
    ("crypto", "domain"),
    ("data_dir", "domain"),
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|(_, mods)| mods.contains(&module))
}

/// The top-level module a source file belongs to.
fn module_of(root: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(root).unwrap_or(file);
    let first = rel
        .components()
        .next()
        .map(|c| c.as_os_str().to_string_lossy().into_owned());
    first.unwrap_or_default().trim_end_matches(".rs").to_owned()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a line without its `//` comment (string contents are kept: a `crate::` path
/// inside a string is rare and would be worth a look anyway).
fn code(line: &str) -> &str {
    match line.find("//") {
        Some(i) => &line[..i],
        None => line,
    }
}

/// The first segment of every `crate::…` path in `text`, with the line it starts on; a
/// `crate::{a, b::c}` group gives each of its items.
fn crate_paths(text: &str) -> Vec<(usize, String)> {
    let stripped: Vec<&str> = text.lines().map(code).collect();
    let joined = stripped.join("\n");
    let mut found = Vec::new();
    let bytes = joined.as_bytes();
    let mut at = 0;
    while let Some(i) = joined[at..].find("crate::") {
        let start = at + i;
        at = start + "crate::".len();
        // `ezforge::crate::` cannot occur; a preceding identifier char means a longer name.
        if start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_') {
            continue;
        }
        let line = joined[..start].matches('\n').count() + 1;
        if bytes.get(at) == Some(&b'{') {
            let mut depth = 0;
            let mut item = String::new();
            let mut items = Vec::new();
            for &b in &bytes[at..] {
                match b {
                    b'{' => {
                        depth += 1;
                        if depth > 1 {
                            item.push('{');
                        }
                    }
                    b'}' => {
                        depth -= 1;
                        if depth == 0 {
                            items.push(std::mem::take(&mut item));
                            break;
                        }
                        item.push('}');
                    }
                    b',' if depth == 1 => items.push(std::mem::take(&mut item)),
                    _ => item.push(b as char),
                }
            }
            for item in items {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    found.push((line, name));
                }
            }
        } else {
            let name: String = joined[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.push((line, name));
            }
        }
    }
    found
}

/// Names that `crate::` may start with and that are not modules (re-exports at the root).
const ROOT_ITEMS: &[&str] = &["App", "Config"];

fn violations(root: &Path) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(root, &mut files);
    files.sort();
    let mut out = Vec::new();
    for file in files {
        let from = module_of(root, &file);
        let Some(from_layer) = layer_of(&from) else {
            out.push(format!(
                "{}: module `{from}` is in no layer (add it to LAYERS)",
                file.display()
            ));
            continue;
        };
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        let mut seen = BTreeSet::new();
        for (line, to) in crate_paths(&text) {
            if to == from || ROOT_ITEMS.contains(&to.as_str()) || !seen.insert((to.clone(), line)) {
                continue;
            }
            let where_ = format!("{}:{line}", file.display());
            match layer_of(&to) {
                None => out.push(format!("{where_}: `crate::{to}` is in no layer")),
                Some(l) if l < from_layer => out.push(format!(
                    "{where_}: `{from}` ({}) imports `crate::{to}` ({}), a layer above it",
                    LAYERS[from_layer].0, LAYERS[l].0
                )),
                Some(l) if l == from_layer && !SAME_LAYER.contains(&(&from, &to)) => {
                    out.push(format!(
                        "{where_}: `{from}` imports `crate::{to}`, beside it in the {} layer",
                        LAYERS[l].0
                    ))
                }
                Some(_) => {}
            }
        }
    }
    out
}

#[test]
fn imports_run_one_way() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let found = violations(&root);
    assert!(
        found.is_empty(),
        "imports against the layer rule (ARCHITECTURE.md, \"Layers\"):\n{}",
        found.join("\n")
    );
}

#[test]
fn the_check_sees_grouped_and_inline_paths() {
    let text = "use crate::{app::AppState, store::{self, Store}};\n\
                // use crate::control::x;\n\
                fn f() { crate::gateway::routes(); let s = \"x\"; }\n\
                use ezforge_crate::x;\n";
    let names: Vec<(usize, String)> = crate_paths(text);
    assert_eq!(
        names,
        vec![
            (1, "app".to_owned()),
            (1, "store".to_owned()),
            (3, "gateway".to_owned())
        ]
    );
}

#[test]
fn an_upward_or_sideways_import_is_refused() {
    let dir = std::env::temp_dir().join(format!("ezf-layers-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("store")).expect("dir");
    std::fs::create_dir_all(dir.join("control")).expect("dir");
    std::fs::write(dir.join("store/mod.rs"), "use crate::services::x;\n").expect("write");
    std::fs::write(dir.join("control/mod.rs"), "use crate::oauth::y;\n").expect("write");
    let found = violations(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found[0].contains("`control` imports `crate::oauth`, beside it in the edge layer"));
    assert!(found[1].contains("`store` (store) imports `crate::services` (services)"));
}
