use rusqlite::{Connection, OptionalExtension, params};

use super::StoreError;

#[derive(Debug, Clone)]
pub struct ClientRow {
    pub id: String,
    pub client_id: String,
    pub server_id: Option<String>,
    pub name: String,
    /// JSON array.
    pub redirect_uris: String,
    /// Space-separated.
    pub scopes: String,
    pub trusted: bool,
    pub is_dynamic: bool,
    pub secret_hash: Option<String>,
    pub metadata_url: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub last_used_at: Option<i64>,
}

const COLUMNS: &str =
    "id, client_id, server_id, name, redirect_uris, scopes, trusted, is_dynamic, secret_hash,
    metadata_url, created_at, updated_at, last_used_at";

fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ClientRow> {
    Ok(ClientRow {
        id: r.get(0)?,
        client_id: r.get(1)?,
        server_id: r.get(2)?,
        name: r.get(3)?,
        redirect_uris: r.get(4)?,
        scopes: r.get(5)?,
        trusted: r.get(6)?,
        is_dynamic: r.get(7)?,
        secret_hash: r.get(8)?,
        metadata_url: r.get(9)?,
        created_at: r.get(10)?,
        updated_at: r.get(11)?,
        last_used_at: r.get(12)?,
    })
}

pub fn insert(conn: &Connection, c: &ClientRow) -> Result<(), StoreError> {
    conn.prepare_cached(&format!(
        "INSERT INTO oauth_clients ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
    ))?
    .execute(params![
        c.id,
        c.client_id,
        c.server_id,
        c.name,
        c.redirect_uris,
        c.scopes,
        c.trusted,
        c.is_dynamic,
        c.secret_hash,
        c.metadata_url,
        c.created_at,
        c.updated_at,
        c.last_used_at
    ])?;
    Ok(())
}

pub fn for_server(conn: &Connection, server_id: &str) -> Result<Vec<ClientRow>, StoreError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM oauth_clients WHERE server_id = ?1 ORDER BY created_at, id"
        ))?
        .query_map([server_id], from_row)?
        .collect::<Result<Vec<_>, _>>()?)
}

/// By `oac_` id or OAuth `client_id`.
pub fn find(conn: &Connection, key: &str) -> Result<Option<ClientRow>, StoreError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM oauth_clients WHERE id = ?1 OR client_id = ?1"
        ))?
        .query_row([key], from_row)
        .optional()?)
}

pub fn delete(conn: &Connection, id: &str) -> Result<(), StoreError> {
    conn.prepare_cached("DELETE FROM oauth_clients WHERE id = ?1")?
        .execute([id])?;
    Ok(())
}
