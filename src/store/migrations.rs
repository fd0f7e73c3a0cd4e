//! Numbered SQL migrations embedded in the binary. The schema version is SQLite's
//! `user_version`; each migration runs in one transaction with the version bump.

use rusqlite::Connection;

use super::StoreError;

const MIGRATIONS: &[(&str, &str)] = &[
    ("init", include_str!("migrations/0001_init.sql")),
    ("control", include_str!("migrations/0002_control.sql")),
    (
        "request_log",
        include_str!("migrations/0003_request_log.sql"),
    ),
    ("oauth", include_str!("migrations/0004_oauth.sql")),
    (
        "server_rate_limit",
        include_str!("migrations/0005_server_rate_limit.sql"),
    ),
    (
        "deployments",
        include_str!("migrations/0006_deployments.sql"),
    ),
    (
        "revocations",
        include_str!("migrations/0007_revocations.sql"),
    ),
    (
        "invitations",
        include_str!("migrations/0008_invitations.sql"),
    ),
    (
        "clients_tested",
        include_str!("migrations/0009_clients_tested.sql"),
    ),
    (
        "grant_auth_method",
        include_str!("migrations/0010_grant_auth_method.sql"),
    ),
    (
        "retired_slugs",
        include_str!("migrations/0011_retired_slugs.sql"),
    ),
    (
        "clients_created_by",
        include_str!("migrations/0012_clients_created_by.sql"),
    ),
];

pub const LATEST_VERSION: u32 = MIGRATIONS.len() as u32;

/// Applies every migration the database lacks. Refuses a database from a newer version.
pub fn migrate(conn: &mut Connection, path: &str) -> Result<(), StoreError> {
    migrate_to(conn, path, LATEST_VERSION)
}

/// Applies migrations up to `target` (tests build old databases with it).
pub fn migrate_to(conn: &mut Connection, path: &str, target: u32) -> Result<(), StoreError> {
    let current: u32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if current > LATEST_VERSION {
        return Err(StoreError::TooNew {
            path: path.to_owned(),
            found: current,
            supported: LATEST_VERSION,
        });
    }
    for (index, (name, sql)) in MIGRATIONS
        .iter()
        .enumerate()
        .take(target as usize)
        .skip(current as usize)
    {
        let version = index as u32 + 1;
        let failed = |source| StoreError::Migration {
            version,
            name,
            source,
        };
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(failed)?;
        tx.execute_batch(sql).map_err(failed)?;
        tx.pragma_update(None, "user_version", version)
            .map_err(failed)?;
        tx.commit().map_err(failed)?;
        tracing::debug!(version, name, "applied database migration");
    }
    Ok(())
}
