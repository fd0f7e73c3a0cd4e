//! The logs' write path: entries are appended to an in-memory queue, and one task writes what
//! has gathered every `FLUSH_EVERY`, in one transaction. Appending wakes nobody (no channel,
//! no task notification), so a busy front door pays a short uncontended lock per request and
//! the database a few commits a second. Serves the access log and the server log alike.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::Notify;

use crate::store::Store;
use crate::store::request_log::RequestLogRow;

/// Rows per transaction.
const BATCH: usize = 4096;
const FLUSH_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// Entries waiting for the writer; beyond `cap` (the writer is far behind), new ones are
/// dropped and counted.
pub struct LogQueue<T> {
    rows: Mutex<Vec<T>>,
    cap: usize,
    dropped: AtomicU64,
    stop: Notify,
    /// Flushes asked for ([`LogQueue::flush`]), and the last one the writer has done.
    requested: AtomicU64,
    wake: Notify,
    done: tokio::sync::watch::Sender<u64>,
}

/// The front door's access log.
pub type AccessLog = LogQueue<RequestLogRow>;

impl<T> LogQueue<T> {
    pub fn new(cap: usize) -> Self {
        Self {
            rows: Mutex::new(Vec::new()),
            cap,
            dropped: AtomicU64::new(0),
            stop: Notify::new(),
            requested: AtomicU64::new(0),
            wake: Notify::new(),
            done: tokio::sync::watch::Sender::new(0),
        }
    }

    /// Waits (at most a second) until what was queued before the call is stored: a reader
    /// of the log then sees what just happened.
    pub async fn flush(&self) {
        let asked = self.requested.fetch_add(1, Ordering::SeqCst) + 1;
        let mut done = self.done.subscribe();
        self.wake.notify_one();
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(1),
            done.wait_for(|d| *d >= asked),
        )
        .await;
    }

    /// Queues an entry (dropped, and counted, when the queue is full).
    pub fn record(&self, row: T) {
        let mut rows = self.rows.lock().unwrap_or_else(|e| e.into_inner());
        if rows.len() < self.cap {
            rows.push(row);
        } else {
            drop(rows);
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Asks the writer to write what is queued and return.
    pub fn stop(&self) {
        self.stop.notify_one();
    }

    fn take(&self) -> Vec<T> {
        std::mem::take(&mut *self.rows.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Writes the queue's entries every `FLUSH_EVERY`, `BATCH` rows per transaction, until
/// [`LogQueue::stop`]; then writes what is left and returns.
pub async fn run_writer<T: Send + 'static>(
    store: Store,
    queue: std::sync::Arc<LogQueue<T>>,
    what: &'static str,
    insert: fn(&mut rusqlite::Connection, &[T]) -> Result<(), crate::store::StoreError>,
) {
    let mut last = false;
    while !last {
        tokio::select! {
            () = tokio::time::sleep(FLUSH_EVERY) => {}
            () = queue.wake.notified() => {}
            () = queue.stop.notified() => last = true,
        }
        // Read before taking the rows: every flush asked for up to here then finds its
        // entries in this batch.
        let asked = queue.requested.load(Ordering::SeqCst);
        let dropped = queue.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            tracing::warn!(dropped, "{what} queue full; entries were dropped");
        }
        let mut rows = queue.take();
        while !rows.is_empty() {
            let rest = rows.split_off(rows.len().min(BATCH));
            if let Err(e) = store.run(move |c| insert(c, &rows)).await {
                tracing::error!(error = %e, "could not write a {what} batch");
            }
            rows = rest;
        }
        queue.done.send_if_modified(|d| {
            let newer = asked > *d;
            *d = (*d).max(asked);
            newer
        });
    }
}
