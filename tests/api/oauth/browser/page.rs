//! The browser: a cookie-keeping client and the pages it reads.

use super::*;

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
