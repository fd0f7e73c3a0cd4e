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
    /// Why the front door itself refused the request (`code: detail`), if it did.
    pub refusal: Option<String>,
}

const COLUMNS: &str = "at_ms, server_id, subject, client_id, method, tool, status, latency_ms, auth_failure, request_id, refusal";
/// Parameters per row.
const PER_ROW: usize = 11;
/// Rows per multi-row `INSERT` (`PER_ROW` parameters each; SQLite allows 32,766).
const ROWS_PER_INSERT: usize = 64;

/// Inserts a batch in one transaction, `ROWS_PER_INSERT` rows per statement.
pub fn insert_many(conn: &mut Connection, rows: &[RequestLogRow]) -> Result<(), StoreError> {
    static MANY: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        let one = format!("({})", ["?"; PER_ROW].join(", "));
        format!(
            "INSERT INTO request_log ({COLUMNS}) VALUES {}",
            vec![one; ROWS_PER_INSERT].join(", ")
        )
    });
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    {
        let mut chunks = rows.chunks_exact(ROWS_PER_INSERT);
        if rows.len() >= ROWS_PER_INSERT {
            let mut stmt = tx.prepare_cached(&MANY)?;
            for chunk in &mut chunks {
                for (i, r) in chunk.iter().enumerate() {
                    bind(&mut stmt, i * PER_ROW, r)?;
                }
                stmt.raw_execute()?;
            }
        }
        let mut stmt = tx.prepare_cached(&format!(
            "INSERT INTO request_log ({COLUMNS}) VALUES ({})",
            ["?"; PER_ROW].join(", ")
        ))?;
        for r in chunks.remainder() {
            bind(&mut stmt, 0, r)?;
            stmt.raw_execute()?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// Binds `r` to parameters `base + 1 ..= base + PER_ROW`.
fn bind(
    stmt: &mut rusqlite::CachedStatement<'_>,
    base: usize,
    r: &RequestLogRow,
) -> rusqlite::Result<()> {
    stmt.raw_bind_parameter(base + 1, r.at_ms)?;
    stmt.raw_bind_parameter(base + 2, &r.server_id)?;
    stmt.raw_bind_parameter(base + 3, &r.subject)?;
    stmt.raw_bind_parameter(base + 4, &r.client_id)?;
    stmt.raw_bind_parameter(base + 5, &r.method)?;
    stmt.raw_bind_parameter(base + 6, &r.tool)?;
    stmt.raw_bind_parameter(base + 7, r.status)?;
    stmt.raw_bind_parameter(base + 8, r.latency_ms)?;
    stmt.raw_bind_parameter(base + 9, r.auth_failure)?;
    stmt.raw_bind_parameter(base + 10, &r.request_id)?;
    stmt.raw_bind_parameter(base + 11, &r.refusal)
}

/// What `GET /v1/servers/:id/metrics` reports, over one window.
#[derive(Debug, Default)]
pub struct WindowStats {
    pub requests: i64,
    /// 4xx answers other than challenges.
    pub errors_4xx: i64,
    pub errors_5xx: i64,
    /// Challenges: answers 401 and 403 (the OAuth flow and step-up, not errors).
    pub challenges_401: i64,
    pub challenges_403: i64,
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

/// p50, p95 and p99 by nearest rank: the smallest value with at least q of the samples at
/// or below it. Reorders `samples`.
fn percentiles(samples: &mut [f64]) -> Option<[f64; 3]> {
    let n = samples.len();
    if n == 0 {
        return None;
    }
    let mut at = |q: f64| {
        let rank = ((q * n as f64).ceil() as usize).clamp(1, n) - 1;
        *samples.select_nth_unstable_by(rank, f64::total_cmp).1
    };
    Some([at(0.50), at(0.95), at(0.99)])
}

pub fn window_stats(
    conn: &Connection,
    server_id: &str,
    since_ms: i64,
) -> Result<WindowStats, StoreError> {
    let mut s = WindowStats::default();
    conn.prepare_cached(
        "SELECT COUNT(*),
            COALESCE(SUM(status BETWEEN 400 AND 499 AND status NOT IN (401, 403)), 0),
            COALESCE(SUM(status >= 500), 0),
            COALESCE(SUM(status IN (502, 503, 504)), 0),
            COALESCE(SUM(status = 401), 0),
            COALESCE(SUM(status = 403), 0)
         FROM request_log WHERE server_id = ?1 AND at_ms >= ?2",
    )?
    .query_row(params![server_id, since_ms], |r| {
        s.requests = r.get(0)?;
        s.errors_4xx = r.get(1)?;
        s.errors_5xx = r.get(2)?;
        s.upstream_errors = r.get(3)?;
        s.challenges_401 = r.get(4)?;
        s.challenges_403 = r.get(5)?;
        Ok(())
    })?;
    if s.requests > 0 {
        // One scan, then selection in memory: no sort of the window (three ORDER BY … OFFSET
        // queries sorted it three times).
        let mut latencies: Vec<f64> = conn
            .prepare_cached(
                "SELECT latency_ms FROM request_log WHERE server_id = ?1 AND at_ms >= ?2",
            )?
            .query_map(params![server_id, since_ms], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        s.latency = percentiles(&mut latencies);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let mut v: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        assert_eq!(percentiles(&mut v), Some([50.0, 95.0, 99.0]));
        assert_eq!(percentiles(&mut [7.0]), Some([7.0, 7.0, 7.0]));
        assert_eq!(percentiles(&mut [2.0, 1.0]), Some([1.0, 2.0, 2.0]));
        assert_eq!(percentiles(&mut []), None);
    }

    #[test]
    fn a_batch_stores_every_row_in_order_across_statements() {
        let mut conn = Connection::open_in_memory().expect("open");
        crate::store::migrations::migrate(&mut conn, ":memory:").expect("migrate");
        let n = 2 * ROWS_PER_INSERT + 5;
        let rows: Vec<RequestLogRow> = (0..n)
            .map(|i| RequestLogRow {
                at_ms: i as i64,
                server_id: format!("srv_{}", i % 3),
                subject: (i % 2 == 0).then(|| format!("usr_{i}")),
                client_id: None,
                method: Some("tools/call".into()),
                tool: Some(format!("tool{i}")),
                status: if i % 5 == 0 { 401 } else { 200 },
                latency_ms: i as f64 / 4.0,
                auth_failure: (i % 5 == 0).then_some("expired"),
                request_id: Some(format!("req{i}")),
                refusal: (i % 7 == 0).then(|| format!("invalid_request: row {i}")),
            })
            .collect();
        insert_many(&mut conn, &rows).expect("insert");
        type Stored = (
            i64,
            String,
            Option<String>,
            i64,
            f64,
            Option<String>,
            String,
            Option<String>,
        );
        let stored: Vec<Stored> = conn
            .prepare("SELECT at_ms, server_id, subject, status, latency_ms, auth_failure, request_id, refusal FROM request_log ORDER BY id")
            .expect("prepare")
            .query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?))
            })
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        assert_eq!(stored.len(), n);
        for (i, (row, s)) in rows.iter().zip(&stored).enumerate() {
            assert_eq!(s.0, row.at_ms, "row {i}");
            assert_eq!(s.1, row.server_id, "row {i}");
            assert_eq!(s.2, row.subject, "row {i}");
            assert_eq!(s.3, i64::from(row.status), "row {i}");
            assert_eq!(s.4, row.latency_ms, "row {i}");
            assert_eq!(s.5.as_deref(), row.auth_failure, "row {i}");
            assert_eq!(Some(&s.6), row.request_id.as_ref(), "row {i}");
            assert_eq!(s.7, row.refusal, "row {i}");
        }
    }
}
