use rusqlite::{Connection, OptionalExtension, params};

use super::{Page, PageRequest, StoreError};

/// An env var without its value: what the API may show.
#[derive(Debug, Clone)]
pub struct EnvVarRow {
    pub id: String,
    pub name: String,
    pub created_at: i64,
    pub updated_at: i64,
}

pub fn list(
    conn: &Connection,
    server_id: &str,
    page: &PageRequest,
) -> Result<Page<EnvVarRow>, StoreError> {
    let after = page.after.clone().unwrap_or_default();
    let total: i64 = conn
        .prepare_cached("SELECT COUNT(*) FROM env_vars WHERE server_id = ?1")?
        .query_row([server_id], |r| r.get(0))?;
    let rows = conn
        .prepare_cached(
            "SELECT id, name, created_at, updated_at FROM env_vars WHERE server_id = ?1 AND name > ?2
             ORDER BY name LIMIT ?3",
        )?
        .query_map(params![server_id, after, page.limit + 1], |r| {
            Ok(EnvVarRow {
                id: r.get(0)?,
                name: r.get(1)?,
                created_at: r.get(2)?,
                updated_at: r.get(3)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Page::from_rows(rows, page.limit, total, |e| e.name.clone()))
}

pub fn find(
    conn: &Connection,
    server_id: &str,
    name: &str,
) -> Result<Option<EnvVarRow>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT id, name, created_at, updated_at FROM env_vars WHERE server_id = ?1 AND name = ?2")?
        .query_row([server_id, name], |r| {
            Ok(EnvVarRow {
                id: r.get(0)?,
                name: r.get(1)?,
                created_at: r.get(2)?,
                updated_at: r.get(3)?,
            })
        })
        .optional()?)
}

/// Inserts or replaces; `sealed` is the value sealed with the master key.
pub fn upsert(
    conn: &Connection,
    id: &str,
    server_id: &str,
    name: &str,
    sealed: &str,
    now: i64,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO env_vars (id, server_id, name, value, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?5)
         ON CONFLICT (server_id, name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
    )?
    .execute(params![id, server_id, name, sealed, now])?;
    Ok(())
}

pub fn delete(conn: &Connection, server_id: &str, name: &str) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached("DELETE FROM env_vars WHERE server_id = ?1 AND name = ?2")?
        .execute([server_id, name])?
        > 0)
}

/// Each variable's name and the length of its sealed value.
pub fn sealed_lengths(
    conn: &Connection,
    server_id: &str,
) -> Result<Vec<(String, usize)>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT name, length(value) FROM env_vars WHERE server_id = ?1")?
        .query_map([server_id], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<Vec<_>, _>>()?)
}

/// Sealed values for a server, for the next deployment.
pub fn sealed_values(
    conn: &Connection,
    server_id: &str,
) -> Result<Vec<(String, String)>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT name, value FROM env_vars WHERE server_id = ?1 ORDER BY name")?
        .query_map([server_id], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<Vec<_>, _>>()?)
}
