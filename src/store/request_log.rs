use rusqlite::{Connection, OptionalExtension, params};

use super::StoreError;

#[derive(Debug, Clone)]
pub struct RequestLogRow {
    pub at_ms: i64,
    pub server_id: String,
    pub subject: Option<String>,
    pub client_id: Option<String>,
    pub method: Option<String>,
    pub tool: Option<String>,
    pub status: u16,
    pub latency_ms: f64,
    pub auth_failure: Option<&'static str>,
    pub request_id: Option<String>,
}

/// Inserts a batch in one transaction.
pub fn insert_many(conn: &mut Connection, rows: &[RequestLogRow]) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    {
        let mut stmt = tx.prepare_cached(
            "INSERT INTO request_log (at_ms, server_id, subject, client_id, method, tool, status, latency_ms, auth_failure, request_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )?;
        for r in rows {
            stmt.execute(params![
                r.at_ms,
                r.server_id,
                r.subject,
                r.client_id,
                r.method,
                r.tool,
                r.status,
                r.latency_ms,
                r.auth_failure,
                r.request_id
            ])?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// What `GET /v1/servers/:id/metrics` reports, over one window.
#[derive(Debug, Default)]
pub struct WindowStats {
    pub requests: i64,
    pub errors_4xx: i64,
    pub errors_5xx: i64,
    /// Answers 502, 503 or 504: the upstream failed or was missing.
    pub upstream_errors: i64,
    /// p50, p95, p99 in milliseconds (`None` without requests).
    pub latency: Option<[f64; 3]>,
    pub methods: Vec<(String, i64)>,
    pub tools: Vec<(String, i64)>,
    pub auth_failures: Vec<(String, i64)>,
    /// The newest request's status, to tell whether the upstream answers now.
    pub last_status: Option<i64>,
}

pub fn window_stats(
    conn: &Connection,
    server_id: &str,
    since_ms: i64,
) -> Result<WindowStats, StoreError> {
    let mut s = WindowStats::default();
    conn.prepare_cached(
        "SELECT COUNT(*),
            COALESCE(SUM(status BETWEEN 400 AND 499), 0),
            COALESCE(SUM(status >= 500), 0),
            COALESCE(SUM(status IN (502, 503, 504)), 0)
         FROM request_log WHERE server_id = ?1 AND at_ms >= ?2",
    )?
    .query_row(params![server_id, since_ms], |r| {
        s.requests = r.get(0)?;
        s.errors_4xx = r.get(1)?;
        s.errors_5xx = r.get(2)?;
        s.upstream_errors = r.get(3)?;
        Ok(())
    })?;
    if s.requests > 0 {
        let mut stmt = conn.prepare_cached(
            "SELECT latency_ms FROM request_log WHERE server_id = ?1 AND at_ms >= ?2
             ORDER BY latency_ms LIMIT 1 OFFSET ?3",
        )?;
        let mut at = |q: f64| -> Result<f64, StoreError> {
            // Nearest rank: the smallest value with at least q of the requests at or below it.
            let rank = ((q * s.requests as f64).ceil() as i64).clamp(1, s.requests) - 1;
            Ok(stmt.query_row(params![server_id, since_ms, rank], |r| r.get(0))?)
        };
        s.latency = Some([at(0.50)?, at(0.95)?, at(0.99)?]);
    }
    let counts = |column: &str| -> Result<Vec<(String, i64)>, StoreError> {
        Ok(conn
            .prepare_cached(&format!(
                "SELECT {column}, COUNT(*) FROM request_log
                 WHERE server_id = ?1 AND at_ms >= ?2 AND {column} IS NOT NULL
                 GROUP BY {column} ORDER BY COUNT(*) DESC, {column} LIMIT 100"
            ))?
            .query_map(params![server_id, since_ms], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<Vec<_>, _>>()?)
    };
    s.methods = counts("method")?;
    s.tools = counts("tool")?;
    s.auth_failures = counts("auth_failure")?;
    s.last_status = conn
        .prepare_cached(
            "SELECT status FROM request_log WHERE server_id = ?1 AND at_ms >= ?2
             ORDER BY at_ms DESC, id DESC LIMIT 1",
        )?
        .query_row(params![server_id, since_ms], |r| r.get(0))
        .optional()?;
    Ok(s)
}
