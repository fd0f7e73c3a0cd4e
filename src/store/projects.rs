use rusqlite::{Connection, OptionalExtension, params};

use super::{Page, PageRequest, StoreError};
use crate::domain::kinds::ProjectRole;

#[derive(Debug, Clone)]
pub struct ProjectRow {
    pub id: String,
    pub name: String,
    pub slug: String,
    pub managed_by: String,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone)]
pub struct MemberRow {
    pub user_id: String,
    pub email: String,
    pub role: ProjectRole,
    pub created_at: i64,
}

const COLUMNS: &str = "p.id, p.name, p.slug, p.managed_by, p.created_at, p.updated_at";

fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ProjectRow> {
    Ok(ProjectRow {
        id: r.get(0)?,
        name: r.get(1)?,
        slug: r.get(2)?,
        managed_by: r.get(3)?,
        created_at: r.get(4)?,
        updated_at: r.get(5)?,
    })
}

pub fn insert(conn: &Connection, p: &ProjectRow) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO projects (id, name, slug, managed_by, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![p.id, p.name, p.slug, p.managed_by, p.created_at, p.updated_at])?;
    Ok(())
}

/// By id or slug.
pub fn find(conn: &Connection, key: &str) -> Result<Option<ProjectRow>, StoreError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM projects p WHERE p.id = ?1 OR p.slug = ?1"
        ))?
        .query_row([key], from_row)
        .optional()?)
}

/// Projects visible to a user (all of them for `None`), with the user's role in each.
pub fn list(
    conn: &Connection,
    member: Option<&str>,
    only: Option<&str>,
    page: &PageRequest,
) -> Result<Page<(ProjectRow, Option<ProjectRole>)>, StoreError> {
    let after = page.after.clone().unwrap_or_default();
    let filter = "(?1 IS NULL OR EXISTS (SELECT 1 FROM project_members m WHERE m.project_id = p.id AND m.user_id = ?1))
                  AND (?2 IS NULL OR p.id = ?2)";
    let total: i64 = conn
        .prepare_cached(&format!("SELECT COUNT(*) FROM projects p WHERE {filter}"))?
        .query_row(params![member, only], |r| r.get(0))?;
    let rows = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS}, (SELECT role FROM project_members m WHERE m.project_id = p.id AND m.user_id = ?3)
             FROM projects p WHERE {filter} AND p.id > ?4 ORDER BY p.id LIMIT ?5"
        ))?
        .query_map(params![member, only, member.unwrap_or(""), after, page.limit + 1], |r| {
            Ok((from_row(r)?, r.get(6)?))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Page::from_rows(rows, page.limit, total, |(p, _)| {
        p.id.clone()
    }))
}

pub fn update_name(conn: &Connection, id: &str, name: &str, now: i64) -> Result<(), StoreError> {
    conn.prepare_cached("UPDATE projects SET name = ?2, updated_at = ?3 WHERE id = ?1")?
        .execute(params![id, name, now])?;
    Ok(())
}

pub fn server_count(conn: &Connection, id: &str) -> Result<i64, StoreError> {
    Ok(conn
        .prepare_cached("SELECT COUNT(*) FROM servers WHERE project_id = ?1")?
        .query_row([id], |r| r.get(0))?)
}

pub fn delete(conn: &Connection, id: &str) -> Result<(), StoreError> {
    conn.prepare_cached("DELETE FROM projects WHERE id = ?1")?
        .execute([id])?;
    Ok(())
}

pub fn member_role(
    conn: &Connection,
    project_id: &str,
    user_id: &str,
) -> Result<Option<ProjectRole>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT role FROM project_members WHERE project_id = ?1 AND user_id = ?2")?
        .query_row([project_id, user_id], |r| r.get(0))
        .optional()?)
}

/// Whether `user_id` may still use `server_id` through OAuth: an admin, or a member of the
/// server's project.
pub fn may_use_server(
    conn: &Connection,
    user_id: &str,
    server_id: &str,
) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM users WHERE id = ?1 AND role = 'admin')
                 OR EXISTS (SELECT 1 FROM servers s JOIN project_members m ON m.project_id = s.project_id
                            WHERE s.id = ?2 AND m.user_id = ?1)",
        )?
        .query_row([user_id, server_id], |r| r.get(0))?)
}

pub fn add_member(
    conn: &Connection,
    project_id: &str,
    user_id: &str,
    role: ProjectRole,
    now: i64,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO project_members (project_id, user_id, role, created_at) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![project_id, user_id, role, now])?;
    Ok(())
}

pub fn remove_member(
    conn: &Connection,
    project_id: &str,
    user_id: &str,
) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached("DELETE FROM project_members WHERE project_id = ?1 AND user_id = ?2")?
        .execute([project_id, user_id])?
        > 0)
}

pub fn owner_count(conn: &Connection, project_id: &str) -> Result<i64, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT COUNT(*) FROM project_members WHERE project_id = ?1 AND role = 'owner'",
        )?
        .query_row([project_id], |r| r.get(0))?)
}

/// Whether the config file may put its servers in this project made through the API: it
/// already holds some, or an instance admin owns it (not a project any user could have made
/// first under the name the config uses).
pub fn config_may_adopt(conn: &Connection, project_id: &str) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM servers WHERE project_id = ?1 AND managed_by = 'config')
                 OR EXISTS (SELECT 1 FROM project_members m JOIN users u ON u.id = m.user_id
                            WHERE m.project_id = ?1 AND m.role = 'owner' AND u.role = 'admin')",
        )?
        .query_row([project_id], |r| r.get(0))?)
}

pub fn members(
    conn: &Connection,
    project_id: &str,
    page: &PageRequest,
) -> Result<Page<MemberRow>, StoreError> {
    let after = page.after.clone().unwrap_or_default();
    let total: i64 = conn
        .prepare_cached("SELECT COUNT(*) FROM project_members WHERE project_id = ?1")?
        .query_row([project_id], |r| r.get(0))?;
    let rows = conn
        .prepare_cached(
            "SELECT m.user_id, u.email, m.role, m.created_at FROM project_members m JOIN users u ON u.id = m.user_id
             WHERE m.project_id = ?1 AND m.user_id > ?2 ORDER BY m.user_id LIMIT ?3",
        )?
        .query_map(params![project_id, after, page.limit + 1], |r| {
            Ok(MemberRow {
                user_id: r.get(0)?,
                email: r.get(1)?,
                role: r.get(2)?,
                created_at: r.get(3)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Page::from_rows(rows, page.limit, total, |m| {
        m.user_id.clone()
    }))
}
