//! `ezforge doctor`: this machine's installation, read as `serve` reads it (the same config),
//! without changing anything — the database is opened read-only, the data directory's lock is
//! looked at, not taken.

use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use crate::config::Config;
use crate::crypto::MasterKey;
use crate::deploy::sandbox::{Availability, Sandbox};
use crate::store::servers::ServerRow;

use super::report::{Check, Report};
use super::{cert, files, procs, served, upstream};

pub fn check(config_path: Option<&Path>) -> anyhow::Result<Report> {
    let config = match Config::load(config_path) {
        Ok(c) => c,
        Err(e) => return Ok(unloadable(config_path, &e)),
    };
    let data_dir = config.server.data_dir.clone();
    let source = match &config.source_file {
        Some(p) => format!("{} (+ environment)", p.display()),
        None => "built-in defaults (+ environment)".to_owned(),
    };
    let mut report = Report::new(format!("{source}, data directory {}", data_dir.display()));
    // Every client is made here, before the runtime: they read certificate files.
    let outbound = crate::outbound::Outbound::new(&config.outbound);
    report
        .checks
        .extend(config_checks(&config, &source, &outbound));
    report.checks.extend(files::permissions(&config));
    let (lock, running) = procs::lock_holder(&data_dir);
    report.push(lock);
    let bound = bound_address(&config, running);
    let public_url = config.public_url_for(bound);
    report.push(cert::check(&config, &public_url, crate::domain::now()));
    let db = open_db(&data_dir);
    let (database, servers) = database(&data_dir, &db);
    report.push(database);
    if let Some(Ok(conn)) = &db {
        report.push(master_key(&config, conn));
    }
    report.push(sandbox(&config));
    report.push(files::disk(&data_dir));
    if let Some(pid) = running {
        report.push(procs::exposure(pid, &config));
    }
    let (net, mut dates) = network(&config, &outbound, &servers, running, bound, &public_url)?;
    report.checks.extend(net);
    dates.sort();
    report.push(served::judge_clock(&dates));
    Ok(report)
}

/// The whole report when the config does not load: that one failure.
fn unloadable(config_path: Option<&Path>, e: &impl std::fmt::Display) -> Report {
    let mut report = Report::new(match config_path {
        Some(p) => p.display().to_string(),
        None => "this machine".to_owned(),
    });
    report.push(Check::fail(
        "config",
        e.to_string(),
        "correct it; `ezforge config check` validates the config without starting",
    ));
    report
}

/// Where the running server listens. Started with `serve --listen`, the server is elsewhere
/// than server.listen says.
fn bound_address(config: &Config, running: Option<u32>) -> std::net::SocketAddr {
    running
        .and_then(|pid| {
            let metrics = config.metrics.listen.filter(|_| config.metrics.enabled);
            procs::bound_address(config.server.listen, metrics, &procs::listening(pid))
        })
        .unwrap_or(config.server.listen)
}

/// The database's check, and the servers it holds (none when it cannot be read).
fn database(data_dir: &Path, db: &Option<Result<Connection, String>>) -> (Check, Vec<ServerRow>) {
    match db {
        Some(Ok(conn)) => match crate::store::servers::all(conn) {
            Ok(s) => {
                let check = Check::ok(
                    "database",
                    format!(
                        "{} servers in {}",
                        s.len(),
                        data_dir.join("ezforge.db").display()
                    ),
                );
                (check, s)
            }
            Err(e) => {
                let check = Check::fail(
                    "database",
                    e.to_string(),
                    "restore a backup if it is damaged, or run a newer ezforge if it was written by one",
                );
                (check, Vec::new())
            }
        },
        Some(Err(e)) => {
            let check = Check::warn(
                "database",
                e.clone(),
                "run doctor as the user ezforge runs as (or root)",
            );
            (check, Vec::new())
        }
        None => (
            Check::ok("database", "none yet (the first start makes it)"),
            Vec::new(),
        ),
    }
}

/// Who answered with a `Date`, and how far it is from this machine's clock (seconds).
type Dates = Vec<(String, i64)>;

/// What is asked over the network, at once: the running server (when there is one), the
/// upstreams, the BYOA issuers. Their checks in that order, and the dates they answered with.
fn network(
    config: &Config,
    outbound: &Result<crate::outbound::Outbound, crate::outbound::FetchError>,
    servers: &[ServerRow],
    running: Option<u32>,
    bound: std::net::SocketAddr,
    public_url: &str,
) -> anyhow::Result<(Vec<Check>, Dates)> {
    let issuers = upstream::byoa_issuers(config, servers);
    let clients = served::Clients::new(config);
    let reach = upstream::Reach::new(config);
    Ok(super::runtime()?.block_on(async {
        let served = async {
            match running {
                Some(_) => served::check(config, &clients, bound, public_url).await,
                None => (Vec::new(), Vec::new()),
            }
        };
        let (served, ups, byoa) = tokio::join!(
            served,
            upstream::upstreams(&reach, servers),
            upstream::byoa(outbound, &issuers)
        );
        let mut checks = served.0;
        checks.extend(ups.0);
        checks.extend(byoa);
        let mut dates = served.1;
        dates.extend(ups.1);
        (checks, dates)
    }))
}

/// What `config check` looks at beyond loading: variables that set nothing, the first
/// start's admin, the TLS files, the outbound CA files.
fn config_checks(
    config: &Config,
    source: &str,
    outbound: &Result<crate::outbound::Outbound, crate::outbound::FetchError>,
) -> Vec<Check> {
    let mut out = vec![Check::ok("config", source)];
    let env: Vec<(String, String)> = std::env::vars().collect();
    let unused = crate::config::unused_variables(&env);
    if !unused.is_empty() {
        out.push(Check::warn(
            "config.environment",
            unused.join("; "),
            "rename or remove those variables (in this shell; the server's own environment may differ)",
        ));
    }
    if !config.server.data_dir.join("ezforge.db").exists()
        && let Some(problem) = config.bootstrap_problem()
    {
        out.push(Check::fail(
            "config.bootstrap",
            format!("{problem}: the first start will refuse it"),
            "correct the [bootstrap] settings (or EZFORGE_ADMIN_*)",
        ));
    }
    if let Err(e) = outbound {
        out.push(Check::fail(
            "config.outbound",
            e.to_string(),
            "fix outbound.ca_files",
        ));
    }
    out
}

/// The database, read-only (never created, never migrated); `None` when there is none yet.
fn open_db(data_dir: &Path) -> Option<Result<Connection, String>> {
    let path = data_dir.join("ezforge.db");
    match std::fs::metadata(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => return Some(Err(format!("cannot read {}: {e}", path.display()))),
        Ok(_) => {}
    }
    let opened = Connection::open_with_flags(
        &path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .and_then(|c| {
        c.busy_timeout(std::time::Duration::from_secs(5))?;
        Ok(c)
    });
    Some(opened.map_err(|e| format!("cannot read {}: {e}", path.display())))
}

/// The master key opens the signing keys in force (a lost `master.key`, or a wrong
/// `EZFORGE_MASTER_KEY`, does not).
fn master_key(config: &Config, conn: &Connection) -> Check {
    let dir = &config.server.data_dir;
    let key = match MasterKey::load(config.master_key.as_ref(), dir) {
        Ok(k) => k,
        Err(crate::crypto::MasterKeyError::Missing { path }) => {
            return Check::fail(
                "master_key",
                format!(
                    "the database exists but {} does not, and EZFORGE_MASTER_KEY is not set: what is encrypted in it cannot be read",
                    path.display()
                ),
                "restore master.key from your backup (or set EZFORGE_MASTER_KEY) before the next start",
            );
        }
        Err(e @ crate::crypto::MasterKeyError::Read { .. }) => {
            return Check::warn(
                "master_key",
                e.to_string(),
                "run doctor as the user ezforge runs as (or root)",
            );
        }
        Err(e) => {
            return Check::fail(
                "master_key",
                e.to_string(),
                "restore master.key from your backup (or give the server the right EZFORGE_MASTER_KEY)",
            );
        }
    };
    match crate::services::keys::load(conn, &key, crate::domain::now()) {
        Ok(_) => Check::ok("master_key", "opens the signing keys in force"),
        Err(e) => Check::fail(
            "master_key",
            format!("does not open the signing keys in force: {e}"),
            "use the master key this database was made with (master.key from your backup, or the right EZFORGE_MASTER_KEY)",
        ),
    }
}

/// What the sandbox would be, probed as this user: the same as the server's when doctor runs
/// as the data directory's owner (else the message says whose view it is).
fn sandbox(config: &Config) -> Check {
    use std::os::unix::fs::MetadataExt;
    let sandbox = Sandbox::new(config, false);
    let lines = sandbox.describe();
    let mut text = lines
        .iter()
        .map(|l| l.strip_prefix("sandbox: ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("; ");
    let me = std::fs::metadata("/proc/self").map(|m| m.uid()).ok();
    if let Ok(owner) = std::fs::metadata(&config.server.data_dir).map(|m| m.uid())
        && me != Some(owner)
    {
        text.push_str(&format!(
            " (as this user sees it; the data directory belongs to uid {owner})"
        ));
    }
    match &sandbox.availability {
        Availability::Ready => Check::ok("sandbox", text),
        Availability::Off => Check::warn(
            "sandbox",
            text,
            "on an instance shared by several people, remove deploy.sandbox = \"off\"",
        ),
        Availability::Unavailable(_) if !config.deploy.allow_commands => Check::ok(
            "sandbox",
            format!("{text} (deploy.allow_commands is off anyway)"),
        ),
        Availability::Unavailable(_) => Check::warn(
            "sandbox",
            text,
            "deploy upstream URLs only, or run on a kernel with Landlock (5.13+, enabled in the LSM list)",
        ),
    }
}
