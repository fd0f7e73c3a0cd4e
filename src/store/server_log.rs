//! The per-server log: process output and deployment events (`server_log`), read together with
//! the front door's access log (`request_log`) as one newest-first stream.

use rusqlite::{Connection, params};

use super::StoreError;

#[derive(Debug, Clone)]
pub struct ServerLogRow {
    pub at_ms: i64,
    pub server_id: String,
    pub level: &'static str,
    /// `process` | `deploy`.
    pub source: &'static str,
    pub message: String,
}

pub fn insert_many(conn: &mut Connection, rows: &[ServerLogRow]) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    {
        let mut stmt = tx.prepare_cached(
            "INSERT INTO server_log (at_ms, server_id, level, source, message) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        for r in rows {
            stmt.execute(params![r.at_ms, r.server_id, r.level, r.source, r.message])?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// One entry of the merged log.
#[derive(Debug, Clone)]
pub struct LogEntry {
    pub at_ms: i64,
    /// `a{id}` (access log) or `p{id}` (server log): unique, and the tie-breaker of the order.
    pub key: String,
    pub level: String,
    pub source: String,
    pub message: String,
    pub method: Option<String>,
    pub tool: Option<String>,
    pub status: Option<i64>,
    pub latency_ms: Option<f64>,
    pub request_id: Option<String>,
}

pub struct LogQuery {
    pub server_id: String,
    /// 0 debug, 1 info, 2 warn, 3 error: entries at or above it.
    pub min_level: i64,
    /// Substring of the message (case-insensitive for ASCII).
    pub search: Option<String>,
    /// Entries strictly older than this position (`at_ms`, `key`).
    pub before: Option<(i64, String)>,
    pub limit: u32,
}

/// The access log as log entries: the level follows the status.
const MERGED: &str = "
    SELECT at_ms, 'a' || printf('%012d', id) AS key,
        CASE WHEN status >= 500 THEN 'error' WHEN status >= 400 THEN 'warn' ELSE 'info' END AS level,
        'access' AS source,
        COALESCE(method, 'request') || COALESCE(' ' || tool, '') || ' -> ' || status
            || COALESCE(' (' || auth_failure || ')', '') || COALESCE(' (' || refusal || ')', '')
            || printf(' %.1f ms', latency_ms) AS message,
        method, tool, status, latency_ms, request_id
    FROM request_log WHERE server_id = ?1
    UNION ALL
    SELECT at_ms, 'p' || printf('%012d', id), level, source, message, NULL, NULL, NULL, NULL, NULL
    FROM server_log WHERE server_id = ?1";

fn rank_sql() -> &'static str {
    "CASE level WHEN 'debug' THEN 0 WHEN 'info' THEN 1 WHEN 'warn' THEN 2 ELSE 3 END"
}

/// Newest first, `limit + 1` rows (the extra one says there is more).
pub fn query(conn: &Connection, q: &LogQuery) -> Result<Vec<LogEntry>, StoreError> {
    let pattern = q.search.as_ref().map(|s| {
        let escaped = s
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        format!("%{escaped}%")
    });
    let (before_at, before_key) = q.before.clone().unwrap_or((i64::MAX, String::from("~")));
    let sql = format!(
        "SELECT at_ms, key, level, source, message, method, tool, status, latency_ms, request_id
         FROM ({MERGED})
         WHERE {rank} >= ?2 AND (?3 IS NULL OR message LIKE ?3 ESCAPE '\\')
           AND (at_ms < ?4 OR (at_ms = ?4 AND key < ?5))
         ORDER BY at_ms DESC, key DESC LIMIT ?6",
        rank = rank_sql()
    );
    let rows = conn
        .prepare_cached(&sql)?
        .query_map(
            params![
                q.server_id,
                q.min_level,
                pattern,
                before_at,
                before_key,
                q.limit + 1
            ],
            |r| {
                Ok(LogEntry {
                    at_ms: r.get(0)?,
                    key: r.get(1)?,
                    level: r.get(2)?,
                    source: r.get(3)?,
                    message: r.get(4)?,
                    method: r.get(5)?,
                    tool: r.get(6)?,
                    status: r.get(7)?,
                    latency_ms: r.get(8)?,
                    request_id: r.get(9)?,
                })
            },
        )?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// Deletes entries older than `before_ms`, then all but the newest `max` of each log.
pub fn retain(conn: &Connection, before_ms: i64, max: u64) -> Result<usize, StoreError> {
    let mut n = 0;
    for table in ["request_log", "server_log"] {
        n += conn
            .prepare_cached(&format!("DELETE FROM {table} WHERE at_ms < ?1"))?
            .execute([before_ms])?;
        n += conn
            .prepare_cached(&format!(
                "DELETE FROM {table} WHERE id <= (SELECT id FROM {table} ORDER BY id DESC LIMIT 1 OFFSET ?1)"
            ))?
            .execute([max as i64])?;
    }
    Ok(n)
}
