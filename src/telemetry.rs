//! Logging: tracing-subscriber, human-readable on a terminal, JSON when configured.
//! One access line per request comes from the middleware in `app/middleware.rs`.
//!
//! Logging never holds the server up: lines go through a bounded queue to a thread of their
//! own that writes stderr. A reader that is slow or stopped (a full pipe) fills the queue and
//! further lines are dropped; a reader that is gone (a closed pipe) makes writes fail, and those
//! lines are dropped too. Both are counted (`ezforge_log_lines_dropped_total`).

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc;
use std::time::Duration;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::config::{LogFormat, LoggingConfig};

/// Lines waiting for the writer thread before new ones are dropped.
const QUEUE_LINES: usize = 16 * 1024;
/// How long the end of the process waits for queued lines to be written.
const FINAL_FLUSH: Duration = Duration::from_secs(1);

/// Lines dropped: the writer thread behind (a reader not reading), or a write that failed (a
/// reader gone).
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Keeps the writer thread; dropping it waits (at most a second) until what was queued
/// before has been written.
pub struct LogGuard {
    lines: mpsc::SyncSender<Vec<u8>>,
    /// A message for each flush mark the thread reached.
    flushed: mpsc::Receiver<()>,
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        let deadline = std::time::Instant::now() + FINAL_FLUSH;
        // An empty line is the mark: everything queued before it has been written when the
        // thread reaches it.
        loop {
            match self.lines.try_send(Vec::new()) {
                Ok(()) => break,
                Err(mpsc::TrySendError::Full(_)) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(_) => return,
            }
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let _ = self.flushed.recv_timeout(left);
    }
}

/// The subscriber's writer: each event's text goes to the writer thread, or is dropped (and
/// counted) when the thread's queue is full.
#[derive(Clone)]
struct NonBlocking {
    lines: mpsc::SyncSender<Vec<u8>>,
}

/// One event's text, handed over when the subscriber is done with it.
struct Line {
    buf: Vec<u8>,
    lines: mpsc::SyncSender<Vec<u8>>,
}

impl Write for Line {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        if !self.buf.is_empty() && self.lines.try_send(std::mem::take(&mut self.buf)).is_err() {
            DROPPED.fetch_add(1, Relaxed);
        }
    }
}

impl<'a> MakeWriter<'a> for NonBlocking {
    type Writer = Line;
    fn make_writer(&'a self) -> Line {
        Line {
            buf: Vec::with_capacity(256),
            lines: self.lines.clone(),
        }
    }
}

/// Starts the thread that writes log lines to stderr.
fn non_blocking() -> std::io::Result<(NonBlocking, LogGuard)> {
    let (lines, queue) = mpsc::sync_channel::<Vec<u8>>(QUEUE_LINES);
    let (flushed_tx, flushed) = mpsc::channel::<()>();
    std::thread::Builder::new()
        .name("ezforge-log".into())
        .spawn(move || {
            let mut err = std::io::stderr();
            for line in queue {
                if line.is_empty() {
                    let _ = flushed_tx.send(());
                } else if err.write_all(&line).is_err() {
                    DROPPED.fetch_add(1, Relaxed);
                }
            }
        })?;
    let guard = LogGuard {
        lines: lines.clone(),
        flushed,
    };
    Ok((NonBlocking { lines }, guard))
}

/// Installs the global subscriber, once per process (later calls do nothing and return
/// `None`, so tests that start several apps in one process do not fight over it).
pub fn init(config: &LoggingConfig) -> Option<LogGuard> {
    let filter = EnvFilter::try_new(&config.level).unwrap_or_else(|_| EnvFilter::new("info"));
    let (writer, guard) = match non_blocking() {
        Ok(w) => w,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "ezforge: no thread for the log: {e}");
            return None;
        }
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let installed = match config.format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
        LogFormat::Pretty => builder
            .with_ansi(std::io::stderr().is_terminal())
            .with_target(false)
            .try_init(),
    };
    installed.ok().map(|()| guard)
}

/// Log lines dropped so far: a reader too slow, or gone.
pub fn dropped_lines() -> u64 {
    DROPPED.load(Relaxed)
}

/// Text for stdout (the start-up banner) written from a thread of its own: a reader that is
/// gone or not reading never holds up or ends the server.
pub fn print_detached(text: String) {
    let _ = std::thread::Builder::new()
        .name("ezforge-banner".into())
        .spawn(move || {
            let mut out = std::io::stdout().lock();
            if out
                .write_all(text.as_bytes())
                .and_then(|()| out.flush())
                .is_err()
            {
                DROPPED.fetch_add(1, Relaxed);
            }
        });
}
