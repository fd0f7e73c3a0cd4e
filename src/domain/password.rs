//! Passwords: argon2id (RFC 9106 second recommended parameters). Hashing is deliberately slow:
//! callers run these on the blocking pool, never on an actix worker.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use super::Secret;

pub const MIN_LENGTH: usize = 12;
pub const MAX_LENGTH: usize = 1024;

fn hasher() -> Argon2<'static> {
    // 19 MiB, 2 passes, 1 lane: OWASP's argon2id baseline.
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// The PHC string of `password`.
pub fn hash(password: &Secret) -> Result<String, argon2::password_hash::Error> {
    let salt_bytes: [u8; 16] = crate::domain::random_bytes();
    let salt = SaltString::encode_b64(&salt_bytes)?;
    Ok(hasher()
        .hash_password(password.expose().as_bytes(), &salt)?
        .to_string())
}

/// Checks `password` against a stored PHC string. With no stored hash (unknown user, or a user
/// who has not set one), verifies against a fixed dummy hash so the time taken is the same.
pub fn verify(password: &Secret, stored: Option<&str>) -> bool {
    let dummy;
    let phc = match stored {
        Some(s) => s,
        None => {
            dummy = dummy_hash();
            dummy.as_str()
        }
    };
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    let ok = hasher()
        .verify_password(password.expose().as_bytes(), &parsed)
        .is_ok();
    ok && stored.is_some()
}

fn dummy_hash() -> String {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY
        .get_or_init(|| hash(&Secret::new("not a password: timing equaliser")).unwrap_or_default())
        .clone()
}

/// A new random password for the first admin: 24 characters from a 56-symbol alphabet
/// without look-alikes (≈139 bits).
pub fn generate() -> Secret {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    // Rejection sampling: only bytes below 224 (= 4 × 56) are used, so every symbol is equally likely.
    let mut out = String::with_capacity(24);
    while out.len() < 24 {
        let bytes: [u8; 32] = crate::domain::random_bytes();
        for b in bytes
            .iter()
            .filter(|&&b| usize::from(b) < 4 * ALPHABET.len())
        {
            if out.len() < 24 {
                out.push(ALPHABET[usize::from(*b) % ALPHABET.len()] as char);
            }
        }
    }
    Secret::new(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_and_verify() {
        let pw = Secret::new("correct horse battery staple");
        let h = hash(&pw).expect("hash");
        assert!(h.starts_with("$argon2id$"));
        assert!(verify(&pw, Some(&h)));
        assert!(!verify(&Secret::new("wrong"), Some(&h)));
        assert!(!verify(&pw, None));
        assert!(!verify(&pw, Some("not a phc string")));
    }

    #[test]
    fn generated_passwords_are_long_and_distinct() {
        let a = generate();
        assert_eq!(a.expose().len(), 24);
        assert_ne!(a.expose(), generate().expose());
    }
}
