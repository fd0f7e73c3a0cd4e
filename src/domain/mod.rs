//! Small validated types. Values that pass the edge are valid by construction.

pub mod destinations;
pub mod endpoint;
pub mod env_rules;
pub mod jsonrpc;
pub mod kinds;
pub mod password;
pub mod scopes;
mod secret;
pub mod validate;

pub use secret::{Secret, lenient as secret_lenient};

/// Lower-case RFC 4648 base32 alphabet: DNS-safe, case-insensitive, unambiguous in logs.
const BASE32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// Encodes bytes as unpadded lower-case base32.
pub fn base32(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let mut buffer: u16 = 0;
    let mut bits = 0u8;
    for &b in bytes {
        buffer = (buffer << 8) | u16::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(BASE32[usize::from((buffer >> bits) & 31)] as char);
        }
    }
    if bits > 0 {
        out.push(BASE32[usize::from((buffer << (5 - bits)) & 31)] as char);
    }
    out
}

/// A new random identifier with a type prefix: `srv_` + 24 base32 characters (120 bits).
pub fn new_id(prefix: &str) -> String {
    let bytes: [u8; 15] = crate::domain::random_bytes();
    format!("{prefix}{}", base32(&bytes))
}

/// `N` bytes from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    // The OS generator failing is not an input error: nothing can continue safely without it.
    #[expect(
        clippy::expect_used,
        reason = "no secure fallback exists if the OS RNG fails"
    )]
    aws_lc_rs::rand::fill(&mut buf).expect("the system random number generator failed");
    buf
}

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// RFC 3339 UTC with millisecond precision (`2026-01-15T10:00:00.123Z`).
pub fn rfc3339_ms(epoch_ms: i64) -> String {
    let ms = epoch_ms.clamp(0, 253_402_300_799_999) as u64;
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_millis(t).to_string()
}

/// The UTC calendar month (`2026-01`) of a time, and the Unix seconds its month starts and
/// ends (exclusive).
pub fn month_of(epoch_seconds: i64) -> (String, i64, i64) {
    let days = epoch_seconds.div_euclid(86_400);
    let (y, m, _) = civil_from_days(days);
    let start = days_from_civil(y, m, 1) * 86_400;
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    let end = days_from_civil(ny, nm, 1) * 86_400;
    (format!("{y:04}-{m:02}"), start, end)
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// RFC 3339 UTC with second precision (`2026-01-15T10:00:00Z`).
pub fn rfc3339(epoch_seconds: i64) -> String {
    // Clamped to what the format can write (up to 9999-12-31T23:59:59Z).
    let secs = epoch_seconds.clamp(0, 253_402_300_799) as u64;
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Parses an RFC 3339 date-time (§5.6: `T`/`t` or a space between date and time, fractional
/// seconds, `Z`/`z` or a `±hh:mm` offset, which is applied) to Unix seconds (fractions dropped).
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let digits = b.get(from..from + len)?;
        digits.iter().all(u8::is_ascii_digit).then(|| {
            digits
                .iter()
                .fold(0i64, |n, d| n * 10 + i64::from(d - b'0'))
        })
    };
    let sep = |at: usize, c: u8| b.get(at) == Some(&c);
    let (y, mo, d) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    if !(sep(4, b'-') && sep(7, b'-') && matches!(b.get(10), Some(b'T' | b't' | b' '))) {
        return None;
    }
    let (h, mi, sec) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    if !(sep(13, b':') && sep(16, b':')) {
        return None;
    }
    let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days_in_month = match mo {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap(y) => 29,
        2 => 28,
        _ => return None,
    };
    // A leap second (60) reads as the second before the next minute.
    if d < 1 || d > days_in_month || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    if sep(i, b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return None;
        }
    }
    let offset = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == b.len() && sep(i + 3, b':') => {
            let (oh, om) = (num(i + 1, 2)?, num(i + 4, 2)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let o = oh * 3600 + om * 60;
            if *sign == b'+' { o } else { -o }
        }
        _ => return None,
    };
    Some(days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec.min(59) - offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_times_are_read_with_their_offsets() {
        let utc = parse_rfc3339("2030-01-01T00:00:00Z").expect("utc");
        assert_eq!(rfc3339(utc), "2030-01-01T00:00:00Z");
        assert_eq!(parse_rfc3339("2030-01-01T02:00:00+02:00"), Some(utc));
        assert_eq!(parse_rfc3339("2029-12-31t19:00:00.123-05:00"), Some(utc));
        assert_eq!(parse_rfc3339("2030-01-01 00:00:00z"), Some(utc));
        assert_eq!(
            parse_rfc3339("2028-02-29T00:00:00Z")
                .map(rfc3339)
                .as_deref(),
            Some("2028-02-29T00:00:00Z")
        );
        for bad in [
            "2030-01-01T00:00:00",
            "2030-01-01",
            "2030-02-30T00:00:00Z",
            "2029-02-29T00:00:00Z",
            "2030-13-01T00:00:00Z",
            "2030-01-01T24:00:00Z",
            "2030-01-01T00:00:00.Z",
            "2030-01-01T00:00:00+2:00",
            "2030-01-01T00:00:00+02:00x",
            "2030-01-01T00:00:00+24:00",
            "２030-01-01T00:00:00Z",
            "",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn times_past_year_9999_are_clamped_not_a_panic() {
        assert_eq!(rfc3339(i64::MAX), "9999-12-31T23:59:59Z");
        assert_eq!(rfc3339_ms(i64::MAX), "9999-12-31T23:59:59.999Z");
        assert_eq!(rfc3339(-5), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn months_have_their_bounds() {
        // 2026-11-22T12:00:00Z
        let (m, start, end) = month_of(1_795_348_800);
        assert_eq!(m, "2026-11");
        assert_eq!(rfc3339(start), "2026-11-01T00:00:00Z");
        assert_eq!(rfc3339(end), "2026-12-01T00:00:00Z");
        let (m, start, end) = month_of(1_798_761_599); // 2026-12-31T23:59:59Z
        assert_eq!(m, "2026-12");
        assert_eq!(rfc3339(start), "2026-12-01T00:00:00Z");
        assert_eq!(rfc3339(end), "2027-01-01T00:00:00Z");
        assert_eq!(month_of(0).0, "1970-01");
    }

    #[test]
    fn base32_matches_rfc4648_vectors() {
        assert_eq!(base32(b""), "");
        assert_eq!(base32(b"f"), "my");
        assert_eq!(base32(b"fo"), "mzxq");
        assert_eq!(base32(b"foo"), "mzxw6");
        assert_eq!(base32(b"foobar"), "mzxw6ytboi");
    }

    #[test]
    fn ids_have_prefix_and_length() {
        let id = new_id("srv_");
        assert!(id.starts_with("srv_"));
        assert_eq!(id.len(), 4 + 24);
        assert_ne!(id, new_id("srv_"));
    }

    #[test]
    fn rfc3339_formats_utc_seconds() {
        assert_eq!(rfc3339(1_768_471_200), "2026-01-15T10:00:00Z");
    }
}
