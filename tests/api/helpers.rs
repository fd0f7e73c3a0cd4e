#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};

use actix_web::dev::ServerHandle;
use ezforge::{App, Config};

pub const ADMIN_EMAIL: &str = "admin@example.com";
pub const ADMIN_PASSWORD: &str = "correct-horse-battery-staple";

/// A running server with its own data directory.
pub struct TestApp {
    pub address: String,
    pub port: u16,
    pub client: reqwest::Client,
    pub data_dir: PathBuf,
    handle: ServerHandle,
    reloader: ezforge::app::Reloader,
    pub state: actix_web::web::Data<ezforge::app::AppState>,
    tls_fingerprint: Option<String>,
    join: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    _tmp: Option<tempfile::TempDir>,
}

pub struct TestAppBuilder {
    config: Config,
    tmp: Option<tempfile::TempDir>,
}

/// The defaults a test starts from: built-in config, one worker, a fixed admin.
pub fn test_config(data_dir: &Path) -> Config {
    let mut config = Config::load_from(None, &[]).expect("default config is valid");
    config.server.data_dir = data_dir.to_path_buf();
    config.server.workers = 1;
    config.server.shutdown_timeout = ezforge::config::Duration::secs(1);
    config.bootstrap.admin_email = Some(ADMIN_EMAIL.into());
    config.bootstrap.admin_password = Some(ezforge::domain::Secret::new(ADMIN_PASSWORD));
    config
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::builder().spawn().await
    }

    pub fn builder() -> TestAppBuilder {
        let tmp = tempfile::tempdir().expect("tempdir");
        TestAppBuilder {
            config: test_config(tmp.path()),
            tmp: Some(tmp),
        }
    }

    /// A builder reusing an existing data dir (restarts).
    pub fn builder_in(data_dir: &Path) -> TestAppBuilder {
        TestAppBuilder {
            config: test_config(data_dir),
            tmp: None,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request")
    }

    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("ezforge.db")
    }

    pub async fn reload(&self) {
        self.reloader.reload().await;
    }

    pub fn tls_fingerprint(&self) -> Option<String> {
        self.tls_fingerprint.clone()
    }

    /// Stops the server gracefully and waits until it has closed the store.
    pub async fn stop(mut self) {
        self.handle.stop(true).await;
        if let Some(join) = self.join.take() {
            join.await.expect("server task").expect("server ran");
        }
    }

    /// Keeps the data dir alive past the app (for restarts); the caller owns it.
    pub fn take_tempdir(&mut self) -> Option<tempfile::TempDir> {
        self._tmp.take()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // `stop` sends its command at once; the returned future only waits for completion.
        drop(self.handle.stop(false));
    }
}

impl TestAppBuilder {
    pub fn config(mut self, f: impl FnOnce(&mut Config)) -> Self {
        f(&mut self.config);
        self
    }

    pub async fn try_spawn(self) -> Result<TestApp, ezforge::app::StartupError> {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let data_dir = self.config.server.data_dir.clone();
        let tls = self.config.tls.mode != ezforge::config::TlsMode::Off;
        let app = App::build(self.config, listener).await?;
        let port = app.port();
        let handle = app.handle();
        let reloader = app.reloader();
        let tls_fingerprint = app.tls_fingerprint();
        let state = app.data();
        let join = tokio::spawn(app.run_until_stopped());
        let scheme = if tls { "https" } else { "http" };
        Ok(TestApp {
            address: format!("{scheme}://127.0.0.1:{port}"),
            port,
            client: client(),
            data_dir,
            handle,
            reloader,
            state,
            tls_fingerprint,
            join: Some(join),
            _tmp: self.tmp,
        })
    }

    pub async fn spawn(self) -> TestApp {
        self.try_spawn().await.expect("app starts")
    }
}

/// A client that keeps cookies and never follows redirects (tests look at each hop).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

pub async fn json(res: reqwest::Response) -> serde_json::Value {
    let status = res.status();
    let text = res.text().await.expect("body");
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("status {status}: body is not JSON ({e}): {text}"))
}
