//! The front door's access log: entries go through a bounded channel to one task that writes
//! them in batches, so the request path never waits for the database.

use std::sync::Arc;

use tokio::sync::{Notify, mpsc};

use crate::store::Store;
use crate::store::request_log::{self, RequestLogRow};

const QUEUE: usize = 16_384;
const BATCH: usize = 512;

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

/// Writes queued entries in batches; on `stop`, writes what is queued and returns.
pub async fn run_writer(store: Store, mut rx: mpsc::Receiver<RequestLogRow>, stop: Arc<Notify>) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let last = tokio::select! {
            n = rx.recv_many(&mut batch, BATCH) => n == 0,
            () = stop.notified() => {
                while let Ok(row) = rx.try_recv() {
                    batch.push(row);
                }
                true
            }
        };
        if !batch.is_empty() {
            let rows = std::mem::take(&mut batch);
            if let Err(e) = store.run(move |c| request_log::insert_many(c, &rows)).await {
                tracing::error!(error = %e, "could not write the access log");
            }
        }
        if last {
            return;
        }
    }
}
