//! Grants, authorization codes, refresh tokens and remembered consents.

use rusqlite::{Connection, OptionalExtension, params};

use super::{Page, PageRequest, StoreError};

#[derive(Debug, Clone)]
pub struct GrantRow {
    pub id: String,
    pub user_id: Option<String>,
    pub client_id: String,
    pub client_name: String,
    pub server_id: String,
    pub resource: String,
    pub scopes: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
    /// How the client authenticated when the grant was made (`None`: before that was recorded).
    pub auth_method: Option<String>,
}

const GRANT_COLUMNS: &str = "id, user_id, client_id, client_name, server_id, resource, scopes, created_at, last_used_at, revoked_at, auth_method";

fn grant_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<GrantRow> {
    Ok(GrantRow {
        id: r.get(0)?,
        user_id: r.get(1)?,
        client_id: r.get(2)?,
        client_name: r.get(3)?,
        server_id: r.get(4)?,
        resource: r.get(5)?,
        scopes: r.get(6)?,
        created_at: r.get(7)?,
        last_used_at: r.get(8)?,
        revoked_at: r.get(9)?,
        auth_method: r.get(10)?,
    })
}

pub fn insert_grant(conn: &Connection, g: &GrantRow) -> Result<(), StoreError> {
    conn.prepare_cached(&format!(
        "INSERT INTO grants ({GRANT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
    ))?
    .execute(params![
        g.id,
        g.user_id,
        g.client_id,
        g.client_name,
        g.server_id,
        g.resource,
        g.scopes,
        g.created_at,
        g.last_used_at,
        g.revoked_at,
        g.auth_method
    ])?;
    Ok(())
}

pub fn grant(conn: &Connection, id: &str) -> Result<Option<GrantRow>, StoreError> {
    Ok(conn
        .prepare_cached(&format!("SELECT {GRANT_COLUMNS} FROM grants WHERE id = ?1"))?
        .query_row([id], grant_from_row)
        .optional()?)
}

/// Live grants of a user (`None`: everyone's), newest first.
pub fn list_grants(
    conn: &Connection,
    user: Option<&str>,
    page: &PageRequest,
) -> Result<Page<GrantRow>, StoreError> {
    let after = page.after.clone().unwrap_or_else(|| "\u{10FFFF}".into());
    let total: i64 = conn
        .prepare_cached(
            "SELECT COUNT(*) FROM grants WHERE revoked_at IS NULL AND (?1 IS NULL OR user_id = ?1)",
        )?
        .query_row(params![user], |r| r.get(0))?;
    let rows = conn
        .prepare_cached(&format!(
            "SELECT {GRANT_COLUMNS} FROM grants WHERE revoked_at IS NULL AND (?1 IS NULL OR user_id = ?1) AND id < ?2
             ORDER BY id DESC LIMIT ?3"
        ))?
        .query_map(params![user, after, page.limit + 1], grant_from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Page::from_rows(rows, page.limit, total, |g| g.id.clone()))
}

/// Revokes a grant and all its refresh tokens. Returns whether it was live.
pub fn revoke_grant(conn: &Connection, id: &str, now: i64) -> Result<bool, StoreError> {
    let n = conn
        .prepare_cached("UPDATE grants SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL")?
        .execute(params![id, now])?;
    conn.prepare_cached("DELETE FROM refresh_tokens WHERE grant_id = ?1")?
        .execute([id])?;
    Ok(n > 0)
}

/// Grants revoked since `since`: their access tokens may still be unexpired.
pub fn recently_revoked(conn: &Connection, since: i64) -> Result<Vec<String>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT id FROM grants WHERE revoked_at IS NOT NULL AND revoked_at >= ?1")?
        .query_map([since], |r| r.get(0))?
        .collect::<Result<Vec<_>, _>>()?)
}

/// Remembers revocations whose rows are about to be deleted (`kind`: `grant` or `client`).
pub fn record_revocations(
    conn: &Connection,
    kind: &str,
    subjects: &[String],
    now: i64,
) -> Result<(), StoreError> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO revocations (subject, kind, revoked_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (kind, subject) DO UPDATE SET revoked_at = excluded.revoked_at",
    )?;
    for s in subjects {
        stmt.execute(params![s, kind, now])?;
    }
    Ok(())
}

/// Subjects of `kind` revoked at or after `since` (recorded revocations only).
pub fn recorded_revocations(
    conn: &Connection,
    kind: &str,
    since: i64,
) -> Result<Vec<String>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT subject FROM revocations WHERE kind = ?1 AND revoked_at >= ?2")?
        .query_map(params![kind, since], |r| r.get(0))?
        .collect::<Result<Vec<_>, _>>()?)
}

/// Forgets recorded revocations older than `before` (their tokens have all expired).
pub fn purge_revocations(conn: &Connection, before: i64) -> Result<usize, StoreError> {
    Ok(conn
        .prepare_cached("DELETE FROM revocations WHERE revoked_at < ?1")?
        .execute([before])?)
}

/// Live grant ids of a server or of a client (before deleting them).
pub fn live_grant_ids(
    conn: &Connection,
    server_id: Option<&str>,
    client_id: Option<&str>,
) -> Result<Vec<String>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT id FROM grants WHERE revoked_at IS NULL AND (?1 IS NULL OR server_id = ?1) AND (?2 IS NULL OR client_id = ?2)",
        )?
        .query_map(params![server_id, client_id], |r| r.get(0))?
        .collect::<Result<Vec<_>, _>>()?)
}

/// Every grant of a server, revoked or not (they go with the server).
pub fn grant_ids_of_server(conn: &Connection, server_id: &str) -> Result<Vec<String>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT id FROM grants WHERE server_id = ?1")?
        .query_map([server_id], |r| r.get(0))?
        .collect::<Result<Vec<_>, _>>()?)
}

/// Every grant of a user, revoked or not (they go with the user).
pub fn grant_ids_of_user(conn: &Connection, user_id: &str) -> Result<Vec<String>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT id FROM grants WHERE user_id = ?1")?
        .query_map([user_id], |r| r.get(0))?
        .collect::<Result<Vec<_>, _>>()?)
}

/// The live grants `user_id` holds on the servers of one project.
pub fn live_grant_ids_in_project(
    conn: &Connection,
    user_id: &str,
    project_id: &str,
) -> Result<Vec<String>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT g.id FROM grants g JOIN servers s ON s.id = g.server_id
             WHERE g.user_id = ?1 AND s.project_id = ?2 AND g.revoked_at IS NULL",
        )?
        .query_map([user_id, project_id], |r| r.get(0))?
        .collect::<Result<Vec<_>, _>>()?)
}

/// Deletes up to `batch` refresh tokens that expired before `before` (used or not: past its
/// expiry a token is refused either way, so a replay of it no longer needs recognising).
pub fn purge_expired_refresh(
    conn: &Connection,
    before: i64,
    batch: i64,
) -> Result<usize, StoreError> {
    Ok(conn
        .prepare_cached(
            "DELETE FROM refresh_tokens WHERE rowid IN
               (SELECT rowid FROM refresh_tokens WHERE expires_at < ?1 LIMIT ?2)",
        )?
        .execute(params![before, batch])?)
}

pub fn touch_grant(conn: &Connection, id: &str, now: i64) -> Result<(), StoreError> {
    conn.prepare_cached("UPDATE grants SET last_used_at = ?2 WHERE id = ?1")?
        .execute(params![id, now])?;
    Ok(())
}

#[derive(Debug, Clone)]
pub struct CodeRow {
    pub code_hash: String,
    pub client_id: String,
    pub client_name: String,
    pub user_id: String,
    pub server_id: String,
    pub resource: String,
    pub redirect_uri: String,
    pub code_challenge: String,
    pub scopes: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
    pub grant_id: Option<String>,
    /// OpenID Connect: the request's `nonce`, and when the user signed in.
    pub nonce: Option<String>,
    pub auth_time: Option<i64>,
}

pub fn insert_code(conn: &Connection, c: &CodeRow) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO auth_codes (code_hash, client_id, client_name, user_id, server_id, resource, redirect_uri,
            code_challenge, scopes, created_at, expires_at, nonce, auth_time)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )?
    .execute(params![
        c.code_hash, c.client_id, c.client_name, c.user_id, c.server_id, c.resource, c.redirect_uri, c.code_challenge,
        c.scopes, c.created_at, c.expires_at, c.nonce, c.auth_time
    ])?;
    // Expired codes are worthless: drop them as we go.
    conn.prepare_cached("DELETE FROM auth_codes WHERE expires_at < ?1")?
        .execute([c.created_at - 3600])?;
    Ok(())
}

pub fn code(conn: &Connection, code_hash: &str) -> Result<Option<CodeRow>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT code_hash, client_id, client_name, user_id, server_id, resource, redirect_uri, code_challenge, scopes,
                created_at, expires_at, used_at, grant_id, nonce, auth_time FROM auth_codes WHERE code_hash = ?1",
        )?
        .query_row([code_hash], |r| {
            Ok(CodeRow {
                code_hash: r.get(0)?,
                client_id: r.get(1)?,
                client_name: r.get(2)?,
                user_id: r.get(3)?,
                server_id: r.get(4)?,
                resource: r.get(5)?,
                redirect_uri: r.get(6)?,
                code_challenge: r.get(7)?,
                scopes: r.get(8)?,
                created_at: r.get(9)?,
                expires_at: r.get(10)?,
                used_at: r.get(11)?,
                grant_id: r.get(12)?,
                nonce: r.get(13)?,
                auth_time: r.get(14)?,
            })
        })
        .optional()?)
}

/// Marks a code used (once): false if it already was.
pub fn use_code(
    conn: &Connection,
    code_hash: &str,
    now: i64,
    grant_id: Option<&str>,
) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached("UPDATE auth_codes SET used_at = ?2, grant_id = ?3 WHERE code_hash = ?1 AND used_at IS NULL")?
        .execute(params![code_hash, now, grant_id])?
        > 0)
}

#[derive(Debug, Clone)]
pub struct RefreshRow {
    pub token_hash: String,
    pub grant_id: String,
    pub client_id: String,
    pub scopes: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub rotated_at: Option<i64>,
}

pub fn insert_refresh(conn: &Connection, r: &RefreshRow) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO refresh_tokens (token_hash, grant_id, client_id, scopes, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![r.token_hash, r.grant_id, r.client_id, r.scopes, r.created_at, r.expires_at])?;
    Ok(())
}

pub fn refresh(conn: &Connection, token_hash: &str) -> Result<Option<RefreshRow>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT token_hash, grant_id, client_id, scopes, created_at, expires_at, rotated_at FROM refresh_tokens WHERE token_hash = ?1",
        )?
        .query_row([token_hash], |r| {
            Ok(RefreshRow {
                token_hash: r.get(0)?,
                grant_id: r.get(1)?,
                client_id: r.get(2)?,
                scopes: r.get(3)?,
                created_at: r.get(4)?,
                expires_at: r.get(5)?,
                rotated_at: r.get(6)?,
            })
        })
        .optional()?)
}

/// Marks a refresh token used (once): false if it already was (a replay, or a lost race).
pub fn rotate_refresh(conn: &Connection, token_hash: &str, now: i64) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached("UPDATE refresh_tokens SET rotated_at = ?2 WHERE token_hash = ?1 AND rotated_at IS NULL")?
        .execute(params![token_hash, now])?
        > 0)
}

/// Records a client assertion's `jti` (as `jti_hash`) until `expires_at`: false if it was
/// already recorded (a replay).
pub fn use_assertion(
    conn: &Connection,
    jti_hash: &str,
    expires_at: i64,
    now: i64,
) -> Result<bool, StoreError> {
    // A recorded jti whose assertion has expired cannot be replayed (the assertion is refused
    // for its `exp`); dropping such rows as we go keeps the table small.
    conn.prepare_cached("DELETE FROM client_assertions WHERE expires_at < ?1")?
        .execute([now - 3600])?;
    Ok(conn
        .prepare_cached(
            "INSERT INTO client_assertions (jti_hash, expires_at) VALUES (?1, ?2)
             ON CONFLICT (jti_hash) DO NOTHING",
        )?
        .execute(params![jti_hash, expires_at])?
        > 0)
}

/// The remembered consent's scopes, if still valid.
pub fn consent(
    conn: &Connection,
    user_id: &str,
    client_id: &str,
    resource: &str,
    now: i64,
) -> Result<Option<String>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT scopes FROM consents WHERE user_id = ?1 AND client_id = ?2 AND resource = ?3 AND expires_at > ?4",
        )?
        .query_row(params![user_id, client_id, resource, now], |r| r.get(0))
        .optional()?)
}

pub fn remember_consent(
    conn: &Connection,
    user_id: &str,
    client_id: &str,
    resource: &str,
    scopes: &str,
    expires_at: i64,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO consents (user_id, client_id, resource, scopes, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (user_id, client_id, resource) DO UPDATE SET scopes = excluded.scopes, expires_at = excluded.expires_at",
    )?
    .execute(params![user_id, client_id, resource, scopes, expires_at])?;
    Ok(())
}

/// Forgets every remembered consent for `resource` (a server's URL, as its server goes).
pub fn forget_consents(conn: &Connection, resource: &str) -> Result<usize, StoreError> {
    Ok(conn
        .prepare_cached("DELETE FROM consents WHERE resource = ?1")?
        .execute([resource])?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expired_refresh_tokens_are_purged_in_batches_and_live_ones_kept() {
        let mut conn = Connection::open_in_memory().expect("open");
        crate::store::migrations::migrate(&mut conn, ":memory:").expect("migrate");
        conn.execute_batch("PRAGMA foreign_keys = OFF")
            .expect("pragma");
        for (i, expires_at) in [10, 20, 30, 200, 300].into_iter().enumerate() {
            let row = RefreshRow {
                token_hash: format!("h{i}"),
                grant_id: "g".into(),
                client_id: "c".into(),
                scopes: String::new(),
                created_at: 0,
                expires_at,
                rotated_at: (i % 2 == 0).then_some(5),
            };
            insert_refresh(&conn, &row).expect("insert");
        }
        assert_eq!(purge_expired_refresh(&conn, 100, 2).expect("purge"), 2);
        assert_eq!(purge_expired_refresh(&conn, 100, 2).expect("purge"), 1);
        assert_eq!(purge_expired_refresh(&conn, 100, 2).expect("purge"), 0);
        for (hash, kept) in [("h2", false), ("h3", true), ("h4", true)] {
            assert_eq!(
                refresh(&conn, hash).expect("read").is_some(),
                kept,
                "{hash}"
            );
        }
    }
}
