//! The front door's access log: entries go through a bounded channel to one task that writes
//! them in batches, so the request path never waits for the database.

use std::sync::Arc;

use tokio::sync::{Notify, mpsc};

use crate::store::Store;
use crate::store::request_log::RequestLogRow;

const QUEUE: usize = 16_384;
const BATCH: usize = 4096;
const FLUSH_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

#[derive(Clone)]
pub struct AccessLog {
    tx: mpsc::Sender<RequestLogRow>,
}

impl AccessLog {
    /// The sender, and the receiver for [`run_writer`].
    pub fn new() -> (Self, mpsc::Receiver<RequestLogRow>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        (Self { tx }, rx)
    }

    /// Queues an entry; when the writer is behind, the entry is dropped (and counted in the log).
    pub fn record(&self, row: RequestLogRow) {
        if self.tx.try_send(row).is_err() {
            tracing::warn!("access log queue full; an entry was dropped");
        }
    }
}

/// Writes queued entries in batches: one transaction per `FLUSH_EVERY` (or per `BATCH`
/// rows), so a log costs a few commits a second rather than one per entry. On `stop`,
/// writes what is queued and returns. Serves the access log and the server log alike.
pub async fn run_writer<T: Send + 'static>(
    store: Store,
    mut rx: mpsc::Receiver<T>,
    stop: Arc<Notify>,
    insert: fn(&mut rusqlite::Connection, &[T]) -> Result<(), crate::store::StoreError>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut last = false;
    while !last {
        tokio::select! {
            n = rx.recv_many(&mut batch, BATCH) => last = n == 0,
            () = stop.notified() => last = true,
        }
        if !last {
            // Gather more for a moment so each transaction carries many rows.
            let deadline = tokio::time::sleep(FLUSH_EVERY);
            tokio::pin!(deadline);
            while batch.len() < BATCH && !last {
                let room = BATCH - batch.len();
                tokio::select! {
                    n = rx.recv_many(&mut batch, room) => last = n == 0,
                    () = &mut deadline => break,
                    () = stop.notified() => last = true,
                }
            }
        }
        if last {
            while let Ok(row) = rx.try_recv() {
                batch.push(row);
            }
        }
        while !batch.is_empty() {
            let rows: Vec<T> = batch.drain(..batch.len().min(BATCH)).collect();
            if let Err(e) = store.run(move |c| insert(c, &rows)).await {
                tracing::error!(error = %e, "could not write a log batch");
            }
        }
    }
}
