//! Human output (aligned tables, key/value blocks) and `--json`.

use serde_json::Value;

/// Pretty JSON on stdout.
pub fn print_json(v: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// Control characters (a terminal escape in a name, say) become `?`.
pub fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// [`clean`], keeping line breaks (a text of several lines, such as a failure's explanation).
pub fn clean_lines(s: &str) -> String {
    s.split('\n').map(clean).collect::<Vec<_>>().join("\n")
}

/// A field of an API object as a table cell: strings as they are, lists joined by `,`,
/// booleans as yes/no, null or missing as `-`.
pub fn cell(v: &Value, key: &str) -> String {
    text(v.get(key).unwrap_or(&Value::Null))
}

pub fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".to_owned(),
        Value::String(s) if s.is_empty() => "-".to_owned(),
        Value::String(s) => clean(s),
        Value::Bool(true) => "yes".to_owned(),
        Value::Bool(false) => "no".to_owned(),
        Value::Number(n) => n.to_string(),
        Value::Array(items) if items.is_empty() => "-".to_owned(),
        Value::Array(items) => items.iter().map(text).collect::<Vec<_>>().join(","),
        Value::Object(_) => clean(&v.to_string()),
    }
}

/// Columns separated by two spaces, padded to the widest cell; the last column is not padded.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut out = String::new();
        for (i, c) in cells.enumerate() {
            if i + 1 < widths.len() {
                out.push_str(c);
                let pad = widths[i].saturating_sub(c.chars().count()) + 2;
                out.extend(std::iter::repeat_n(' ', pad));
            } else {
                out.push_str(c);
            }
        }
        out.trim_end().to_owned()
    };
    let mut out = line(&mut headers.iter().copied());
    out.push('\n');
    for row in rows {
        out.push_str(&line(&mut row.iter().map(String::as_str)));
        out.push('\n');
    }
    out
}

/// `  key  value` lines with the values aligned.
pub fn pairs(items: &[(&str, String)]) -> String {
    let width = items.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut out = String::new();
    for (k, v) in items {
        out.push_str(&format!("  {k:<width$}  {v}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables_align_columns() {
        let t = table(
            &["ID", "SLUG", "NAME"],
            &[
                vec!["proj_1".into(), "a".into(), "Alpha".into()],
                vec!["proj_22".into(), "beta-long".into(), "B".into()],
            ],
        );
        assert_eq!(
            t,
            "ID       SLUG       NAME\n\
             proj_1   a          Alpha\n\
             proj_22  beta-long  B\n"
        );
    }

    #[test]
    fn cells_render_api_values() {
        let v = json!({"s": "x\u{1b}[31m", "l": ["a", "b"], "t": true, "n": null, "e": []});
        assert_eq!(cell(&v, "s"), "x?[31m");
        assert_eq!(cell(&v, "l"), "a,b");
        assert_eq!(cell(&v, "t"), "yes");
        assert_eq!(cell(&v, "n"), "-");
        assert_eq!(cell(&v, "missing"), "-");
        assert_eq!(cell(&v, "e"), "-");
    }

    #[test]
    fn pairs_align_values() {
        assert_eq!(
            pairs(&[("id", "srv_1".into()), ("status", "running".into())]),
            "  id      srv_1\n  status  running\n"
        );
    }
}
