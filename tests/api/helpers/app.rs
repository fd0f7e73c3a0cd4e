//! TestApp: the real server on 127.0.0.1:0 with its own data dir, and the clients that talk to it.

use super::*;

pub const ADMIN_EMAIL: &str = "admin@example.com";
pub const ADMIN_PASSWORD: &str = "correct-horse-battery-staple";

/// A running server with its own data directory.
pub struct TestApp {
    pub address: String,
    pub port: u16,
    pub client: reqwest::Client,
    /// A cookie-less client (see [`plain_client`]) that trusts the app's certificate.
    pub plain: reqwest::Client,
    pub data_dir: PathBuf,
    handle: ServerHandle,
    reloader: ezforge::app::Reloader,
    /// Every service, for what no HTTP request can show (rows of an older version, tokens
    /// minted without a sign-in).
    pub state: ezforge::app::Services,
    tls_fingerprint: Option<String>,
    pub(super) admin: tokio::sync::OnceCell<String>,
    join: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    _tmp: Option<tempfile::TempDir>,
}

pub struct TestAppBuilder {
    config: Config,
    tmp: Option<tempfile::TempDir>,
    resolver: Option<std::sync::Arc<dyn ezforge::shared::destinations::Resolve>>,
}

/// The defaults a test starts from: built-in config, one worker, a fixed admin.
pub fn test_config(data_dir: &Path) -> Config {
    let mut config = Config::load_from(None, &[]).expect("default config is valid");
    config.server.data_dir = data_dir.to_path_buf();
    config.server.workers = 1;
    config.server.shutdown_timeout = ezforge::config::Duration::secs(1);
    config.bootstrap.admin_email = Some(ADMIN_EMAIL.into());
    config.bootstrap.admin_password = Some(ezforge::domain::Secret::new(ADMIN_PASSWORD));
    sandbox_for_tests(&mut config);
    config
}

/// Deployed programs run confined, as in production: through the ezforge binary as launcher,
/// reading the test fixtures and tools below `tests/`. Without Landlock on this kernel they run
/// unconfined, and the output says so.
fn sandbox_for_tests(config: &mut Config) {
    static NOTE: std::sync::Once = std::sync::Once::new();
    let tests = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests");
    config.deploy.sandbox.launcher = Some(PathBuf::from(env!("CARGO_BIN_EXE_ezforge")));
    // Apps of one test run are separate instances on one machine: each its own uids, as two
    // instances in production must have.
    static APPS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = APPS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let first = 200_000 + (std::process::id() % 1000) * 100_000 + n * 64;
    config.deploy.run_as_uids = [first, first + 63];
    config.deploy.sandbox.read_paths = vec![tests.clone()];
    match ezforge::deploy::sandbox::probe::landlock_abi() {
        Ok(_) => NOTE.call_once(|| reachable_by_others(&tests)),
        Err(why) => {
            NOTE.call_once(|| {
                println!("NOTE: {why}: deployed programs in these tests run unconfined")
            });
            config.deploy.sandbox.mode = ezforge::config::SandboxMode::Off;
        }
    }
}

/// When the tests run as root, deployed programs run as `nobody`, who must be able to reach
/// the fixtures: directories above them that others cannot search are opened for searching
/// (not listing), and the output says so.
fn reachable_by_others(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if !ezforge::deploy::sandbox::probe::is_root() {
        return;
    }
    for d in dir.ancestors() {
        let Ok(meta) = std::fs::metadata(d) else {
            continue;
        };
        let mode = meta.permissions().mode();
        if mode & 0o001 == 0 {
            println!(
                "NOTE: {} was not searchable by other users; made it so (o+x) for the sandboxed fixtures",
                d.display()
            );
            let _ = std::fs::set_permissions(d, std::fs::Permissions::from_mode(mode | 0o001));
        }
    }
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
            resolver: None,
        }
    }

    /// A builder reusing an existing data dir (restarts).
    pub fn builder_in(data_dir: &Path) -> TestAppBuilder {
        TestAppBuilder {
            config: test_config(data_dir),
            tmp: None,
            resolver: None,
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

    /// Upstream names are looked up with `resolver` instead of the system's.
    pub fn resolver(
        mut self,
        resolver: std::sync::Arc<dyn ezforge::shared::destinations::Resolve>,
    ) -> Self {
        self.resolver = Some(resolver);
        self
    }

    pub async fn try_spawn(self) -> Result<TestApp, ezforge::app::StartupError> {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let data_dir = self.config.server.data_dir.clone();
        let tls = self.config.tls.mode != ezforge::config::TlsMode::Off;
        let app = match self.resolver {
            Some(r) => App::build_with(self.config, listener, r).await?,
            None => App::build(self.config, listener).await?,
        };
        let port = app.port();
        let handle = app.handle();
        let reloader = app.reloader();
        let tls_fingerprint = app.tls_fingerprint();
        let state = app.services().clone();
        let join = tokio::spawn(app.run_until_stopped());
        let scheme = if tls { "https" } else { "http" };
        // A self-signed certificate lives in the data dir (one from files may not).
        let cert = tls
            .then(|| std::fs::read(data_dir.join("tls/cert.pem")).ok())
            .flatten();
        Ok(TestApp {
            address: format!("{scheme}://127.0.0.1:{port}"),
            port,
            client: client(),
            plain: plain_client_trusting(cert.as_deref()),
            data_dir,
            handle,
            reloader,
            state,
            tls_fingerprint,
            admin: tokio::sync::OnceCell::new(),
            join: Some(join),
            _tmp: self.tmp,
        })
    }

    pub async fn spawn(self) -> TestApp {
        self.try_spawn().await.expect("app starts")
    }
}

/// An app whose control rate limit never gets in the way.
pub async fn roomy() -> TestApp {
    TestApp::builder()
        .config(|c| {
            c.control.rate_limit.per_minute = 1_000_000;
            c.control.rate_limit.burst = 1_000_000;
        })
        .spawn()
        .await
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
