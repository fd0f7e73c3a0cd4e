//! Pending invitations to join a project, addressed to an email.

use rusqlite::{Connection, OptionalExtension, params};

use super::{Page, PageRequest, StoreError};
use crate::domain::kinds::ProjectRole;

#[derive(Debug, Clone)]
pub struct InvitationRow {
    pub id: String,
    pub project_id: String,
    pub email: String,
    pub role: ProjectRole,
    pub token_hash: String,
    pub invited_by: String,
    pub created_at: i64,
    pub expires_at: i64,
}

/// An invitation with what its lists show beside it.
#[derive(Debug, Clone)]
pub struct InvitationView {
    pub row: InvitationRow,
    pub inviter_email: Option<String>,
    pub project_name: String,
    pub project_slug: String,
}

const COLUMNS: &str =
    "i.id, i.project_id, i.email, i.role, i.token_hash, i.invited_by, i.created_at, i.expires_at";

/// The columns of a view: [`COLUMNS`], then the inviter's email and the project's name and slug.
const VIEW: &str = "SELECT i.id, i.project_id, i.email, i.role, i.token_hash, i.invited_by, i.created_at, i.expires_at,
        u.email, p.name, p.slug
     FROM project_invitations i JOIN projects p ON p.id = i.project_id
     LEFT JOIN users u ON u.id = i.invited_by";

fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<InvitationRow> {
    Ok(InvitationRow {
        id: r.get(0)?,
        project_id: r.get(1)?,
        email: r.get(2)?,
        role: r.get(3)?,
        token_hash: r.get(4)?,
        invited_by: r.get(5)?,
        created_at: r.get(6)?,
        expires_at: r.get(7)?,
    })
}

fn view_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<InvitationView> {
    Ok(InvitationView {
        row: from_row(r)?,
        inviter_email: r.get(8)?,
        project_name: r.get(9)?,
        project_slug: r.get(10)?,
    })
}

pub fn insert(conn: &Connection, i: &InvitationRow) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO project_invitations (id, project_id, email, role, token_hash, invited_by, created_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        i.id,
        i.project_id,
        i.email,
        i.role,
        i.token_hash,
        i.invited_by,
        i.created_at,
        i.expires_at
    ])?;
    Ok(())
}

/// The invitation of `email` (compared without ASCII case) to a project, expired or not.
pub fn for_email_in_project(
    conn: &Connection,
    project_id: &str,
    email: &str,
) -> Result<Option<InvitationRow>, StoreError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM project_invitations i WHERE i.project_id = ?1 AND i.email = ?2"
        ))?
        .query_row([project_id, email], from_row)
        .optional()?)
}

pub fn in_project(
    conn: &Connection,
    project_id: &str,
    id: &str,
) -> Result<Option<InvitationRow>, StoreError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM project_invitations i WHERE i.project_id = ?1 AND i.id = ?2"
        ))?
        .query_row([project_id, id], from_row)
        .optional()?)
}

pub fn by_id(conn: &Connection, id: &str) -> Result<Option<InvitationRow>, StoreError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM project_invitations i WHERE i.id = ?1"
        ))?
        .query_row([id], from_row)
        .optional()?)
}

/// The unexpired invitation with this token.
pub fn by_token(
    conn: &Connection,
    token_hash: &str,
    now: i64,
) -> Result<Option<InvitationRow>, StoreError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM project_invitations i WHERE i.token_hash = ?1 AND i.expires_at > ?2"
        ))?
        .query_row(params![token_hash, now], from_row)
        .optional()?)
}

pub fn delete(conn: &Connection, id: &str) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached("DELETE FROM project_invitations WHERE id = ?1")?
        .execute([id])?
        > 0)
}

/// The invitations `user_id` sent, to any project, by id.
pub fn sent_by(conn: &Connection, user_id: &str) -> Result<Vec<InvitationRow>, StoreError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM project_invitations i WHERE i.invited_by = ?1 ORDER BY i.id"
        ))?
        .query_map([user_id], from_row)?
        .collect::<Result<Vec<_>, _>>()?)
}

/// A project's invitations (expired ones too, until withdrawn or replaced), by id.
pub fn list_for_project(
    conn: &Connection,
    project_id: &str,
    page: &PageRequest,
) -> Result<Page<InvitationView>, StoreError> {
    let after = page.after.clone().unwrap_or_default();
    let total: i64 = conn
        .prepare_cached("SELECT COUNT(*) FROM project_invitations WHERE project_id = ?1")?
        .query_row([project_id], |r| r.get(0))?;
    let rows = conn
        .prepare_cached(&format!(
            "{VIEW} WHERE i.project_id = ?1 AND i.id > ?2 ORDER BY i.id LIMIT ?3"
        ))?
        .query_map(params![project_id, after, page.limit + 1], view_from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Page::from_rows(rows, page.limit, total, |v| {
        v.row.id.clone()
    }))
}

/// The unexpired invitations addressed to `email`, by id.
pub fn list_for_email(
    conn: &Connection,
    email: &str,
    now: i64,
    page: &PageRequest,
) -> Result<Page<InvitationView>, StoreError> {
    let after = page.after.clone().unwrap_or_default();
    let total: i64 = conn
        .prepare_cached(
            "SELECT COUNT(*) FROM project_invitations WHERE email = ?1 AND expires_at > ?2",
        )?
        .query_row(params![email, now], |r| r.get(0))?;
    let rows = conn
        .prepare_cached(&format!(
            "{VIEW} WHERE i.email = ?1 AND i.expires_at > ?2 AND i.id > ?3 ORDER BY i.id LIMIT ?4"
        ))?
        .query_map(params![email, now, after, page.limit + 1], view_from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Page::from_rows(rows, page.limit, total, |v| {
        v.row.id.clone()
    }))
}
