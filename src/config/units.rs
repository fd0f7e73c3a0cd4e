//! The units settings are written in: durations (`"15m"`), sizes (`"64KiB"`) and rate limits.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub per_minute: u32,
    pub burst: u32,
}

impl RateLimit {
    /// The most either number may be: large enough for a benchmark to lift a limit out of
    /// the way, small enough that the limiter's arithmetic (a refill period times the burst,
    /// in nanoseconds) cannot overflow.
    pub const MAX: u32 = 100_000_000;

    /// Why this limit cannot be used, if it cannot.
    pub fn problem(&self) -> Option<String> {
        let range = 1..=Self::MAX;
        (!range.contains(&self.per_minute) || !range.contains(&self.burst))
            .then(|| format!("per_minute and burst must be between 1 and {}", Self::MAX))
    }
}
/// A duration written as a string: `"90s"`, `"15m"`, `"30d"`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Duration(pub std::time::Duration);

impl Duration {
    /// The longest a setting may be: 10 years (3,650 days).
    pub const MAX: Duration = Duration::secs(3650 * 86_400);

    pub const fn secs(s: u64) -> Self {
        Self(std::time::Duration::from_secs(s))
    }
    pub fn as_secs(self) -> i64 {
        self.0.as_secs() as i64
    }
}

impl fmt::Display for Duration {
    /// The largest whole unit: `30d`, `15m`, `90s` (what a person would write).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.as_secs();
        let (n, unit) = match secs {
            0 => (0, "s"),
            s if s.is_multiple_of(86_400) => (s / 86_400, "d"),
            s if s.is_multiple_of(3600) => (s / 3600, "h"),
            s if s.is_multiple_of(60) => (s / 60, "m"),
            s => (s, "s"),
        };
        if self.0.subsec_millis() > 0 {
            return write!(f, "{}ms", self.0.as_millis());
        }
        write!(f, "{n}{unit}")
    }
}

impl fmt::Debug for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Duration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration string such as \"90s\", \"15m\" or \"30d\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Duration, E> {
                let d = humantime::parse_duration(v.trim()).map_err(|e| {
                    E::custom(format!("invalid duration {v:?}: {e}; write e.g. \"15m\""))
                })?;
                // Longer is never meant, and dates that far out cannot be written.
                if d > Duration::MAX.0 {
                    return Err(E::custom(format!(
                        "invalid duration {v:?}: at most 10 years"
                    )));
                }
                Ok(Duration(d))
            }
        }
        d.deserialize_str(V)
    }
}

/// A size in bytes: an integer, or a string with a unit (`"64KiB"`, `"4MiB"`, `"1MB"`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ByteSize(pub usize);

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let n = self.0;
        if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
            s.serialize_str(&format!("{}MiB", n >> 20))
        } else if n >= 1 << 10 && n.is_multiple_of(1 << 10) {
            s.serialize_str(&format!("{}KiB", n >> 10))
        } else {
            s.serialize_u64(n as u64)
        }
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size such as 65536, \"64KiB\" or \"4MiB\"")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ByteSize, E> {
                usize::try_from(v).map(ByteSize).map_err(E::custom)
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<ByteSize, E> {
                usize::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom(format!("invalid size {v}: must not be negative")))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ByteSize, E> {
                parse_byte_size(v).map(ByteSize).ok_or_else(|| {
                    E::custom(format!(
                        "invalid size {v:?}; write e.g. \"64KiB\" or \"4MiB\""
                    ))
                })
            }
        }
        d.deserialize_any(V)
    }
}

pub(super) fn parse_byte_size(text: &str) -> Option<usize> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: usize = digits.parse().ok()?;
    let factor = match unit.trim() {
        "" | "B" => 1,
        "KB" | "kB" => 1000,
        "KiB" => 1024,
        "MB" => 1_000_000,
        "MiB" => 1 << 20,
        "GB" => 1_000_000_000,
        "GiB" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(factor)
}
