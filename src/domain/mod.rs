//! Small validated types. Values that pass the edge are valid by construction.

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
    let bytes: [u8; 15] = crate::crypto::random_bytes();
    format!("{prefix}{}", base32(&bytes))
}

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// RFC 3339 UTC with second precision (`2026-01-15T10:00:00Z`).
pub fn rfc3339(epoch_seconds: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(epoch_seconds.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

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
