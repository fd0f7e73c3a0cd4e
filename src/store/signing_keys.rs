use rusqlite::{Connection, params};

use super::StoreError;

#[derive(Debug, Clone)]
pub struct SigningKeyRow {
    pub kid: String,
    pub alg: String,
    /// Sealed with the master key; context `signing_key:{kid}`.
    pub private_key: String,
    pub public_jwk: String,
    pub created_at: i64,
    pub retired_at: Option<i64>,
    pub publish_until: Option<i64>,
}

/// Every key still published: the active one first, then retired ones not yet expired, newest first.
pub fn published(conn: &Connection, now: i64) -> Result<Vec<SigningKeyRow>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT kid, alg, private_key, public_jwk, created_at, retired_at, publish_until
         FROM signing_keys WHERE publish_until IS NULL OR publish_until > ?1
         ORDER BY retired_at IS NOT NULL, created_at DESC, kid",
    )?;
    let rows = stmt.query_map([now], |r| {
        Ok(SigningKeyRow {
            kid: r.get(0)?,
            alg: r.get(1)?,
            private_key: r.get(2)?,
            public_jwk: r.get(3)?,
            created_at: r.get(4)?,
            retired_at: r.get(5)?,
            publish_until: r.get(6)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Retires the active key (published until `publish_until`) and makes `new` the active one,
/// in one transaction. Also deletes keys whose publication has ended.
pub fn rotate(
    conn: &mut Connection,
    new: &SigningKeyRow,
    now: i64,
    publish_until: i64,
) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    tx.execute(
        "UPDATE signing_keys SET retired_at = ?1, publish_until = ?2 WHERE retired_at IS NULL",
        params![now, publish_until],
    )?;
    tx.execute(
        "DELETE FROM signing_keys WHERE publish_until IS NOT NULL AND publish_until <= ?1",
        [now],
    )?;
    tx.execute(
        "INSERT INTO signing_keys (kid, alg, private_key, public_jwk, created_at, retired_at, publish_until)
         VALUES (?1, ?2, ?3, ?4, ?5, NULL, NULL)",
        params![new.kid, new.alg, new.private_key, new.public_jwk, new.created_at],
    )?;
    tx.commit()?;
    Ok(())
}

/// Inserts `new` as the active key only if there is none (first start).
pub fn insert_if_none_active(
    conn: &mut Connection,
    new: &SigningKeyRow,
) -> Result<bool, StoreError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let active: i64 = tx.query_row(
        "SELECT COUNT(*) FROM signing_keys WHERE retired_at IS NULL",
        [],
        |r| r.get(0),
    )?;
    if active > 0 {
        return Ok(false);
    }
    tx.execute(
        "INSERT INTO signing_keys (kid, alg, private_key, public_jwk, created_at, retired_at, publish_until)
         VALUES (?1, ?2, ?3, ?4, ?5, NULL, NULL)",
        params![new.kid, new.alg, new.private_key, new.public_jwk, new.created_at],
    )?;
    tx.commit()?;
    Ok(true)
}
