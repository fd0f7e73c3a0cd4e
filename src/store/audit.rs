use rusqlite::{Connection, params};

use super::{Page, PageRequest, StoreError};

/// Who did something, from where: every mutation records one.
#[derive(Debug, Clone)]
pub struct Actor {
    /// `usr_…`, `key_…`, `config` or `system`.
    pub id: String,
    pub address: Option<String>,
}

impl Actor {
    pub fn system(id: &str) -> Self {
        Self {
            id: id.to_owned(),
            address: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct AuditRow {
    pub id: i64,
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub target: Option<String>,
    pub project_id: Option<String>,
    pub address: Option<String>,
    pub details: Option<String>,
}

/// Records an action. Call inside the mutation's transaction so both land or neither does.
pub fn record(
    conn: &Connection,
    actor: &Actor,
    action: &str,
    target: Option<&str>,
    project_id: Option<&str>,
    details: Option<&serde_json::Value>,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO audit_log (at, actor, action, target, project_id, address, details)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        crate::domain::now(),
        actor.id,
        action,
        target,
        project_id,
        actor.address,
        details.map(|d| d.to_string())
    ])?;
    Ok(())
}

/// Newest first; `page.after` is the id to continue below.
pub fn list(conn: &Connection, page: &PageRequest) -> Result<Page<AuditRow>, StoreError> {
    let before: i64 = match &page.after {
        Some(c) => c
            .parse()
            .map_err(|_| StoreError::corrupt("bad audit cursor"))?,
        None => i64::MAX,
    };
    let total: i64 = conn.query_row("SELECT COUNT(*) FROM audit_log", [], |r| r.get(0))?;
    let rows = conn
        .prepare_cached(
            "SELECT id, at, actor, action, target, project_id, address, details FROM audit_log
             WHERE id < ?1 ORDER BY id DESC LIMIT ?2",
        )?
        .query_map(params![before, page.limit + 1], |r| {
            Ok(AuditRow {
                id: r.get(0)?,
                at: r.get(1)?,
                actor: r.get(2)?,
                action: r.get(3)?,
                target: r.get(4)?,
                project_id: r.get(5)?,
                address: r.get(6)?,
                details: r.get(7)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Page::from_rows(rows, page.limit, total, |r| {
        r.id.to_string()
    }))
}
