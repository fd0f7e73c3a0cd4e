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
    pub registration_token_hash: Option<String>,
    /// `none`, `client_secret_basic` or `client_secret_post`.
    pub auth_method: String,
    /// Space-separated.
    pub grant_types: String,
    pub application_type: String,
    /// Registered metadata (RFC 7591), JSON.
    pub metadata: Option<String>,
    /// The user who registered it through the control API; `None` for dynamic clients.
    pub created_by: Option<String>,
}

const COLUMNS: &str =
    "id, client_id, server_id, name, redirect_uris, scopes, trusted, is_dynamic, secret_hash,
    metadata_url, created_at, updated_at, last_used_at, registration_token_hash, auth_method, grant_types,
    application_type, metadata, created_by";

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
        registration_token_hash: r.get(13)?,
        auth_method: r.get(14)?,
        grant_types: r.get(15)?,
        application_type: r.get(16)?,
        metadata: r.get(17)?,
        created_by: r.get(18)?,
    })
}

pub fn insert(conn: &Connection, c: &ClientRow) -> Result<(), StoreError> {
    conn.prepare_cached(&format!(
        "INSERT INTO oauth_clients ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)"
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
        c.last_used_at,
        c.registration_token_hash,
        c.auth_method,
        c.grant_types,
        c.application_type,
        c.metadata,
        c.created_by
    ])?;
    Ok(())
}

/// The clients `user_id` registered through the control API, on the servers of `project_id`
/// (or of every project).
pub fn registered_by(
    conn: &Connection,
    user_id: &str,
    project_id: Option<&str>,
) -> Result<Vec<ClientRow>, StoreError> {
    let columns = COLUMNS
        .split(',')
        .map(|c| format!("c.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ");
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {columns} FROM oauth_clients c JOIN servers s ON s.id = c.server_id
             WHERE c.created_by = ?1 AND (?2 IS NULL OR s.project_id = ?2)"
        ))?
        .query_map(params![user_id, project_id], from_row)?
        .collect::<Result<Vec<_>, _>>()?)
}

/// Rewrites a dynamic client's registered metadata (RFC 7592 update).
pub fn update_registration(conn: &Connection, c: &ClientRow) -> Result<(), StoreError> {
    conn.prepare_cached(
        "UPDATE oauth_clients SET name = ?2, redirect_uris = ?3, scopes = ?4, auth_method = ?5, grant_types = ?6,
            application_type = ?7, metadata = ?8, updated_at = ?9 WHERE id = ?1",
    )?
    .execute(params![
        c.id,
        c.name,
        c.redirect_uris,
        c.scopes,
        c.auth_method,
        c.grant_types,
        c.application_type,
        c.metadata,
        c.updated_at
    ])?;
    Ok(())
}

/// Dynamic (RFC 7591) clients not used (no code exchanged, no token refreshed) since
/// `before` are deleted, and what they were granted is revoked; returns how many went, and the
/// grants revoked.
pub fn reap_unused(
    conn: &Connection,
    before: i64,
    now: i64,
) -> Result<(usize, Vec<String>), StoreError> {
    const UNUSED: &str = "is_dynamic = 1 AND metadata_url IS NULL AND server_id IS NULL
                          AND COALESCE(last_used_at, created_at) < ?1";
    let revoked = conn
        .prepare_cached(&format!(
            "UPDATE grants SET revoked_at = ?2 WHERE revoked_at IS NULL
               AND client_id IN (SELECT client_id FROM oauth_clients WHERE {UNUSED})
             RETURNING id"
        ))?
        .query_map(params![before, now], |r| r.get(0))?
        .collect::<Result<Vec<String>, _>>()?;
    let deleted = conn
        .prepare_cached(&format!("DELETE FROM oauth_clients WHERE {UNUSED}"))?
        .execute([before])?;
    Ok((deleted, revoked))
}

/// Marks a client used. At most once an hour per client (reaping counts in days): most calls
/// then write nothing, which keeps the token endpoint's transactions short.
pub fn touch(conn: &Connection, client_id: &str, now: i64) -> Result<(), StoreError> {
    conn.prepare_cached(
        "UPDATE oauth_clients SET last_used_at = ?2
         WHERE client_id = ?1 AND (last_used_at IS NULL OR last_used_at < ?2 - 3600)",
    )?
    .execute(params![client_id, now])?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::grants::{self, GrantRow};

    fn dynamic(id: &str, created_at: i64, last_used_at: Option<i64>) -> ClientRow {
        ClientRow {
            id: format!("oac_{id}"),
            client_id: id.to_owned(),
            server_id: None,
            name: id.to_owned(),
            redirect_uris: "[]".into(),
            scopes: String::new(),
            trusted: false,
            is_dynamic: true,
            secret_hash: None,
            metadata_url: None,
            created_at,
            updated_at: created_at,
            last_used_at,
            registration_token_hash: None,
            auth_method: "none".into(),
            grant_types: "authorization_code refresh_token".into(),
            application_type: "web".into(),
            metadata: None,
            created_by: None,
        }
    }

    fn grant(id: &str, client_id: &str) -> GrantRow {
        GrantRow {
            id: id.to_owned(),
            user_id: None,
            client_id: client_id.to_owned(),
            client_name: client_id.to_owned(),
            server_id: "srv_x".into(),
            resource: "https://h/mcp/x".into(),
            scopes: "mcp:read".into(),
            created_at: 0,
            last_used_at: None,
            revoked_at: None,
            auth_method: None,
        }
    }

    #[test]
    fn reaping_spares_clients_in_use_and_revokes_what_the_reaped_ones_held() {
        let mut conn = Connection::open_in_memory().expect("open");
        crate::store::migrations::migrate(&mut conn, ":memory:").expect("migrate");
        // Grants name a server; this test is about clients only.
        conn.execute_batch("PRAGMA foreign_keys = OFF")
            .expect("pragma");
        insert(&conn, &dynamic("old", 10, None)).expect("insert");
        insert(&conn, &dynamic("refreshed", 10, Some(10))).expect("insert");
        insert(&conn, &dynamic("new", 9_000, None)).expect("insert");
        for (g, c) in [
            ("g_old", "old"),
            ("g_refreshed", "refreshed"),
            ("g_new", "new"),
        ] {
            grants::insert_grant(&conn, &grant(g, c)).expect("grant");
        }
        // A refresh marks its client used (and within the hour, writes nothing more).
        touch(&conn, "refreshed", 9_500).expect("touch");
        touch(&conn, "refreshed", 9_600).expect("touch");
        let used = find(&conn, "refreshed").expect("find").expect("row");
        assert_eq!(used.last_used_at, Some(9_500));
        assert_eq!(
            reap_unused(&conn, 5_000, 10_000).expect("reap"),
            (1, vec!["g_old".to_owned()])
        );
        assert!(find(&conn, "old").expect("find").is_none());
        for (id, revoked) in [("g_old", true), ("g_refreshed", false), ("g_new", false)] {
            let g = grants::grant(&conn, id).expect("grant").expect("row");
            assert_eq!(g.revoked_at.is_some(), revoked, "{id}");
        }
    }
}
