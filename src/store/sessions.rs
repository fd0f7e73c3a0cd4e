use rusqlite::{Connection, OptionalExtension, params};

use super::StoreError;
use super::users::UserRow;

pub fn create(
    conn: &Connection,
    token_hash: &str,
    user_id: &str,
    now: i64,
    expires_at: i64,
) -> Result<(), StoreError> {
    conn.prepare_cached("INSERT INTO sessions (token_hash, user_id, created_at, expires_at) VALUES (?1, ?2, ?3, ?4)")?
        .execute(params![token_hash, user_id, now, expires_at])?;
    // Opportunistic clean-up keeps the table small without a separate job.
    conn.prepare_cached("DELETE FROM sessions WHERE expires_at <= ?1")?
        .execute([now])?;
    Ok(())
}

/// The user behind a live session, and the session's expiry.
pub fn lookup(
    conn: &Connection,
    token_hash: &str,
    now: i64,
) -> Result<Option<(UserRow, i64)>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT u.id, u.email, u.password_hash, u.role, u.created_at, u.updated_at, s.expires_at
             FROM sessions s JOIN users u ON u.id = s.user_id
             WHERE s.token_hash = ?1 AND s.expires_at > ?2",
        )?
        .query_row(params![token_hash, now], |r| {
            Ok((
                UserRow {
                    id: r.get(0)?,
                    email: r.get(1)?,
                    password_hash: r.get(2)?,
                    role: r.get(3)?,
                    created_at: r.get(4)?,
                    updated_at: r.get(5)?,
                },
                r.get(6)?,
            ))
        })
        .optional()?)
}

pub fn delete(conn: &Connection, token_hash: &str) -> Result<(), StoreError> {
    conn.prepare_cached("DELETE FROM sessions WHERE token_hash = ?1")?
        .execute([token_hash])?;
    Ok(())
}

/// When a session began (its user signed in then).
pub fn started_at(conn: &Connection, token_hash: &str) -> Result<Option<i64>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT created_at FROM sessions WHERE token_hash = ?1")?
        .query_row([token_hash], |r| r.get(0))
        .optional()?)
}
