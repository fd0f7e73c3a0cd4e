//! What `config check` says besides errors: the key a misspelt one probably meant, and
//! `EZFORGE_*` variables that set nothing (a single `_` where `__` was meant, a typo).

use super::Config;

/// Variables of ours that are not config keys.
const OTHER_VARIABLES: &[&str] = &[
    "EZFORGE_CONFIG",
    "EZFORGE_URL",
    "EZFORGE_API_KEY",
    "EZFORGE_PASSWORD",
    "EZFORGE_MASTER_KEY",
    "EZFORGE_MASTER_KEY_FILE",
    "EZFORGE_ADMIN_EMAIL",
    "EZFORGE_ADMIN_PASSWORD",
    "EZFORGE_ADMIN_PASSWORD_FILE",
];

/// The nearest of `candidates` to `word`, when near enough to be a typo of it.
pub fn nearest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let word = word.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|c| (distance(&word, &c.to_ascii_lowercase()), c))
        .filter(|(d, c)| *d > 0 && *d <= (c.len().max(word.len()) / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance, on bytes (keys are ASCII).
fn distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut row = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            row.push((prev[j] + cost).min(prev[j + 1] + 1).min(row[j] + 1));
        }
        prev = row;
    }
    prev[b.len()]
}

/// Every config key, dotted (`server.listen`, `deploy.sandbox.mode`), as the defaults show them.
pub fn keys() -> Vec<String> {
    fn walk(prefix: &str, value: &toml::Value, out: &mut Vec<String>) {
        if let toml::Value::Table(t) = value {
            for (k, v) in t {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                if matches!(v, toml::Value::Table(_)) {
                    walk(&key, v, out);
                } else {
                    out.push(key);
                }
            }
        }
    }
    let mut out = Vec::new();
    if let Ok(v) = toml::Value::try_from(Config::default()) {
        walk("", &v, &mut out);
    }
    // Optional keys a default leaves out.
    for k in [
        "server.public_url",
        "tls.cert_file",
        "tls.key_file",
        "auth.registration.initial_access_token",
        "bootstrap.admin_email",
        "bootstrap.admin_password",
        "metrics.listen",
        "metrics.bearer_token",
        "gateway.server_domain",
        "deploy.sandbox.launcher",
    ] {
        if !out.iter().any(|o| o == k) {
            out.push(k.to_owned());
        }
    }
    out
}

/// The variable that sets `key`.
fn variable(key: &str) -> String {
    format!("EZFORGE_{}", key.to_ascii_uppercase().replace('.', "__"))
}

/// Warnings for `EZFORGE_*` variables in `env` that set nothing.
pub fn unused_variables(env: &[(String, String)]) -> Vec<String> {
    let keys = keys();
    let vars: Vec<String> = keys.iter().map(|k| variable(k)).collect();
    let mut out = Vec::new();
    for (name, _) in env {
        let Some(rest) = name.strip_prefix("EZFORGE_") else {
            continue;
        };
        if rest.contains("__") || OTHER_VARIABLES.contains(&name.as_str()) {
            // Keys are checked (an unknown one is an error); ours are used.
            continue;
        }
        if name.starts_with(super::PROGRAM_ENV_PREFIX) {
            continue;
        }
        let guess = nearest(
            name,
            vars.iter()
                .map(String::as_str)
                .chain(OTHER_VARIABLES.iter().copied()),
        );
        out.push(match guess {
            Some(g) => format!(
                "{name} sets nothing (config keys are EZFORGE_SECTION__KEY, with two underscores): did you mean {g}?"
            ),
            None => format!(
                "{name} sets nothing: not a config key (EZFORGE_SECTION__KEY) nor a variable ezforge reads"
            ),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_find_their_key_and_strangers_none() {
        let keys = keys();
        let k = |w: &str| nearest(w, keys.iter().map(String::as_str)).map(str::to_owned);
        assert_eq!(k("server.lisen").as_deref(), Some("server.listen"));
        assert_eq!(
            k("auth.acess_token_ttl").as_deref(),
            Some("auth.access_token_ttl")
        );
        assert_eq!(k("something.else.entirely"), None);
        assert!(
            keys.iter().any(|k| k == "deploy.sandbox.read_paths"),
            "{keys:?}"
        );
        let fields = [
            "listen",
            "public_url",
            "data_dir",
            "workers",
            "shutdown_timeout",
        ];
        assert_eq!(nearest("lisen", fields), Some("listen"));
        assert_eq!(nearest("listen", fields), None, "an exact key is no typo");
    }

    #[test]
    fn variables_that_set_nothing_are_named_with_the_one_meant() {
        let env = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect()
        };
        let w = unused_variables(&env(&[
            ("EZFORGE_SERVER_LISTEN", "0.0.0.0:80"),
            ("EZFORGE_CONFIG", "/etc/ezforge/config.toml"),
            ("EZFORGE_SERVER__LISTEN", "127.0.0.1:1"),
            ("EZFORGE_MASTER_KEYFILE", "/k"),
            ("EZFORGE_WHATEVER", "1"),
            ("PATH", "/bin"),
        ]));
        assert_eq!(w.len(), 3, "{w:?}");
        assert!(
            w[0].contains("did you mean EZFORGE_SERVER__LISTEN"),
            "{w:?}"
        );
        assert!(
            w[1].contains("did you mean EZFORGE_MASTER_KEY_FILE"),
            "{w:?}"
        );
        assert!(w[2].contains("EZFORGE_WHATEVER sets nothing"), "{w:?}");
    }
}
