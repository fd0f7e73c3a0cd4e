//! HTML: a tiny tag scanner, enough for forms.

#[derive(Debug, Clone, Default)]
pub struct Input {
    pub name: String,
    pub value: String,
    /// Lowercased `type`; "text" when absent.
    pub kind: String,
    pub checked: bool,
}

#[derive(Debug, Clone, Default)]
pub struct Form {
    /// Lowercased `method`; "get" when absent.
    pub method: String,
    pub action: Option<String>,
    pub inputs: Vec<Input>,
    /// `<button name value>` (and `<input type=submit name value>`).
    pub buttons: Vec<(String, String)>,
}

impl Form {
    pub fn has_input(&self, name: &str) -> bool {
        self.inputs.iter().any(|i| i.name == name)
    }

    pub fn value(&self, name: &str) -> Option<&str> {
        self.inputs
            .iter()
            .find(|i| i.name == name)
            .map(|i| i.value.as_str())
    }

    pub fn hidden(&self) -> Vec<(String, String)> {
        self.inputs
            .iter()
            .filter(|i| i.kind == "hidden")
            .map(|i| (i.name.clone(), i.value.clone()))
            .collect()
    }

    pub fn has_button(&self, name: &str, value: &str) -> bool {
        self.buttons.iter().any(|(n, v)| n == name && v == value)
    }

    pub fn is_login(&self) -> bool {
        self.method == "post" && self.has_input("password")
    }

    pub fn is_consent(&self) -> bool {
        self.method == "post" && self.buttons.iter().any(|(n, _)| n == "decision")
    }

    /// What a browser submits: every named input (checkboxes and radios only when checked, or
    /// all of them when `tick_boxes`), `overrides` replacing or adding values, then the button.
    pub fn fields(
        &self,
        overrides: &[(&str, &str)],
        button: Option<(&str, &str)>,
        tick_boxes: bool,
    ) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        for i in &self.inputs {
            if i.name.is_empty() || matches!(i.kind.as_str(), "submit" | "button" | "image") {
                continue;
            }
            if matches!(i.kind.as_str(), "checkbox" | "radio") && !(i.checked || tick_boxes) {
                continue;
            }
            if overrides.iter().any(|(k, _)| *k == i.name) {
                continue;
            }
            let value = if matches!(i.kind.as_str(), "checkbox" | "radio") && i.value.is_empty() {
                "on".to_owned()
            } else {
                i.value.clone()
            };
            out.push((i.name.clone(), value));
        }
        for (k, v) in overrides {
            out.push(((*k).to_owned(), (*v).to_owned()));
        }
        if let Some((n, v)) = button {
            out.push((n.to_owned(), v.to_owned()));
        }
        out
    }
}

/// Decodes the character references a server puts in attribute values and text.
pub fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find('&') {
        out.push_str(&rest[..pos]);
        rest = &rest[pos..];
        let Some(end) = rest[..rest.len().min(12)].find(';') else {
            out.push('&');
            rest = &rest[1..];
            continue;
        };
        let entity = &rest[1..end];
        let decoded = match entity {
            "amp" => Some('&'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "nbsp" => Some('\u{a0}'),
            e if e.starts_with("#x") || e.starts_with("#X") => u32::from_str_radix(&e[2..], 16)
                .ok()
                .and_then(char::from_u32),
            e if e.starts_with('#') => e[1..].parse::<u32>().ok().and_then(char::from_u32),
            _ => None,
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// One start or end tag: lowercased name, `/` prefix for end tags, attributes (names
/// lowercased, values unescaped; a bare attribute has an empty value).
#[derive(Debug)]
struct Tag {
    name: String,
    attrs: Vec<(String, String)>,
}

impl Tag {
    fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// All tags of a document, in order; comments skipped, script/style contents skipped.
fn tags(html: &str) -> Vec<Tag> {
    let b = html.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    while i < b.len() {
        if b[i] != b'<' {
            i += 1;
            continue;
        }
        if html[i..].starts_with("<!--") {
            i = html[i..].find("-->").map(|p| i + p + 3).unwrap_or(b.len());
            continue;
        }
        let mut j = i + 1;
        let end_tag = j < b.len() && b[j] == b'/';
        if end_tag {
            j += 1;
        }
        let name_start = j;
        while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'-') {
            j += 1;
        }
        if j == name_start {
            i += 1;
            continue;
        }
        let mut name = html[name_start..j].to_ascii_lowercase();
        if end_tag {
            name.insert(0, '/');
        }
        // Attributes.
        let mut attrs = Vec::new();
        loop {
            while j < b.len() && (b[j].is_ascii_whitespace() || b[j] == b'/') {
                j += 1;
            }
            if j >= b.len() || b[j] == b'>' {
                j += 1;
                break;
            }
            let an = j;
            while j < b.len()
                && !b[j].is_ascii_whitespace()
                && b[j] != b'='
                && b[j] != b'>'
                && b[j] != b'/'
            {
                j += 1;
            }
            let attr_name = html[an..j].to_ascii_lowercase();
            while j < b.len() && b[j].is_ascii_whitespace() {
                j += 1;
            }
            let mut value = String::new();
            if j < b.len() && b[j] == b'=' {
                j += 1;
                while j < b.len() && b[j].is_ascii_whitespace() {
                    j += 1;
                }
                if j < b.len() && (b[j] == b'"' || b[j] == b'\'') {
                    let q = b[j];
                    let vs = j + 1;
                    let mut k = vs;
                    while k < b.len() && b[k] != q {
                        k += 1;
                    }
                    value = unescape(&html[vs..k.min(b.len())]);
                    j = (k + 1).min(b.len());
                } else {
                    let vs = j;
                    while j < b.len() && !b[j].is_ascii_whitespace() && b[j] != b'>' {
                        j += 1;
                    }
                    value = unescape(&html[vs..j]);
                }
            }
            if !attr_name.is_empty() {
                attrs.push((attr_name, value));
            }
        }
        i = j;
        if name == "script" || name == "style" {
            let close = format!("</{name}");
            i = html[i.min(b.len())..]
                .to_ascii_lowercase()
                .find(&close)
                .map(|p| i + p)
                .unwrap_or(b.len());
        }
        out.push(Tag { name, attrs });
    }
    out
}

/// Every `<form>` of a page with its inputs and buttons.
pub fn forms(html: &str) -> Vec<Form> {
    let mut out: Vec<Form> = Vec::new();
    let mut current: Option<Form> = None;
    for tag in tags(html) {
        match tag.name.as_str() {
            "form" => {
                if let Some(f) = current.take() {
                    out.push(f);
                }
                current = Some(Form {
                    method: tag.attr("method").unwrap_or("get").to_ascii_lowercase(),
                    action: tag.attr("action").map(str::to_owned),
                    ..Form::default()
                });
            }
            "/form" => {
                if let Some(f) = current.take() {
                    out.push(f);
                }
            }
            "input" => {
                if let Some(f) = current.as_mut() {
                    let kind = tag.attr("type").unwrap_or("text").to_ascii_lowercase();
                    let name = tag.attr("name").unwrap_or("").to_owned();
                    let value = tag.attr("value").unwrap_or("").to_owned();
                    if kind == "submit" && !name.is_empty() {
                        f.buttons.push((name.clone(), value.clone()));
                    }
                    f.inputs.push(Input {
                        name,
                        value,
                        kind,
                        checked: tag.attr("checked").is_some(),
                    });
                }
            }
            "button" => {
                if let Some(f) = current.as_mut()
                    && let Some(name) = tag.attr("name")
                {
                    f.buttons
                        .push((name.to_owned(), tag.attr("value").unwrap_or("").to_owned()));
                }
            }
            _ => {}
        }
    }
    if let Some(f) = current.take() {
        out.push(f);
    }
    out
}
