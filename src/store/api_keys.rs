use rusqlite::{Connection, OptionalExtension, params};

use super::{Page, PageRequest, StoreError};

#[derive(Debug, Clone)]
pub struct ApiKeyRow {
    pub id: String,
    pub project_id: String,
    pub name: String,
    pub prefix: String,
    pub scopes: String,
    pub environment: String,
    pub created_by: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub last_used_at: Option<i64>,
}

const COLUMNS: &str = "id, project_id, name, prefix, scopes, environment, created_by, created_at, expires_at, last_used_at";

fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ApiKeyRow> {
    Ok(ApiKeyRow {
        id: r.get(0)?,
        project_id: r.get(1)?,
        name: r.get(2)?,
        prefix: r.get(3)?,
        scopes: r.get(4)?,
        environment: r.get(5)?,
        created_by: r.get(6)?,
        created_at: r.get(7)?,
        expires_at: r.get(8)?,
        last_used_at: r.get(9)?,
    })
}

pub fn insert(conn: &Connection, k: &ApiKeyRow, key_hash: &str) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO api_keys (id, project_id, name, prefix, key_hash, scopes, environment, created_by, created_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        k.id, k.project_id, k.name, k.prefix, key_hash, k.scopes, k.environment, k.created_by, k.created_at, k.expires_at
    ])?;
    Ok(())
}

/// A key that is neither revoked (deleted) nor expired.
pub fn by_hash(
    conn: &Connection,
    key_hash: &str,
    now: i64,
) -> Result<Option<ApiKeyRow>, StoreError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM api_keys WHERE key_hash = ?1 AND (expires_at IS NULL OR expires_at > ?2)"
        ))?
        .query_row(params![key_hash, now], from_row)
        .optional()?)
}

pub fn by_id(conn: &Connection, id: &str) -> Result<Option<ApiKeyRow>, StoreError> {
    Ok(conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM api_keys WHERE id = ?1"))?
        .query_row([id], from_row)
        .optional()?)
}

pub fn list(
    conn: &Connection,
    project_id: &str,
    page: &PageRequest,
) -> Result<Page<ApiKeyRow>, StoreError> {
    let after = page.after.clone().unwrap_or_default();
    let total: i64 = conn
        .prepare_cached("SELECT COUNT(*) FROM api_keys WHERE project_id = ?1")?
        .query_row([project_id], |r| r.get(0))?;
    let rows = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM api_keys WHERE project_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3"
        ))?
        .query_map(params![project_id, after, page.limit + 1], from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Page::from_rows(rows, page.limit, total, |k| k.id.clone()))
}

/// The keys made with key `id`, and the keys made with those, and so on.
pub fn minted_by(conn: &Connection, id: &str) -> Result<Vec<String>, StoreError> {
    Ok(conn
        .prepare_cached(
            "WITH RECURSIVE minted(id) AS (
                 SELECT id FROM api_keys WHERE created_by = ?1
                 UNION SELECT k.id FROM api_keys k JOIN minted m ON k.created_by = m.id
             )
             SELECT id FROM minted",
        )?
        .query_map([id], |r| r.get(0))?
        .collect::<Result<Vec<_>, _>>()?)
}

/// The keys `user_id` made in `project_id` (or in every project), and the keys made with
/// those, and so on.
pub fn made_by_user(
    conn: &Connection,
    user_id: &str,
    project_id: Option<&str>,
) -> Result<Vec<String>, StoreError> {
    Ok(conn
        .prepare_cached(
            "WITH RECURSIVE made(id) AS (
                 SELECT id FROM api_keys WHERE created_by = ?1 AND (?2 IS NULL OR project_id = ?2)
                 UNION SELECT k.id FROM api_keys k JOIN made m ON k.created_by = m.id
             )
             SELECT id FROM made",
        )?
        .query_map(params![user_id, project_id], |r| r.get(0))?
        .collect::<Result<Vec<_>, _>>()?)
}

pub fn delete(conn: &Connection, id: &str) -> Result<(), StoreError> {
    conn.prepare_cached("DELETE FROM api_keys WHERE id = ?1")?
        .execute([id])?;
    Ok(())
}

/// Writes batched last-use times in one transaction.
pub fn touch_many(conn: &mut Connection, uses: &[(String, i64)]) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    {
        let mut stmt = tx.prepare_cached(
            "UPDATE api_keys SET last_used_at = ?2 WHERE id = ?1 AND (last_used_at IS NULL OR last_used_at < ?2)",
        )?;
        for (id, at) in uses {
            stmt.execute(params![id, at])?;
        }
    }
    tx.commit()?;
    Ok(())
}
