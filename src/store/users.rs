use rusqlite::{Connection, OptionalExtension, params};

use super::StoreError;
use crate::domain::kinds::UserRole;

#[derive(Debug, Clone)]
pub struct UserRow {
    pub id: String,
    pub email: String,
    pub role: UserRole,
    pub password_hash: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

pub fn count(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn.query_row("SELECT COUNT(*) FROM users", [], |r| r.get(0))?)
}

pub fn insert(conn: &Connection, user: &UserRow) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO users (id, email, password_hash, role, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        user.id,
        user.email,
        user.password_hash,
        user.role,
        user.created_at,
        user.updated_at
    ])?;
    Ok(())
}

fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<UserRow> {
    Ok(UserRow {
        id: r.get(0)?,
        email: r.get(1)?,
        password_hash: r.get(2)?,
        role: r.get(3)?,
        created_at: r.get(4)?,
        updated_at: r.get(5)?,
    })
}

const COLUMNS: &str = "id, email, password_hash, role, created_at, updated_at";

pub fn by_email(conn: &Connection, email: &str) -> Result<Option<UserRow>, StoreError> {
    Ok(conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM users WHERE email = ?1"))?
        .query_row([email], from_row)
        .optional()?)
}

pub fn by_id(conn: &Connection, id: &str) -> Result<Option<UserRow>, StoreError> {
    Ok(conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM users WHERE id = ?1"))?
        .query_row([id], from_row)
        .optional()?)
}

pub fn list(
    conn: &Connection,
    page: &super::PageRequest,
) -> Result<super::Page<UserRow>, StoreError> {
    let after = page.after.clone().unwrap_or_default();
    let total = count(conn)?;
    let rows = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM users WHERE id > ?1 ORDER BY id LIMIT ?2"
        ))?
        .query_map(params![after, page.limit + 1], from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(super::Page::from_rows(rows, page.limit, total, |u| {
        u.id.clone()
    }))
}

pub fn admin_count(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn.query_row(
        "SELECT COUNT(*) FROM users WHERE role = 'admin' AND password_hash IS NOT NULL",
        [],
        |r| r.get(0),
    )?)
}

pub fn delete(conn: &Connection, id: &str) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached("DELETE FROM users WHERE id = ?1")?
        .execute([id])?
        > 0)
}

pub fn set_password(conn: &Connection, id: &str, hash: &str, now: i64) -> Result<(), StoreError> {
    conn.prepare_cached("UPDATE users SET password_hash = ?2, updated_at = ?3 WHERE id = ?1")?
        .execute(params![id, hash, now])?;
    Ok(())
}

pub fn create_invite(
    conn: &Connection,
    token_hash: &str,
    user_id: &str,
    expires_at: i64,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO invites (token_hash, user_id, expires_at) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![token_hash, user_id, expires_at])?;
    Ok(())
}

/// Whether an unexpired invite has this token (without taking it).
pub fn invite_exists(conn: &Connection, token_hash: &str, now: i64) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM invites WHERE token_hash = ?1 AND expires_at > ?2)",
        )?
        .query_row(params![token_hash, now], |r| r.get(0))?)
}

/// Consumes an invite: returns its user if it was valid.
pub fn take_invite(
    conn: &Connection,
    token_hash: &str,
    now: i64,
) -> Result<Option<String>, StoreError> {
    let user: Option<String> = conn
        .prepare_cached("SELECT user_id FROM invites WHERE token_hash = ?1 AND expires_at > ?2")?
        .query_row(params![token_hash, now], |r| r.get(0))
        .optional()?;
    conn.prepare_cached("DELETE FROM invites WHERE token_hash = ?1 OR expires_at <= ?2")?
        .execute(params![token_hash, now])?;
    Ok(user)
}
