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
}
