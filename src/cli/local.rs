//! Commands that run on the server's own machine: serve, config check, backup, keys, healthcheck.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};

use crate::app::App;
use crate::config::Config;
use crate::crypto::MasterKey;
use crate::services::keys;
use crate::store::Store;

fn load(config_path: Option<&Path>) -> anyhow::Result<Config> {
    Ok(Config::load(config_path)?)
}

pub fn serve(
    config_path: Option<&Path>,
    listen: Option<std::net::SocketAddr>,
) -> anyhow::Result<ExitCode> {
    let mut config = load(config_path)?;
    if let Some(addr) = listen {
        config.server.listen = addr;
        config.validate()?;
    }
    let _log = crate::telemetry::init(&config.logging);
    let env: Vec<(String, String)> = std::env::vars().collect();
    for warning in crate::config::unused_variables(&env) {
        tracing::warn!("{warning}");
    }
    let listen = config.server.listen;
    let shutdown_timeout = config.server.shutdown_timeout.0;
    let listener = std::net::TcpListener::bind(listen)
        .with_context(|| format!("cannot listen on {listen}"))?;
    actix_web::rt::System::new().block_on(async move {
        // Handlers first: a signal that arrives once the banner is out must find them in place.
        let signals = Signals::install().context("cannot listen for signals")?;
        let mut app = App::build(config, listener).await?;
        let handle = app.handle();
        let reloader = app.reloader();
        actix_web::rt::spawn(signals.run(handle, reloader, shutdown_timeout));
        print_banner(&mut app);
        app.run_until_stopped().await?;
        tracing::info!("stopped");
        Ok(ExitCode::SUCCESS)
    })
}

fn print_banner(app: &mut App) {
    use std::fmt::Write;
    let mut b = String::new();
    let url = app.public_url().to_owned();
    let _ = writeln!(b, "ezForge Server {} is ready", env!("CARGO_PKG_VERSION"));
    let _ = writeln!(b, "  control API     {url}/v1   (health: {url}/v1/health)");
    if app.is_managed() {
        let _ = writeln!(
            b,
            "  OAuth issuer    {url}   (metadata: {url}/.well-known/oauth-authorization-server)"
        );
    } else {
        let _ = writeln!(
            b,
            "  auth mode       byoa (no built-in authorization server)"
        );
    }
    let _ = writeln!(b, "  MCP servers     {url}/mcp/<slug>");
    if let Some(fp) = app.tls_fingerprint() {
        let _ = writeln!(b, "  TLS certificate SHA-256 {fp}");
    }
    if let Some(admin) = app.take_admin_created() {
        let _ = writeln!(b);
        let url_arg = if url == crate::cli::client::DEFAULT_URL {
            String::new()
        } else {
            format!(" --url {url}")
        };
        let login = format!("ezforge auth login{url_arg} --email {}", admin.email);
        match admin.generated_password {
            Some(pw) => {
                let _ = writeln!(b, "  First start: created the admin user.");
                let _ = writeln!(b, "    email     {}", admin.email);
                let _ = writeln!(b, "    password  {}", pw.expose());
                let _ = writeln!(b, "  This password is shown only this once. Sign in with:");
            }
            None => {
                let _ = writeln!(
                    b,
                    "  First start: created the admin user {} with the configured password. Sign in with:",
                    admin.email
                );
            }
        }
        let _ = writeln!(b, "    {login}");
    }
    let _ = writeln!(b);
    let _ = writeln!(
        b,
        "  Ctrl-C or SIGTERM stops the server (a second one at once); SIGHUP reloads TLS files and signing keys."
    );
    crate::telemetry::print_detached(b);
}

struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// SIGTERM/SIGINT: stop accepting, finish in-flight requests, and be gone within
    /// `shutdown_timeout` whatever holds the stop up; a second SIGTERM/SIGINT: at once.
    /// SIGHUP: reload.
    async fn run(
        mut self,
        handle: actix_web::dev::ServerHandle,
        reloader: crate::app::Reloader,
        shutdown_timeout: std::time::Duration,
    ) {
        loop {
            tokio::select! {
                _ = self.term.recv() => break,
                _ = self.int.recv() => break,
                _ = self.hup.recv() => {
                    tracing::info!("SIGHUP: reloading");
                    reloader.reload().await;
                }
            }
        }
        tracing::info!("shutting down: finishing in-flight requests");
        let watchdog = std::thread::Builder::new()
            .name("ezforge-stop".into())
            .spawn(move || {
                std::thread::sleep(shutdown_timeout);
                stop_now("the server did not stop within server.shutdown_timeout");
            });
        if watchdog.is_err() {
            stop_now("no thread could be started to watch the shutdown");
        }
        let stopping = handle.stop(true);
        tokio::pin!(stopping);
        let mut stopped = false;
        loop {
            tokio::select! {
                () = &mut stopping, if !stopped => stopped = true,
                _ = self.term.recv() => stop_now("a second signal"),
                _ = self.int.recv() => stop_now("a second signal"),
            }
        }
    }
}

/// Ends the process now: every process group it started is killed first (nothing of theirs
/// outlives it), then the process exits. The database is left as SQLite's WAL guarantees.
fn stop_now(why: &str) -> ! {
    crate::deploy::process::kill_all_groups();
    let _ = writeln!(std::io::stderr(), "ezforge: stopping at once: {why}");
    std::process::exit(1)
}

pub fn config_check(config_path: Option<&Path>) -> anyhow::Result<ExitCode> {
    let config = Config::read(config_path)?;
    // Every problem at once, and what `serve` reads at start, read now: a check that passes
    // must mean a start that does. (The bootstrap admin matters only while there is no
    // database yet.)
    let mut problems: Vec<String> = config.problems().iter().map(ToString::to_string).collect();
    if !config.server.data_dir.join("ezforge.db").exists()
        && let Some(problem) = config.bootstrap_problem()
    {
        problems.push(problem.to_string());
    }
    if let Err(e) = crate::tls::check_files(&config.tls) {
        problems.push(e.to_string());
    }
    if let Err(e) = crate::outbound::Outbound::new(&config.outbound) {
        problems.push(e.to_string());
    }
    let env: Vec<(String, String)> = std::env::vars().collect();
    let warnings = crate::config::unused_variables(&env);
    for warning in &warnings {
        eprintln!("warning: {warning}");
    }
    if !problems.is_empty() {
        for p in &problems {
            eprintln!("error: {p}");
        }
        return Ok(ExitCode::FAILURE);
    }
    match &config.source_file {
        Some(p) => println!("# config OK: {} (+ environment)", p.display()),
        None => println!("# config OK: built-in defaults (+ environment)"),
    }
    for line in crate::deploy::sandbox::Sandbox::new(&config, false).describe() {
        println!("# {line}");
    }
    for warning in &warnings {
        println!("# warning: {warning}");
    }
    print!("{}", config.to_redacted_toml());
    Ok(ExitCode::SUCCESS)
}

pub fn backup(config_path: Option<&Path>, dest: &Path) -> anyhow::Result<ExitCode> {
    let config = load(config_path)?;
    let db = config.server.data_dir.join("ezforge.db");
    if !db.exists() {
        bail!("no database at {}", db.display());
    }
    if dest.exists() {
        bail!("{} already exists; choose a new file name", dest.display());
    }
    crate::store::backup(&db, dest).with_context(|| format!("backup to {}", dest.display()))?;
    println!("backed up {} to {}", db.display(), dest.display());
    println!(
        "note: encrypted values in it need the master key (data_dir/master.key); keep a copy of it separately"
    );
    Ok(ExitCode::SUCCESS)
}

fn open_keys(config: &Config) -> anyhow::Result<(Store, MasterKey)> {
    let dir = &config.server.data_dir;
    let db = dir.join("ezforge.db");
    if !db.exists() {
        bail!(
            "no database at {}; start the server once first",
            db.display()
        );
    }
    let store = Store::open(&db)?;
    let master = MasterKey::load(config.master_key.as_ref(), dir)?;
    Ok((store, master))
}

pub fn keys_list(config_path: Option<&Path>, json: bool) -> anyhow::Result<ExitCode> {
    let config = load(config_path)?;
    let (store, master) = open_keys(&config)?;
    let now = crate::domain::now();
    let set = store.run_blocking(|c| keys::load(c, &master, now))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&set.summaries)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<44}  {:<6}  {:<8}  {:<20}  PUBLISHED UNTIL",
        "KID", "ALG", "STATUS", "CREATED"
    );
    for k in &set.summaries {
        println!(
            "{:<44}  {:<6}  {:<8}  {:<20}  {}",
            k.kid,
            k.alg,
            k.status,
            crate::domain::rfc3339(k.created_at),
            k.publish_until
                .map(crate::domain::rfc3339)
                .unwrap_or_else(|| "-".into())
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn keys_rotate(config_path: Option<&Path>) -> anyhow::Result<ExitCode> {
    let config = load(config_path)?;
    let (store, master) = open_keys(&config)?;
    let now = crate::domain::now();
    let ttl = config.auth.access_token_ttl.as_secs();
    // The key must be the server's: the keys in force must open with it.
    store
        .run_blocking(|c| keys::load(c, &master, now))
        .context(
            "the master key given does not open the signing keys in force; nothing was changed",
        )?;
    let kid = store.run_blocking(|c| keys::rotate(c, &master, now, ttl))?;
    println!("new active signing key {kid}");
    println!(
        "a running server picks it up within {} s (or at once on SIGHUP); the previous key stays published until its tokens expire",
        keys::RELOAD_INTERVAL.as_secs()
    );
    Ok(ExitCode::SUCCESS)
}

pub fn users_create(
    config_path: Option<&Path>,
    email: &str,
    admin: bool,
    password_stdin: bool,
) -> anyhow::Result<ExitCode> {
    use crate::domain::{Secret, password, validate};
    let config = load(config_path)?;
    let email = validate::email(email).map_err(|e| anyhow::anyhow!("--email: {e}"))?;
    let (secret, generated) = if password_stdin {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .context("reading the password from stdin")?;
        let pw = Secret::new(line.trim_end_matches(['\r', '\n']).to_owned());
        crate::control::sessions::check_password_rules(&pw).map_err(|e| anyhow::anyhow!("{e}"))?;
        (pw, false)
    } else {
        (password::generate(), true)
    };
    let db = config.server.data_dir.join("ezforge.db");
    if !db.exists() {
        bail!(
            "no database at {}; start the server once first",
            db.display()
        );
    }
    let store = Store::open(&db)?;
    let hash = password::hash(&secret).map_err(|e| anyhow::anyhow!("hashing the password: {e}"))?;
    let now = crate::domain::now();
    let row = crate::store::users::UserRow {
        id: crate::domain::new_id("usr_"),
        email: email.clone(),
        role: if admin {
            crate::domain::kinds::UserRole::Admin
        } else {
            crate::domain::kinds::UserRole::Member
        },
        password_hash: Some(hash),
        created_at: now,
        updated_at: now,
    };
    let created = row.clone();
    store
        .run_blocking(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            if crate::store::users::by_email(&tx, &created.email)?.is_some() {
                return Ok::<_, anyhow::Error>(false);
            }
            crate::store::users::insert(&tx, &created)?;
            let actor = crate::store::audit::Actor::system("cli");
            let details = serde_json::json!({ "email": created.email, "role": created.role });
            crate::store::audit::record(
                &tx,
                &actor,
                "user.create",
                Some(&created.id),
                None,
                Some(&details),
            )?;
            tx.commit()?;
            Ok(true)
        })?
        .then_some(())
        .ok_or_else(|| anyhow::anyhow!("a user with the email {email} already exists"))?;
    println!("created {} {} ({})", row.role, row.email, row.id);
    if generated {
        println!("password (shown once): {}", secret.expose());
    }
    Ok(ExitCode::SUCCESS)
}

pub fn healthcheck(config_path: Option<&Path>, url: Option<String>) -> anyhow::Result<ExitCode> {
    let base = match url {
        Some(u) => u.trim_end_matches('/').to_owned(),
        None => {
            let config = load(config_path)?;
            let mut addr = config.server.listen;
            if addr.ip().is_unspecified() {
                addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            let scheme = if config.tls.mode == crate::config::TlsMode::Off {
                "http"
            } else {
                "https"
            };
            format!("{scheme}://{addr}")
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        // The check talks to this machine's own listener, whose certificate may be self-signed.
        let client = reqwest::Client::builder()
            .danger_accept_invalid_certs(true)
            .timeout(std::time::Duration::from_secs(5))
            .build()?;
        let res = client
            .get(format!("{base}/v1/health"))
            .send()
            .await
            .with_context(|| format!("{base}/v1/health"))?;
        let status = res.status();
        if status.is_success() {
            println!("healthy ({status}): {base}/v1/health");
            Ok(ExitCode::SUCCESS)
        } else {
            println!("unhealthy ({status}): {base}/v1/health");
            Ok(ExitCode::FAILURE)
        }
    })
}
