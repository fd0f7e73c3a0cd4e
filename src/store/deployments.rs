use rusqlite::{Connection, OptionalExtension, params};

use super::{Page, PageRequest, StoreError};
use crate::domain::kinds::{DeploymentKind, DeploymentStatus};

#[derive(Debug, Clone)]
pub struct DeploymentRow {
    pub id: String,
    pub server_id: String,
    pub version: i64,
    pub label: Option<String>,
    pub kind: DeploymentKind,
    /// JSON: `{"upstreamUrl"}` or `{"command", "transport", "port"}`.
    pub target: String,
    pub status: DeploymentStatus,
    pub active: bool,
    pub error_message: Option<String>,
    /// The server's env vars when it was deployed, sealed with the master key.
    pub env_sealed: Option<String>,
    pub created_at: i64,
    pub finished_at: Option<i64>,
}

const COLUMNS: &str = "id, server_id, version, label, type, target, status, active, error_message, env_sealed, created_at, finished_at";

fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DeploymentRow> {
    Ok(DeploymentRow {
        id: r.get(0)?,
        server_id: r.get(1)?,
        version: r.get(2)?,
        label: r.get(3)?,
        kind: r.get(4)?,
        target: r.get(5)?,
        status: r.get(6)?,
        active: r.get(7)?,
        error_message: r.get(8)?,
        env_sealed: r.get(9)?,
        created_at: r.get(10)?,
        finished_at: r.get(11)?,
    })
}

pub fn insert(conn: &Connection, d: &DeploymentRow) -> Result<(), StoreError> {
    conn.prepare_cached(&format!(
        "INSERT INTO deployments ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
    ))?
    .execute(params![
        d.id,
        d.server_id,
        d.version,
        d.label,
        d.kind,
        d.target,
        d.status,
        d.active,
        d.error_message,
        d.env_sealed,
        d.created_at,
        d.finished_at
    ])?;
    Ok(())
}

/// The next version number for a server.
pub fn next_version(conn: &Connection, server_id: &str) -> Result<i64, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT COALESCE(MAX(version), 0) + 1 FROM deployments WHERE server_id = ?1",
        )?
        .query_row([server_id], |r| r.get(0))?)
}

/// Records how a deployment's pipeline ended.
pub fn finish(
    conn: &Connection,
    id: &str,
    status: DeploymentStatus,
    error: Option<&str>,
    at: i64,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "UPDATE deployments SET status = ?2, error_message = ?3, finished_at = ?4 WHERE id = ?1",
    )?
    .execute(params![id, status, error, at])?;
    Ok(())
}

/// Makes `id` the server's one active deployment; returns the one it replaced.
pub fn activate(
    conn: &Connection,
    server_id: &str,
    id: &str,
) -> Result<Option<String>, StoreError> {
    let previous = active(conn, server_id)?.map(|d| d.id);
    conn.prepare_cached("UPDATE deployments SET active = (id = ?2) WHERE server_id = ?1")?
        .execute([server_id, id])?;
    Ok(previous.filter(|p| p != id))
}

pub fn set_status(conn: &Connection, id: &str, status: DeploymentStatus) -> Result<(), StoreError> {
    conn.prepare_cached("UPDATE deployments SET status = ?2 WHERE id = ?1")?
        .execute(params![id, status])?;
    Ok(())
}

pub fn active(conn: &Connection, server_id: &str) -> Result<Option<DeploymentRow>, StoreError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM deployments WHERE server_id = ?1 AND active = 1"
        ))?
        .query_row([server_id], from_row)
        .optional()?)
}

/// Every server's active deployment (at start-up).
pub fn all_active(conn: &Connection) -> Result<Vec<DeploymentRow>, StoreError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM deployments WHERE active = 1"
        ))?
        .query_map([], from_row)?
        .collect::<Result<Vec<_>, _>>()?)
}

/// By id, or by version, within one server.
pub fn find(
    conn: &Connection,
    server_id: &str,
    id: Option<&str>,
    version: Option<i64>,
) -> Result<Option<DeploymentRow>, StoreError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM deployments WHERE server_id = ?1 AND (id = ?2 OR version = ?3)"
        ))?
        .query_row(params![server_id, id, version], from_row)
        .optional()?)
}

/// Newest first; the cursor is a version.
pub fn list(
    conn: &Connection,
    server_id: &str,
    page: &PageRequest,
) -> Result<Page<DeploymentRow>, StoreError> {
    let before: i64 = page
        .after
        .as_deref()
        .and_then(|v| v.parse().ok())
        .unwrap_or(i64::MAX);
    let total: i64 = conn
        .prepare_cached("SELECT COUNT(*) FROM deployments WHERE server_id = ?1")?
        .query_row([server_id], |r| r.get(0))?;
    let rows = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM deployments WHERE server_id = ?1 AND version < ?2
             ORDER BY version DESC LIMIT ?3"
        ))?
        .query_map(params![server_id, before, page.limit + 1], from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Page::from_rows(rows, page.limit, total, |d| {
        d.version.to_string()
    }))
}

/// Keeps the newest `keep` deployments (and the active one, whatever its age).
pub fn prune(conn: &Connection, server_id: &str, keep: i64) -> Result<usize, StoreError> {
    Ok(conn
        .prepare_cached(
            "DELETE FROM deployments WHERE server_id = ?1 AND active = 0 AND version NOT IN
                (SELECT version FROM deployments WHERE server_id = ?1 ORDER BY version DESC LIMIT ?2)",
        )?
        .execute(params![server_id, keep])?)
}

/// Deployments left `pending` or `building` by a stop mid-pipeline.
pub fn fail_unfinished(conn: &Connection, at: i64) -> Result<usize, StoreError> {
    Ok(conn
        .prepare_cached(
            "UPDATE deployments SET status = 'failed', finished_at = ?1,
                error_message = 'ezforge stopped before the deployment finished'
             WHERE status IN ('pending', 'building')",
        )?
        .execute([at])?)
}

/// No deployment of the server serves any more (its upstream was cleared).
pub fn deactivate_all(conn: &Connection, server_id: &str) -> Result<(), StoreError> {
    conn.prepare_cached("UPDATE deployments SET active = 0 WHERE server_id = ?1")?
        .execute([server_id])?;
    Ok(())
}
