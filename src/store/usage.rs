//! Monthly usage per server: requests, bytes through the front door, supervised process time.

use rusqlite::{Connection, params};

use super::StoreError;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct UsageDelta {
    pub requests: i64,
    pub bytes: i64,
    pub compute_ms: i64,
}

/// Adds to a server's counters for `month` (`YYYY-MM`).
pub fn add(
    conn: &Connection,
    month: &str,
    server_id: &str,
    project_id: &str,
    d: &UsageDelta,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO usage (month, server_id, project_id, request_count, bandwidth_bytes, compute_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (month, server_id) DO UPDATE SET
            request_count = request_count + excluded.request_count,
            bandwidth_bytes = bandwidth_bytes + excluded.bandwidth_bytes,
            compute_ms = compute_ms + excluded.compute_ms",
    )?
    .execute(params![month, server_id, project_id, d.requests, d.bytes, d.compute_ms])?;
    Ok(())
}

/// Totals for `month` over one project, the projects a user belongs to, or everything.
pub fn totals(
    conn: &Connection,
    month: &str,
    project: Option<&str>,
    member: Option<&str>,
) -> Result<UsageDelta, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT COALESCE(SUM(request_count), 0), COALESCE(SUM(bandwidth_bytes), 0), COALESCE(SUM(compute_ms), 0)
             FROM usage WHERE month = ?1 AND (?2 IS NULL OR project_id = ?2)
               AND (?3 IS NULL OR project_id IN (SELECT project_id FROM project_members WHERE user_id = ?3))",
        )?
        .query_row(params![month, project, member], |r| {
            Ok(UsageDelta {
                requests: r.get(0)?,
                bytes: r.get(1)?,
                compute_ms: r.get(2)?,
            })
        })?)
}
