//! `Mcp-Session-Id` binding: a session belongs to the subject (and client) that opened it.
//! Another subject presenting it gets 404, as if the session did not exist.

use std::time::{Duration, Instant};

use dashmap::DashMap;

const IDLE: Duration = Duration::from_secs(24 * 3600);
const CAPACITY: usize = 200_000;

#[derive(Default)]
pub struct SessionBindings {
    map: DashMap<(String, String), (String, Instant)>,
}

pub enum Binding {
    /// Unknown to us (opened before a restart, or never): the upstream decides.
    Unknown,
    Owner,
    Other,
}

impl SessionBindings {
    pub fn check(&self, server_id: &str, session: &str, owner: &str) -> Binding {
        match self
            .map
            .get_mut(&(server_id.to_owned(), session.to_owned()))
        {
            None => Binding::Unknown,
            Some(mut e) if e.0 == owner => {
                e.1 = Instant::now();
                Binding::Owner
            }
            Some(_) => Binding::Other,
        }
    }

    /// Binds a new session. When the table is full, idle bindings go first; if that frees too
    /// little (sessions opened faster than they idle out), any half of the rest, so that the
    /// table stays bounded and binding stays cheap. A forgotten session is `Unknown`.
    pub fn bind(&self, server_id: &str, session: &str, owner: &str) {
        if self.map.len() >= CAPACITY {
            let now = Instant::now();
            self.map
                .retain(|_, (_, seen)| now.duration_since(*seen) < IDLE);
            if self.map.len() >= CAPACITY {
                let mut keep = false;
                self.map.retain(|_, _| {
                    keep = !keep;
                    keep
                });
            }
        }
        self.map
            .entry((server_id.to_owned(), session.to_owned()))
            .or_insert_with(|| (owner.to_owned(), Instant::now()));
    }

    pub fn unbind(&self, server_id: &str, session: &str) {
        self.map.remove(&(server_id.to_owned(), session.to_owned()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_stays_bounded_when_sessions_open_faster_than_they_idle_out() {
        let t = SessionBindings::default();
        for i in 0..CAPACITY + 10 {
            t.bind("srv", &format!("s{i}"), "alice|c");
            assert!(t.map.len() <= CAPACITY);
        }
        let last = format!("s{}", CAPACITY + 9);
        assert!(matches!(t.check("srv", &last, "alice|c"), Binding::Owner));
        assert!(matches!(t.check("srv", &last, "mallory|c"), Binding::Other));
    }
}
