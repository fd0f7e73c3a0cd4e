use rusqlite::{Connection, params};

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
