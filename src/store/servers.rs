use rusqlite::{Connection, OptionalExtension, params};

use super::{Page, PageRequest, StoreError};
use crate::domain::kinds::{ServerAuthMode, ServerStatus};

#[derive(Debug, Clone)]
pub struct ServerRow {
    pub id: String,
    pub project_id: String,
    pub name: String,
    pub slug: String,
    pub status: ServerStatus,
    pub upstream_url: Option<String>,
    pub health_check_path: Option<String>,
    pub rollback_on_failure: bool,
    pub retention_count: i64,
    pub auto_stop_seconds: Option<i64>,
    /// JSON object: tool name -> scope.
    pub tool_scopes: String,
    pub auth_mode: ServerAuthMode,
    /// JSON; `None` means the deployment's `[auth.byoa]` default.
    pub byoa_config: Option<String>,
    pub managed_by: String,
    /// JSON `{"per_minute","burst"}`; `None` = the deployment's default.
    pub rate_limit: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

const COLUMNS: &str = "id, project_id, name, slug, status, upstream_url, health_check_path, rollback_on_failure,
    retention_count, auto_stop_seconds, tool_scopes, auth_mode, byoa_config, managed_by, created_at, updated_at,
    rate_limit";

fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ServerRow> {
    Ok(ServerRow {
        id: r.get(0)?,
        project_id: r.get(1)?,
        name: r.get(2)?,
        slug: r.get(3)?,
        status: r.get(4)?,
        upstream_url: r.get(5)?,
        health_check_path: r.get(6)?,
        rollback_on_failure: r.get(7)?,
        retention_count: r.get(8)?,
        auto_stop_seconds: r.get(9)?,
        tool_scopes: r.get(10)?,
        auth_mode: r.get(11)?,
        byoa_config: r.get(12)?,
        managed_by: r.get(13)?,
        created_at: r.get(14)?,
        updated_at: r.get(15)?,
        rate_limit: r.get(16)?,
    })
}

pub fn insert(conn: &Connection, s: &ServerRow) -> Result<(), StoreError> {
    conn.prepare_cached(&format!(
        "INSERT INTO servers ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)"
    ))?
    .execute(params![
        s.id,
        s.project_id,
        s.name,
        s.slug,
        s.status,
        s.upstream_url,
        s.health_check_path,
        s.rollback_on_failure,
        s.retention_count,
        s.auto_stop_seconds,
        s.tool_scopes,
        s.auth_mode,
        s.byoa_config,
        s.managed_by,
        s.created_at,
        s.updated_at,
        s.rate_limit
    ])?;
    Ok(())
}

/// Writes every mutable column of `s` (matched by id).
pub fn update(conn: &Connection, s: &ServerRow) -> Result<(), StoreError> {
    conn.prepare_cached(
        "UPDATE servers SET name = ?2, status = ?3, upstream_url = ?4, health_check_path = ?5,
            rollback_on_failure = ?6, retention_count = ?7, auto_stop_seconds = ?8, tool_scopes = ?9,
            auth_mode = ?10, byoa_config = ?11, updated_at = ?12, rate_limit = ?13
         WHERE id = ?1",
    )?
    .execute(params![
        s.id,
        s.name,
        s.status,
        s.upstream_url,
        s.health_check_path,
        s.rollback_on_failure,
        s.retention_count,
        s.auto_stop_seconds,
        s.tool_scopes,
        s.auth_mode,
        s.byoa_config,
        s.updated_at,
        s.rate_limit
    ])?;
    Ok(())
}

/// By id or slug.
pub fn find(conn: &Connection, key: &str) -> Result<Option<ServerRow>, StoreError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM servers WHERE id = ?1 OR slug = ?1"
        ))?
        .query_row([key], from_row)
        .optional()?)
}

pub fn all(conn: &Connection) -> Result<Vec<ServerRow>, StoreError> {
    Ok(conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM servers ORDER BY id"))?
        .query_map([], from_row)?
        .collect::<Result<Vec<_>, _>>()?)
}

/// Servers in one project (`project`), or in the projects a user belongs to (`member`), or all.
pub fn list(
    conn: &Connection,
    project: Option<&str>,
    member: Option<&str>,
    page: &PageRequest,
) -> Result<Page<ServerRow>, StoreError> {
    let after = page.after.clone().unwrap_or_default();
    let filter = "(?1 IS NULL OR project_id = ?1)
        AND (?2 IS NULL OR project_id IN (SELECT project_id FROM project_members WHERE user_id = ?2))";
    let total: i64 = conn
        .prepare_cached(&format!("SELECT COUNT(*) FROM servers WHERE {filter}"))?
        .query_row(params![project, member], |r| r.get(0))?;
    let rows = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM servers WHERE {filter} AND id > ?3 ORDER BY id LIMIT ?4"
        ))?
        .query_map(params![project, member, after, page.limit + 1], from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Page::from_rows(rows, page.limit, total, |s| s.id.clone()))
}

/// What a server's deletion revoked: every grant it had (revoked or not) and its clients
/// (their machine tokens belong to no grant). Both are on record; the caller tells the front
/// door.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Removed {
    pub grants: Vec<String>,
    pub clients: Vec<String>,
}

/// Deletes server `s`, whose URL is `resource`, with what names it: its grants and clients are
/// recorded as revoked (the rows go with the server; the records outlive their tokens, so
/// that a restart does not forget them), the consents remembered for its URL go, and its slug
/// stays with its project ([`retired_to`]).
pub fn delete(
    conn: &Connection,
    s: &ServerRow,
    resource: &str,
    now: i64,
) -> Result<Removed, StoreError> {
    let grants = super::grants::grant_ids_of_server(conn, &s.id)?;
    let clients: Vec<String> = super::clients::for_server(conn, &s.id)?
        .into_iter()
        .map(|c| c.client_id)
        .collect();
    super::grants::record_revocations(conn, "grant", &grants, now)?;
    super::grants::record_revocations(conn, "client", &clients, now)?;
    super::grants::forget_consents(conn, resource)?;
    conn.prepare_cached(
        "INSERT INTO retired_slugs (slug, project_id, server_id, retired_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (slug) DO UPDATE SET project_id = excluded.project_id,
            server_id = excluded.server_id, retired_at = excluded.retired_at",
    )?
    .execute(params![s.slug, s.project_id, s.id, now])?;
    conn.prepare_cached("DELETE FROM servers WHERE id = ?1")?
        .execute([&s.id])?;
    Ok(Removed { grants, clients })
}

/// The project a deleted server's slug stays with, if one had it. Only that project may give
/// it to a server again: the URL it makes is the identity tokens, consents and upstream
/// assertions name.
pub fn retired_to(conn: &Connection, slug: &str) -> Result<Option<String>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT project_id FROM retired_slugs WHERE slug = ?1")?
        .query_row([slug], |r| r.get(0))
        .optional()?)
}

/// At start-up: servers left `provisioning` by a first deployment that a stop cut short have
/// nothing serving.
pub fn fail_provisioning(conn: &Connection) -> Result<usize, StoreError> {
    Ok(conn
        .prepare_cached("UPDATE servers SET status = 'error' WHERE status = 'provisioning'")?
        .execute([])?)
}

/// Sets a server's status, and (`Some`) the upstream URL it shows.
pub fn set_status(
    conn: &Connection,
    id: &str,
    status: ServerStatus,
    upstream_url: Option<Option<&str>>,
) -> Result<(), StoreError> {
    match upstream_url {
        Some(url) => conn
            .prepare_cached("UPDATE servers SET status = ?2, upstream_url = ?3 WHERE id = ?1")?
            .execute(params![id, status, url])?,
        None => conn
            .prepare_cached("UPDATE servers SET status = ?2 WHERE id = ?1")?
            .execute(params![id, status])?,
    };
    Ok(())
}
