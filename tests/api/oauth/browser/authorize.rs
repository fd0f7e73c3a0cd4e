//! PKCE, the authorization request, and a person going through the sign-in and consent pages.

use super::*;

/// A fresh random URL-safe string of `bytes` random bytes (43 chars for 32).
pub fn random_string(bytes: usize) -> String {
    let mut v = Vec::with_capacity(bytes);
    while v.len() < bytes {
        v.extend_from_slice(&ezforge::domain::random_bytes::<32>());
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
