//! What is on disk: the database's bytes, token hashes, an old schema version.

use super::*;

/// Lowercase hex SHA-256, as the store keeps token hashes.
pub fn sha256_hex(s: &str) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, s.as_bytes());
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// The database file and its WAL, as bytes.
pub fn db_bytes(data_dir: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    for name in ["ezforge.db", "ezforge.db-wal", "ezforge.db-journal"] {
        if let Ok(b) = std::fs::read(data_dir.join(name)) {
            out.extend_from_slice(&b);
        }
    }
    out
}

pub fn contains_bytes(haystack: &[u8], needle: &str) -> bool {
    let n = needle.as_bytes();
    !n.is_empty() && haystack.windows(n.len()).any(|w| w == n)
}

/// Makes the stopped app's database at `path` look as version 10 left it, for a test of the
/// upgrade to 11: its table dropped and the version set back, then `sql` run (rows the old
/// version allowed). The next start applies version 11 to it.
pub fn as_version_10(path: &Path, sql: &str) {
    as_version_11(path, "");
    let conn = rusqlite::Connection::open(path).expect("open");
    conn.execute_batch(&format!(
        "DROP TABLE retired_slugs; PRAGMA user_version = 10;\n{sql}"
    ))
    .expect("back to version 10");
}

/// Takes the database at `path` back to schema version 11 (clients without their maker), then
/// runs `sql` on it: what that version would have left.
pub fn as_version_11(path: &Path, sql: &str) {
    let conn = rusqlite::Connection::open(path).expect("open");
    conn.execute_batch(&format!(
        "DROP INDEX oauth_clients_created_by; DROP INDEX api_keys_created_by;
         ALTER TABLE oauth_clients DROP COLUMN created_by; PRAGMA user_version = 11;\n{sql}"
    ))
    .expect("back to version 11");
}
