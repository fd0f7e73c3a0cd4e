//! A browser-like driver for the authorization server's HTML pages, and the fixtures the
//! `oauth_*` tests share: a project with a server routed to a fake upstream, clients, PKCE,
//! the token endpoint and the front door.
//!
//! The driver keeps cookies and never follows redirects on its own: it follows a redirect only
//! while it stays on the server, and stops at the first one that leaves for the client's
//! redirect URI (nothing listens there; the `Location` header is parsed instead).
#![allow(dead_code)]

use std::collections::BTreeSet;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

use crate::fakes::FakeUpstream;
use crate::helpers::{ADMIN_EMAIL, ADMIN_PASSWORD, TestApp};

/// The redirect URI most tests register (a loopback: any port matches).
pub const REDIRECT: &str = "http://127.0.0.1:43210/callback";

// ---------------------------------------------------------------------------------------------
// HTML: a tiny tag scanner, enough for forms.
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// The browser.
// ---------------------------------------------------------------------------------------------

/// One answer, read completely.
#[derive(Debug, Clone)]
pub struct Page {
    pub url: String,
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Page {
    pub async fn read(url: &str, res: reqwest::Response) -> Page {
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let body = res.text().await.unwrap_or_default();
        Page {
            url: url.to_owned(),
            status,
            headers,
            body,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// All values of a header (e.g. `set-cookie`).
    pub fn header_all(&self, name: &str) -> Vec<String> {
        self.headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect()
    }

    pub fn is_redirect(&self) -> bool {
        (300..400).contains(&self.status)
    }

    /// The `Location`, resolved against this page's URL.
    pub fn location(&self) -> Option<url::Url> {
        let loc = self.header("location")?;
        let base = url::Url::parse(&self.url).ok()?;
        base.join(loc).ok()
    }

    pub fn forms(&self) -> Vec<Form> {
        forms(&self.body)
    }

    pub fn login_form(&self) -> Option<Form> {
        self.forms().into_iter().find(Form::is_login)
    }

    pub fn consent_form(&self) -> Option<Form> {
        self.forms().into_iter().find(Form::is_consent)
    }

    pub fn is_html(&self) -> bool {
        self.header("content-type")
            .is_some_and(|c| c.to_ascii_lowercase().starts_with("text/html"))
    }

    /// Where a form posts to (its action, resolved; this page's URL when absent or empty).
    pub fn action_url(&self, form: &Form) -> String {
        match form.action.as_deref() {
            Some(a) if !a.is_empty() => url::Url::parse(&self.url)
                .and_then(|base| base.join(a))
                .map(|u| u.to_string())
                .unwrap_or_else(|_| a.to_owned()),
            _ => self.url.clone(),
        }
    }

    /// A short description for assertion messages.
    pub fn describe(&self) -> String {
        let body: String = self.body.chars().take(1500).collect();
        format!(
            "{} {} location={:?} body: {}",
            self.status,
            self.url,
            self.header("location"),
            body
        )
    }
}

/// A cookie-keeping client that never follows redirects on its own, speaking to one app.
pub struct Browser {
    pub client: reqwest::Client,
    /// `http://127.0.0.1:PORT`: the server's origin.
    pub origin: String,
}

impl Browser {
    pub fn new(app: &TestApp) -> Browser {
        Browser {
            client: reqwest::Client::builder()
                .cookie_store(true)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            origin: app.address.clone(),
        }
    }

    pub async fn get(&self, url: &str) -> Page {
        let res = self
            .client
            .get(url)
            .header("accept", "text/html,application/xhtml+xml")
            .send()
            .await
            .expect("GET");
        Page::read(url, res).await
    }

    /// Submits a form the way a browser does (urlencoded, with the page's Origin).
    pub async fn post_form(&self, url: &str, fields: &[(String, String)]) -> Page {
        let res = self
            .client
            .post(url)
            .header("accept", "text/html,application/xhtml+xml")
            .header("origin", &self.origin)
            .form(fields)
            .send()
            .await
            .expect("POST");
        Page::read(url, res).await
    }

    /// Signs in through the control API (`POST /v1/auth/login`), which sets `ezf_session`.
    pub async fn api_login(&self, email: &str, password: &str) -> Page {
        let url = format!("{}/v1/auth/login", self.origin);
        let res = self
            .client
            .post(&url)
            .json(&json!({ "email": email, "password": password }))
            .send()
            .await
            .expect("login");
        Page::read(&url, res).await
    }

    /// Is `url` on the server itself (as opposed to the client's redirect URI)?
    pub fn on_server(&self, url: &url::Url) -> bool {
        url::Url::parse(&self.origin)
            .map(|o| o.origin() == url.origin())
            .unwrap_or(false)
    }
}

// ---------------------------------------------------------------------------------------------
// PKCE and the authorization request.
// ---------------------------------------------------------------------------------------------

/// A fresh random URL-safe string of `bytes` random bytes (43 chars for 32).
pub fn random_string(bytes: usize) -> String {
    let mut v = Vec::with_capacity(bytes);
    while v.len() < bytes {
        v.extend_from_slice(&ezforge::crypto::random_bytes::<32>());
    }
    v.truncate(bytes);
    URL_SAFE_NO_PAD.encode(v)
}

/// (verifier, S256 challenge).
pub fn pkce() -> (String, String) {
    let verifier = random_string(48);
    let challenge = challenge_for(&verifier);
    (verifier, challenge)
}

pub fn challenge_for(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(ezforge::crypto::sha256(verifier.as_bytes()))
}

/// The parameters of one authorization request, in order, and the PKCE verifier behind them.
#[derive(Debug, Clone)]
pub struct AuthRequest {
    pub params: Vec<(String, String)>,
    pub verifier: String,
}

impl AuthRequest {
    /// `response_type=code`, PKCE S256, a random state, `resource`; no scope (the default).
    pub fn new(client_id: &str, redirect_uri: &str, resource: &str) -> AuthRequest {
        let (verifier, challenge) = pkce();
        let params = [
            ("response_type", "code"),
            ("client_id", client_id),
            ("redirect_uri", redirect_uri),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
            ("state", &random_string(16)),
            ("resource", resource),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        AuthRequest { params, verifier }
    }

    /// Replaces (or adds) a parameter.
    pub fn set(mut self, key: &str, value: &str) -> AuthRequest {
        match self.params.iter_mut().find(|(k, _)| k == key) {
            Some(p) => p.1 = value.to_owned(),
            None => self.params.push((key.to_owned(), value.to_owned())),
        }
        self
    }

    /// Adds a parameter even if present (duplicates).
    pub fn add(mut self, key: &str, value: &str) -> AuthRequest {
        self.params.push((key.to_owned(), value.to_owned()));
        self
    }

    pub fn without(mut self, key: &str) -> AuthRequest {
        self.params.retain(|(k, _)| k != key);
        self
    }

    pub fn scope(self, scope: &str) -> AuthRequest {
        self.set("scope", scope)
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn state(&self) -> &str {
        self.get("state").unwrap_or("")
    }

    pub fn redirect_uri(&self) -> &str {
        self.get("redirect_uri").unwrap_or("")
    }

    pub fn client_id(&self) -> &str {
        self.get("client_id").unwrap_or("")
    }

    pub fn url(&self, origin: &str) -> String {
        self.url_at(&format!("{origin}/oauth/authorize"))
    }

    /// The request sent to the authorization endpoint `endpoint`.
    pub fn url_at(&self, endpoint: &str) -> String {
        let mut u = url::Url::parse(endpoint).expect("url");
        {
            let mut q = u.query_pairs_mut();
            for (k, v) in &self.params {
                q.append_pair(k, v);
            }
        }
        u.to_string()
    }
}

/// How a run of the authorization flow ended.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// The redirect that left the server for the client, if any.
    pub redirect: Option<url::Url>,
    pub code: Option<String>,
    pub state: Option<String>,
    pub iss: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
    /// Every page on the way, the last one included.
    pub pages: Vec<Page>,
    pub saw_login: bool,
    pub saw_consent: bool,
    /// How many times the redirect's query named each parameter.
    pub query: Vec<(String, String)>,
}

impl Outcome {
    pub fn last(&self) -> &Page {
        self.pages.last().expect("at least one page")
    }

    pub fn status(&self) -> u16 {
        self.last().status
    }

    /// The final page, for messages.
    pub fn describe(&self) -> String {
        let trail: Vec<String> = self
            .pages
            .iter()
            .map(|p| format!("{} {}", p.status, p.url))
            .collect();
        format!(
            "redirect={:?} error={:?} ({:?}) login={} consent={} trail={trail:?} last page: {}",
            self.redirect.as_ref().map(|u| u.to_string()),
            self.error,
            self.error_description,
            self.saw_login,
            self.saw_consent,
            self.last().describe()
        )
    }

    /// The code, or a panic that says what happened instead.
    #[track_caller]
    pub fn code(&self) -> String {
        match &self.code {
            Some(c) => c.clone(),
            None => panic!("expected an authorization code; {}", self.describe()),
        }
    }

    /// An error page (no redirect to the client) with this status.
    #[track_caller]
    pub fn assert_error_page(&self, status: u16) {
        assert!(
            self.redirect.is_none(),
            "expected an error page, not a redirect to the client; {}",
            self.describe()
        );
        let last = self.last();
        assert_eq!(last.status, status, "{}", self.describe());
        assert!(
            last.header("location").is_none(),
            "an error page has no Location; {}",
            self.describe()
        );
        assert!(
            last.login_form().is_none() && last.consent_form().is_none(),
            "an error page, not a login or consent form; {}",
            self.describe()
        );
    }

    /// A redirect to the client carrying `error`, the request's `state` and the issuer.
    #[track_caller]
    pub fn assert_redirect_error(&self, error: &str, req: &AuthRequest, issuer: &str) {
        assert!(
            self.redirect.is_some(),
            "expected a redirect to the client with error={error}; {}",
            self.describe()
        );
        assert_eq!(
            self.error.as_deref(),
            Some(error),
            "error; {}",
            self.describe()
        );
        assert!(
            self.code.is_none(),
            "no code with an error; {}",
            self.describe()
        );
        assert_eq!(
            self.state.as_deref(),
            Some(req.state()),
            "state; {}",
            self.describe()
        );
        assert_eq!(
            self.iss.as_deref(),
            Some(issuer),
            "iss; {}",
            self.describe()
        );
    }
}

/// Who signs in and what they answer at the consent page.
#[derive(Debug, Clone)]
pub struct Person {
    pub email: String,
    pub password: String,
    /// "approve" or "deny".
    pub decision: String,
    /// Tick every checkbox of the consent page ("remember this decision").
    pub tick_boxes: bool,
}

impl Person {
    pub fn admin() -> Person {
        Person::new(ADMIN_EMAIL, ADMIN_PASSWORD)
    }

    pub fn new(email: &str, password: &str) -> Person {
        Person {
            email: email.to_owned(),
            password: password.to_owned(),
            decision: "approve".into(),
            tick_boxes: true,
        }
    }

    pub fn deny(mut self) -> Person {
        self.decision = "deny".into();
        self
    }
}

/// Runs the whole authorization flow as the admin, approving.
pub async fn authorize(browser: &Browser, req: &AuthRequest) -> Outcome {
    authorize_as(browser, req, &Person::admin()).await
}

/// GETs `/oauth/authorize`; signs in when a login form comes (posting every hidden input back),
/// answers a consent form, follows redirects that stay on the server, and stops at the first
/// redirect that leaves for the client, or at any other page.
pub async fn authorize_as(browser: &Browser, req: &AuthRequest, who: &Person) -> Outcome {
    authorize_url(browser, &req.url(&browser.origin), who).await
}

/// [`authorize_as`] from a whole authorization URL (another issuer's endpoint).
pub async fn authorize_url(browser: &Browser, url: &str, who: &Person) -> Outcome {
    let mut out = Outcome::default();
    let mut page = browser.get(url).await;
    let mut logins = 0;
    let mut consents = 0;
    for _ in 0..12 {
        out.pages.push(page.clone());
        if page.is_redirect() {
            let Some(next) = page.location() else {
                return out;
            };
            if browser.on_server(&next) {
                page = browser.get(next.as_str()).await;
                continue;
            }
            out.query = next
                .query_pairs()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            let get = |name: &str| {
                out.query
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
            };
            out.code = get("code");
            out.state = get("state");
            out.iss = get("iss");
            out.error = get("error");
            out.error_description = get("error_description");
            out.redirect = Some(next);
            return out;
        }
        if page.status != 200 {
            return out;
        }
        if let Some(form) = page.login_form() {
            out.saw_login = true;
            logins += 1;
            if logins > 1 {
                // The login page again: the password was refused. Stop here.
                return out;
            }
            let fields = form.fields(
                &[("email", &who.email), ("password", &who.password)],
                None,
                false,
            );
            let url = page.action_url(&form);
            page = browser.post_form(&url, &fields).await;
            continue;
        }
        if let Some(form) = page.consent_form() {
            out.saw_consent = true;
            consents += 1;
            if consents > 1 {
                return out;
            }
            let fields = form.fields(&[], Some(("decision", &who.decision)), who.tick_boxes);
            let url = page.action_url(&form);
            page = browser.post_form(&url, &fields).await;
            continue;
        }
        return out;
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Tokens.
// ---------------------------------------------------------------------------------------------

/// How a client authenticates at the token, revocation and introspection endpoints.
#[derive(Debug, Clone)]
pub enum ClientAuth {
    None,
    /// A public client: `client_id` in the body.
    Public(String),
    /// `client_secret_basic`.
    Basic(String, String),
    /// `client_secret_post`.
    Post(String, String),
    /// `private_key_jwt`: `client_id` and a signed client assertion.
    Assertion(String, String),
}

#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub text: String,
    pub body: Value,
}

impl Reply {
    pub async fn read(res: reqwest::Response) -> Reply {
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let text = res.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            text,
            body,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn error(&self) -> &str {
        self.body["error"].as_str().unwrap_or("")
    }

    pub fn str(&self, key: &str) -> String {
        self.body[key]
            .as_str()
            .unwrap_or_else(|| panic!("{key} missing; {} {}", self.status, self.text))
            .to_owned()
    }

    pub fn access_token(&self) -> String {
        self.str("access_token")
    }

    pub fn refresh_token(&self) -> String {
        self.str("refresh_token")
    }

    #[track_caller]
    pub fn assert_ok(&self) -> &Self {
        assert_eq!(self.status, 200, "expected 200; body: {}", self.text);
        self
    }

    /// An RFC 6749 §5.2 error with this status and code.
    #[track_caller]
    pub fn assert_error(&self, status: u16, error: &str) {
        assert_eq!(
            (self.status, self.error()),
            (status, error),
            "expected {status} {error}; body: {}",
            self.text
        );
    }
}

/// A cookie-less client (what an MCP client's HTTP stack is).
pub fn bare_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// POSTs a urlencoded form to `{origin}{path}` with client authentication.
pub async fn post_endpoint(
    app: &TestApp,
    path: &str,
    auth: &ClientAuth,
    form: &[(&str, &str)],
) -> Reply {
    let mut fields: Vec<(String, String)> = form
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let mut req = bare_client().post(app.url(path));
    match auth {
        ClientAuth::None => {}
        ClientAuth::Public(id) => fields.push(("client_id".into(), id.clone())),
        ClientAuth::Basic(id, secret) => {
            let enc =
                |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            let cred = STANDARD.encode(format!("{}:{}", enc(id), enc(secret)));
            req = req.header("authorization", format!("Basic {cred}"));
        }
        ClientAuth::Post(id, secret) => {
            fields.push(("client_id".into(), id.clone()));
            fields.push(("client_secret".into(), secret.clone()));
        }
        ClientAuth::Assertion(id, jwt) => {
            fields.push(("client_id".into(), id.clone()));
            fields.push((
                "client_assertion_type".into(),
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".into(),
            ));
            fields.push(("client_assertion".into(), jwt.clone()));
        }
    }
    Reply::read(req.form(&fields).send().await.expect("request")).await
}

pub async fn token(app: &TestApp, auth: &ClientAuth, form: &[(&str, &str)]) -> Reply {
    post_endpoint(app, "/oauth/token", auth, form).await
}

/// `grant_type=authorization_code` for the code `outcome` carries.
pub async fn exchange(app: &TestApp, auth: &ClientAuth, req: &AuthRequest, code: &str) -> Reply {
    exchange_with(app, auth, req.redirect_uri(), code, &req.verifier).await
}

pub async fn exchange_with(
    app: &TestApp,
    auth: &ClientAuth,
    redirect_uri: &str,
    code: &str,
    verifier: &str,
) -> Reply {
    token(
        app,
        auth,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", verifier),
        ],
    )
    .await
}

pub async fn refresh(app: &TestApp, auth: &ClientAuth, refresh_token: &str) -> Reply {
    token(
        app,
        auth,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ],
    )
    .await
}

pub async fn revoke(app: &TestApp, auth: &ClientAuth, token: &str) -> Reply {
    post_endpoint(app, "/oauth/revoke", auth, &[("token", token)]).await
}

pub async fn introspect(app: &TestApp, auth: &ClientAuth, token: &str) -> Reply {
    post_endpoint(app, "/oauth/introspect", auth, &[("token", token)]).await
}

/// The decoded (header, claims) of a JWT, unverified.
pub fn jwt_parts(token: &str) -> (Value, Value) {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "a JWT has three parts: {token}");
    let decode = |s: &str| -> Value {
        let bytes = URL_SAFE_NO_PAD
            .decode(s.trim_end_matches('='))
            .unwrap_or_else(|e| panic!("JWT part is not base64url ({e}): {s}"));
        serde_json::from_slice(&bytes).expect("JWT part is JSON")
    };
    (decode(parts[0]), decode(parts[1]))
}

/// A space-separated scope as a set.
pub fn scope_set(s: &str) -> BTreeSet<String> {
    s.split_whitespace().map(str::to_owned).collect()
}

/// `POST {resource}` with a JSON-RPC `tools/list`: the front door's status and body.
pub async fn tools_list(resource: &str, access_token: &str) -> (u16, Value) {
    let res = bare_client()
        .post(resource)
        .bearer_auth(access_token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}).to_string())
        .send()
        .await
        .expect("front door");
    let status = res.status().as_u16();
    let text = res.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

// ---------------------------------------------------------------------------------------------
// Fixtures: the admin, one project, one server routed to a fake upstream.
// ---------------------------------------------------------------------------------------------

/// A control API call with a bearer session token; (status, body).
pub async fn api(
    app: &TestApp,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut req = bare_client().request(method, app.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = Reply::read(req.send().await.expect("request")).await;
    (r.status, r.body)
}

pub async fn session_token(app: &TestApp, email: &str, password: &str) -> String {
    let (status, body) = api(
        app,
        "POST",
        "/v1/auth/login",
        None,
        Some(json!({ "email": email, "password": password })),
    )
    .await;
    assert_eq!(status, 200, "login {email}: {body}");
    body["data"]["token"].as_str().expect("token").to_owned()
}

pub struct World {
    pub app: TestApp,
    pub up: FakeUpstream,
    /// The admin's session token (bearer).
    pub admin: String,
    pub admin_id: String,
    /// The project's slug.
    pub project: String,
    pub server_id: String,
    pub slug: String,
    /// The server's resource URI (`{issuer}/mcp/{slug}`).
    pub resource: String,
}

pub async fn world() -> World {
    world_with(|_| {}).await
}

pub async fn world_with(f: impl FnOnce(&mut ezforge::Config)) -> World {
    let up = FakeUpstream::start().await;
    let app = TestApp::builder().config(f).spawn().await;
    let admin = session_token(&app, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let (status, me) = api(&app, "GET", "/v1/auth/session", Some(&admin), None).await;
    assert_eq!(status, 200, "{me}");
    let admin_id = me["data"]["user"]["id"].as_str().expect("id").to_owned();
    let (status, project) = api(
        &app,
        "POST",
        "/v1/projects",
        Some(&admin),
        Some(json!({ "name": "Weather" })),
    )
    .await;
    assert_eq!(status, 201, "{project}");
    let project = project["data"]["slug"].as_str().expect("slug").to_owned();
    let mut w = World {
        app,
        up,
        admin,
        admin_id,
        project,
        server_id: String::new(),
        slug: String::new(),
        resource: String::new(),
    };
    let server = w.add_server("weather").await;
    w.server_id = server["id"].as_str().expect("id").to_owned();
    w.slug = server["slug"].as_str().expect("slug").to_owned();
    w.resource = server["url"].as_str().expect("url").to_owned();
    w
}

impl World {
    pub fn issuer(&self) -> &str {
        &self.app.address
    }

    pub fn browser(&self) -> Browser {
        Browser::new(&self.app)
    }

    /// Another server in the project, routed to the same upstream; returns `data`.
    pub async fn add_server(&self, name: &str) -> Value {
        let (status, server) = api(
            &self.app,
            "POST",
            &format!("/v1/projects/{}/servers", self.project),
            Some(&self.admin),
            Some(json!({ "name": name, "upstreamUrl": self.up.url })),
        )
        .await;
        assert_eq!(status, 201, "{server}");
        server["data"].clone()
    }

    /// `POST /v1/servers/:id/clients` on the main server; returns `data`.
    pub async fn register(&self, spec: Value) -> Value {
        self.register_on(&self.server_id, spec).await
    }

    pub async fn register_on(&self, server_id: &str, spec: Value) -> Value {
        let (status, body) = api(
            &self.app,
            "POST",
            &format!("/v1/servers/{server_id}/clients"),
            Some(&self.admin),
            Some(spec),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        body["data"].clone()
    }

    /// A public client redirecting to [`REDIRECT`] with every base scope; its client_id.
    pub async fn public_client(&self) -> String {
        self.public_client_named("Test Client").await
    }

    pub async fn public_client_named(&self, name: &str) -> String {
        let c = self
            .register(json!({
                "name": name,
                "redirectUris": [REDIRECT],
                "scopes": ["mcp:read", "mcp:write", "offline_access"],
            }))
            .await;
        c["clientId"].as_str().expect("clientId").to_owned()
    }

    /// A confidential client: (client_id, client_secret).
    pub async fn confidential_client(&self) -> (String, String) {
        let c = self
            .register(json!({
                "name": "Backend",
                "redirectUris": [REDIRECT],
                "scopes": ["mcp:read", "mcp:write", "offline_access"],
                "confidential": true,
            }))
            .await;
        (
            c["clientId"].as_str().expect("clientId").to_owned(),
            c["clientSecret"].as_str().expect("clientSecret").to_owned(),
        )
    }

    pub fn request(&self, client_id: &str) -> AuthRequest {
        AuthRequest::new(client_id, REDIRECT, &self.resource)
    }

    /// Runs the flow as the admin with `scope` and exchanges the code; the token reply.
    pub async fn tokens(&self, client_id: &str, scope: &str) -> Reply {
        let req = self.request(client_id).scope(scope);
        let out = authorize(&self.browser(), &req).await;
        let code = out.code();
        let reply = exchange(
            &self.app,
            &ClientAuth::Public(client_id.to_owned()),
            &req,
            &code,
        )
        .await;
        reply.assert_ok();
        reply
    }

    /// A user with the password `USER_PASSWORD` and `role`; (id, password).
    pub async fn user(&self, email: &str, role: &str) -> (String, String) {
        let password = "a-perfectly-fine-password";
        let (status, body) = api(
            &self.app,
            "POST",
            "/v1/users",
            Some(&self.admin),
            Some(json!({ "email": email, "password": password, "role": role })),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        (
            body["data"]["user"]["id"].as_str().expect("id").to_owned(),
            password.to_owned(),
        )
    }
}

/// Rows in the authorization server's tables named like `pattern` (0 when none exist).
pub async fn rows_in_tables_like(app: &TestApp, patterns: &[&'static str]) -> Vec<(String, i64)> {
    let patterns: Vec<&'static str> = patterns.to_vec();
    app.state
        .store
        .run(move |c| {
            let mut out = Vec::new();
            let names: Vec<String> = {
                let mut stmt = c
                    .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
                    .map_err(ezforge::store::StoreError::from)?;
                stmt.query_map([], |r| r.get::<_, String>(0))
                    .map_err(ezforge::store::StoreError::from)?
                    .filter_map(Result::ok)
                    .collect()
            };
            for name in names {
                if patterns.iter().any(|p| name.contains(p)) {
                    let n: i64 = c
                        .query_row(&format!("SELECT count(*) FROM \"{name}\""), [], |r| {
                            r.get(0)
                        })
                        .map_err(ezforge::store::StoreError::from)?;
                    out.push((name, n));
                }
            }
            Ok::<_, ezforge::store::StoreError>(out)
        })
        .await
        .expect("count rows")
}
