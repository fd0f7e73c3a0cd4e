//! The only place with SQL. A pool of SQLite connections (WAL), every call run on the blocking
//! thread pool through [`Store::run`], migrations embedded in the binary.

pub mod api_keys;
pub mod audit;
pub mod clients;
pub mod deployments;
pub mod env_vars;
pub mod grants;
pub mod invitations;
mod kinds;
mod migrations;
pub mod projects;
pub mod request_log;
pub mod server_log;
pub mod servers;
pub mod sessions;
pub mod signing_keys;
pub mod usage;
pub mod users;

use std::path::{Path, PathBuf};
use std::time::Duration;

use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::Connection;

pub use migrations::{LATEST_VERSION, migrate, migrate_to};

pub type Pool = r2d2::Pool<SqliteConnectionManager>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Sqlite(rusqlite::Error),
    #[error("database connection pool: {0}")]
    Pool(#[from] r2d2::Error),
    #[error("the database is busy")]
    Busy,
    #[error(
        "database {path} was written by a newer ezforge (schema version {found}; this binary knows up to {supported}); upgrade ezforge or restore a backup"
    )]
    TooNew {
        path: String,
        found: u32,
        supported: u32,
    },
    #[error("database migration {version} ({name}) failed: {source}")]
    Migration {
        version: u32,
        name: &'static str,
        source: rusqlite::Error,
    },
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("a database task panicked")]
    Panicked,
    #[error("database file {0}")]
    Io(String),
}

/// `SQLITE_BUSY` and `SQLITE_LOCKED` (the busy timeout ran out: another writer held the
/// lock) are [`StoreError::Busy`], which callers answer with 503, not 500.
impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
                Self::Busy
            }
            _ => Self::Sqlite(e),
        }
    }
}

impl StoreError {
    pub fn corrupt(what: impl Into<String>) -> Self {
        Self::Corrupt(what.into())
    }
}

#[derive(Clone)]
pub struct Store {
    pool: Pool,
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

/// Pragmas on every connection, at acquisition.
fn configure(conn: &mut Connection) -> Result<(), rusqlite::Error> {
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = NORMAL;
         PRAGMA foreign_keys = ON;
         PRAGMA temp_store = MEMORY;",
    )?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

impl Store {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    /// Blocking: call at start-up, or from a blocking context.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        // Create the file once; pooled connections then never create one, so a database file
        // deleted under a running server is an error, not a new empty database.
        drop(Connection::open(path)?);
        // Only ezforge's user may read it (SQLite creates files with the umask's mode, and
        // makes its -wal and -shm files with the database's).
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| StoreError::Io(format!("{}: {e}", path.display())))?;
        }
        let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE
            | rusqlite::OpenFlags::SQLITE_OPEN_URI
            | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let manager = SqliteConnectionManager::file(path)
            .with_flags(flags)
            .with_init(configure);
        let pool = r2d2::Pool::builder()
            .max_size(8)
            .min_idle(Some(1))
            .connection_timeout(Duration::from_secs(10))
            .build(manager)?;
        let store = Self {
            pool,
            path: path.to_path_buf(),
        };
        let mut conn = store.pool.get()?;
        migrate(&mut conn, &store.path.display().to_string())?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` with a pooled connection on the blocking thread pool, never on an actix worker.
    /// The closure's error type is the caller's, so each layer keeps its own errors.
    pub async fn run<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut Connection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let pool = self.pool.clone();
        actix_web::web::block(move || {
            // Every connection stayed taken for the whole pool timeout: busy, not broken.
            let mut conn = pool.get().map_err(|e| {
                tracing::warn!(error = %e, "no database connection became free");
                StoreError::Busy
            })?;
            f(&mut conn)
        })
        .await
        .map_err(|_| StoreError::Panicked)?
    }

    /// Runs `f` in one `IMMEDIATE` transaction (the write lock is taken up front, so a
    /// read-then-write never fails to upgrade), committed when `f` returns `Ok`.
    pub async fn write<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&rusqlite::Transaction<'_>) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        self.run(move |c| {
            let tx = c
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(StoreError::from)?;
            let out = f(&tx)?;
            tx.commit().map_err(StoreError::from)?;
            Ok(out)
        })
        .await
    }

    /// The same, for code that already runs on a blocking thread (start-up, CLI commands).
    pub fn run_blocking<T, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut conn = self.pool.get().map_err(StoreError::from)?;
        f(&mut conn)
    }

    /// Is the database usable: its file still there, and the write lock obtainable?
    /// (`BEGIN IMMEDIATE` takes the lock without writing anything.)
    pub async fn ping(&self) -> Result<(), StoreError> {
        let path = self.path.clone();
        self.run(move |c| {
            std::fs::metadata(&path)
                .map_err(|e| StoreError::corrupt(format!("{}: {e}", path.display())))?;
            c.execute_batch("BEGIN IMMEDIATE; ROLLBACK;")?;
            Ok(())
        })
        .await
    }

    /// Folds the WAL into the main file so the database is self-contained after shutdown.
    pub fn checkpoint(&self) -> Result<(), StoreError> {
        self.run_blocking(|c| {
            c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
                .map_err(StoreError::from)
        })
    }
}

/// A consistent copy of a live database with SQLite's online backup API. Writes to a
/// temporary file beside `dest` and renames it into place, so a failed backup leaves nothing.
pub fn backup(source: &Path, dest: &Path) -> Result<(), StoreError> {
    use rusqlite::OpenFlags;
    let src = Connection::open_with_flags(
        source,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    src.busy_timeout(Duration::from_secs(5))?;
    // A name of our own (never a file of the user's), made private before anything is in it.
    let mut name = dest.file_name().unwrap_or_default().to_owned();
    name.push(format!(
        ".{}.partial",
        crate::crypto::hex(&crate::domain::random_bytes::<6>())
    ));
    let tmp = dest.with_file_name(name);
    crate::crypto::write_private_file(&tmp, b"")
        .map_err(|e| StoreError::corrupt(format!("cannot create {}: {e}", tmp.display())))?;
    let result = (|| {
        let mut dst = Connection::open(&tmp)?;
        {
            let backup = rusqlite::backup::Backup::new(&src, &mut dst)?;
            backup.run_to_completion(256, Duration::from_millis(5), None)?;
        }
        dst.execute_batch("PRAGMA journal_mode = DELETE;")?;
        Ok::<_, rusqlite::Error>(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e.into());
    }
    std::fs::rename(&tmp, dest).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        StoreError::corrupt(format!("cannot move backup into place: {e}"))
    })
}

/// One page of a keyset-paginated list.
#[derive(Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// The key to continue after, when there is more.
    pub next: Option<String>,
    pub total: i64,
}

/// Where a page starts and how long it is.
#[derive(Debug, Clone)]
pub struct PageRequest {
    /// Continue after this key (ascending lists) or before it (newest-first lists).
    pub after: Option<String>,
    pub limit: u32,
}

impl<T> Page<T> {
    /// Builds a page from up to `limit + 1` fetched rows.
    pub fn from_rows(mut rows: Vec<T>, limit: u32, total: i64, key: impl Fn(&T) -> String) -> Self {
        let more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let next = if more { rows.last().map(key) } else { None };
        Page {
            items: rows,
            next,
            total,
        }
    }
}

/// Is this a unique-constraint violation (a clash the caller should answer 409 for)?
pub fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _)
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
    )
}
