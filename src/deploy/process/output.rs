//! Reading a process's output: line by line, each cut at a maximum, under a per-second
//! budget.

use std::time::{Duration, Instant};

use tokio::io::AsyncBufReadExt;

/// Reads one line into `buf`, keeping at most `max` bytes of it (the rest is read and
/// discarded). Returns the bytes consumed, 0 at end of input.
pub async fn read_line_capped(
    reader: &mut (impl tokio::io::AsyncBufRead + Unpin),
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<usize> {
    let mut consumed = 0;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(consumed);
        }
        let (chunk, done) = match available.iter().position(|b| *b == b'\n') {
            Some(i) => (&available[..=i], true),
            None => (available, false),
        };
        let room = max.saturating_sub(buf.len());
        buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
        let n = chunk.len();
        reader.consume(n);
        consumed += n;
        if done {
            return Ok(consumed);
        }
    }
}

/// A per-second line budget.
pub struct OutputLimit {
    per_second: u32,
    window: Instant,
    used: u32,
    dropped: u64,
}

impl OutputLimit {
    pub fn new(per_second: u32) -> Self {
        Self {
            per_second,
            window: Instant::now(),
            used: 0,
            dropped: 0,
        }
    }

    fn roll(&mut self) {
        if self.window.elapsed() >= Duration::from_secs(1) {
            self.window = Instant::now();
            self.used = 0;
        }
    }

    pub fn allow(&mut self) -> bool {
        self.roll();
        if self.used < self.per_second {
            self.used += 1;
            true
        } else {
            self.dropped += 1;
            false
        }
    }

    /// The count of dropped lines, once a new window has begun.
    pub fn take_report(&mut self) -> Option<u64> {
        self.roll();
        if self.dropped > 0 && self.used == 0 {
            Some(std::mem::take(&mut self.dropped))
        } else {
            None
        }
    }
}

/// The last lines a server's processes printed, for a failure's explanation, and how many of
/// their output pipes are still being read.
#[derive(Default)]
pub struct Tail {
    lines: std::sync::Mutex<std::collections::VecDeque<String>>,
    open_pipes: tokio::sync::watch::Sender<usize>,
}

/// One pipe being read: counted as open until dropped (at its end, or with its task).
pub struct PipeOpen(std::sync::Arc<Tail>);

impl Drop for PipeOpen {
    fn drop(&mut self) {
        self.0.open_pipes.send_modify(|n| *n = n.saturating_sub(1));
    }
}

impl Tail {
    /// Counts a pipe as open; call before its reader starts, so that none is missed.
    pub fn pipe_opened(self: &std::sync::Arc<Self>) -> PipeOpen {
        self.open_pipes.send_modify(|n| *n += 1);
        PipeOpen(self.clone())
    }

    /// Keeps `line` among the last `keep`.
    pub fn remember(&self, line: &str, keep: usize) {
        let mut lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        while lines.len() >= keep.max(1) {
            lines.pop_front();
        }
        lines.push_back(line.chars().take(300).collect());
    }

    /// The lines kept, oldest first.
    pub fn lines(&self) -> Vec<String> {
        let lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        lines.iter().cloned().collect()
    }

    /// The lines kept once every pipe has been read to its end (what a process printed just
    /// before it exited is still in its pipe when the exit is seen), or after `wait` when a
    /// process still holds one open.
    pub async fn settled(&self, wait: Duration) -> Vec<String> {
        let mut open = self.open_pipes.subscribe();
        let _ = tokio::time::timeout(wait, open.wait_for(|n| *n == 0)).await;
        self.lines()
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::BufReader;

    use super::*;

    #[tokio::test]
    async fn long_lines_are_cut_and_the_rest_skipped() {
        let input: &[u8] = b"short\nabcdefghij\nlast";
        let mut r = BufReader::with_capacity(4, input);
        let mut buf = Vec::new();
        let mut lines = Vec::new();
        loop {
            buf.clear();
            if read_line_capped(&mut r, &mut buf, 5).await.expect("read") == 0 {
                break;
            }
            lines.push(String::from_utf8_lossy(&buf).into_owned());
        }
        assert_eq!(lines, ["short", "abcde", "last"]);
    }

    #[test]
    fn output_budget_counts_what_it_drops() {
        let mut l = OutputLimit::new(3);
        let allowed = (0..10).filter(|_| l.allow()).count();
        assert_eq!(allowed, 3);
        assert_eq!(l.dropped, 7);
    }

    #[tokio::test]
    async fn settled_output_waits_for_what_is_still_in_the_pipes() {
        let tail = std::sync::Arc::new(Tail::default());
        let open = tail.pipe_opened();
        let reader = tail.clone();
        let task = tokio::spawn(async move {
            tokio::task::yield_now().await;
            reader.remember("printed before exiting", 3);
            drop(open);
        });
        assert_eq!(
            tail.settled(Duration::from_secs(60)).await,
            ["printed before exiting"]
        );
        task.await.expect("task");
        for n in 0..5 {
            tail.remember(&format!("line {n}"), 3);
        }
        assert_eq!(tail.lines(), ["line 2", "line 3", "line 4"]);
    }

    #[tokio::test]
    async fn a_pipe_held_open_is_waited_for_no_longer_than_asked() {
        let tail = std::sync::Arc::new(Tail::default());
        let _held = tail.pipe_opened();
        tail.remember("so far", 3);
        assert_eq!(tail.settled(Duration::from_millis(50)).await, ["so far"]);
    }
}
