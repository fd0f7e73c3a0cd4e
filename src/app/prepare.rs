//! The blocking part of start-up: the data directory (created, checked, locked), the store,
//! the master key and the signing keys, the first admin, the declared servers, TLS.

use std::sync::Arc;

use super::{AdminCreated, StartupError};
use crate::config::Config;
use crate::control;
use crate::crypto::MasterKey;
use crate::domain::{self, password};
use crate::services::keys::{self, Keyring};
use crate::store::{self, Store};
use crate::tls::{self, CertResolver};

pub(super) struct Prepared {
    pub store: Store,
    pub master_key: MasterKey,
    pub keyring: Keyring,
    pub tls: Option<(rustls::ServerConfig, Arc<CertResolver>)>,
    pub admin_created: Option<AdminCreated>,
    pub servers: Vec<store::servers::ServerRow>,
    /// Grants revoked recently enough that their access tokens may still be unexpired.
    pub revoked: Vec<String>,
    /// Deleted clients, likewise (their client_credentials tokens).
    pub revoked_clients: Vec<String>,
    pub sandbox: crate::deploy::sandbox::Sandbox,
    pub lock: crate::data_dir::DataDirLock,
}

/// The blocking part of start-up.
pub(super) fn prepare(config: Config, public_url: &str) -> Result<Prepared, StartupError> {
    let data_dir = config.server.data_dir.clone();
    // A first start that cannot succeed must not leave a database and a master key behind.
    if !data_dir.join("ezforge.db").exists()
        && let Some(problem) = config.bootstrap_problem()
    {
        return Err(problem.into());
    }
    tls::check_files(&config.tls)?;
    create_data_dir(&data_dir)?;
    let lock = crate::data_dir::lock(&data_dir)?;
    let store = Store::open(&data_dir.join("ezforge.db"))?;
    let master_key = MasterKey::load_or_create(config.master_key.as_ref(), &data_dir)?;
    let now = domain::now();
    let keyring = store.run_blocking(|conn| {
        keys::ensure_active(conn, &master_key, now)?;
        keys::load(conn, &master_key, now)
    })?;
    let admin_created = bootstrap_admin(&config, &store)?;
    // The revocations it records are read below with the others.
    let report = store.run_blocking(|c| control::declared::reconcile(c, &config, public_url))?;
    if report != control::declared::Report::default() {
        tracing::info!(
            created = report.created,
            updated = report.updated,
            deleted = report.deleted,
            "config-declared servers reconciled"
        );
    }

    let mut names = config.tls.names.clone();
    if let Some(host) = url::Url::parse(public_url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
    {
        names.push(host.trim_matches(['[', ']']).to_owned());
    }
    let tls = tls::server_config(&config.tls, &data_dir, &names)?;
    let servers = store.run_blocking(|c| store::servers::all(c))?;
    let since = now
        - config.auth.access_token_ttl.as_secs()
        - 2 * crate::services::gateway::verify::LEEWAY_SECS;
    let (revoked, revoked_clients) = store.run_blocking(|c| {
        let mut grants = store::grants::recently_revoked(c, since)?;
        grants.extend(store::grants::recorded_revocations(c, "grant", since)?);
        let clients = store::grants::recorded_revocations(c, "client", since)?;
        Ok::<_, store::StoreError>((grants, clients))
    })?;
    let sandbox = crate::deploy::sandbox::Sandbox::new(&config, true);
    for line in sandbox.describe() {
        tracing::info!("{line}");
    }
    Ok(Prepared {
        lock,
        sandbox,
        revoked,
        revoked_clients,
        store,
        master_key,
        keyring: Keyring::new(keyring),
        tls,
        admin_created,
        servers,
    })
}

fn create_data_dir(path: &std::path::Path) -> Result<(), StartupError> {
    let err = |source| StartupError::DataDir {
        path: path.to_path_buf(),
        source,
    };
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(path).map_err(err)?;
    // Fail now, with the path in the message, rather than on the first write.
    let probe = path.join(".write-test");
    std::fs::write(&probe, b"").map_err(err)?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}

/// Creates the first admin when there is no user at all.
fn bootstrap_admin(config: &Config, store: &Store) -> Result<Option<AdminCreated>, StartupError> {
    if store.run_blocking(|c| store::users::count(c))? > 0 {
        return Ok(None);
    }
    if let Some(problem) = config.bootstrap_problem() {
        return Err(problem.into());
    }
    let email = config
        .bootstrap
        .admin_email
        .clone()
        .unwrap_or_else(|| "admin@localhost".to_owned());
    let (secret, generated) = match &config.bootstrap.admin_password {
        Some(p) => (p.clone(), None),
        None => {
            let p = password::generate();
            (p.clone(), Some(p))
        }
    };
    let hash = password::hash(&secret).map_err(|e| StartupError::Bootstrap {
        field: "admin_password",
        reason: e.to_string(),
    })?;
    let now = domain::now();
    let row = store::users::UserRow {
        id: domain::new_id("usr_"),
        email: email.clone(),
        role: crate::domain::kinds::UserRole::Admin,
        password_hash: Some(hash),
        created_at: now,
        updated_at: now,
    };
    store.run_blocking(|c| store::users::insert(c, &row))?;
    Ok(Some(AdminCreated {
        email,
        generated_password: generated,
    }))
}
