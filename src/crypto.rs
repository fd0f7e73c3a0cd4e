//! Randomness, hashing and encryption at rest. Everything uses aws-lc-rs, the backend rustls
//! and jsonwebtoken already link, so there is one audited implementation of each primitive.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

use crate::domain::{Secret, random_bytes};

/// A bearer secret: `prefix` + 43 characters of base64url (256 random bits).
pub fn new_token(prefix: &str) -> Secret {
    let bytes: [u8; 32] = random_bytes();
    Secret::new(format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes)))
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// The stored form of a bearer secret: hex of its SHA-256.
pub fn token_hash(token: &str) -> String {
    hex(&sha256(token.as_bytes()))
}

pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

/// Constant-time equality for secrets and their hashes.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[derive(Debug, thiserror::Error)]
pub enum MasterKeyError {
    #[error("{source_name}: expected base64 of exactly 32 bytes")]
    Malformed { source_name: String },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot create {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "no master key: {path} does not exist and EZFORGE_MASTER_KEY (or EZFORGE_MASTER_KEY_FILE) is not set; give this command the key the server uses"
    )]
    Missing { path: PathBuf },
}

#[derive(Debug, thiserror::Error)]
#[error("decryption failed: the master key does not match the one this value was sealed with")]
pub struct OpenError;

/// The key that encrypts secrets at rest (private signing keys, env var values):
/// AES-256-GCM, a random 96-bit nonce per value, and the value's context as associated data
/// so a sealed value cannot be moved to another row.
pub struct MasterKey(LessSafeKey, [u8; 32]);

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(***)")
    }
}

const SEALED_PREFIX: &str = "v1.";

impl MasterKey {
    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        // A 32-byte slice is always a valid AES-256 key.
        // A second key for MACs, derived so that it never equals the sealing key.
        let tag = aws_lc_rs::hmac::sign(
            &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, bytes),
            b"ezforge mac key v1",
        );
        let mut mac_key = [0u8; 32];
        mac_key.copy_from_slice(tag.as_ref());
        match UnboundKey::new(&AES_256_GCM, bytes) {
            Ok(k) => Self(LessSafeKey::new(k), mac_key),
            Err(_) => unreachable!("AES-256 accepts every 32-byte key"),
        }
    }

    /// An HMAC-SHA256 key for `purpose`, derived from the master key: stable across restarts
    /// while the master key is.
    pub fn mac_key(&self, purpose: &str) -> aws_lc_rs::hmac::Key {
        let tag = aws_lc_rs::hmac::sign(
            &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &self.1),
            purpose.as_bytes(),
        );
        aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, tag.as_ref())
    }

    fn parse(text: &str, source_name: &str) -> Result<Self, MasterKeyError> {
        let malformed = || MasterKeyError::Malformed {
            source_name: source_name.to_owned(),
        };
        let bytes = STANDARD
            .decode(text.trim())
            .or_else(|_| URL_SAFE_NO_PAD.decode(text.trim()))
            .map_err(|_| malformed())?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| malformed())?;
        Ok(Self::from_bytes(&bytes))
    }

    /// The key given by the operator (`EZFORGE_MASTER_KEY[_FILE]`), else `data_dir/master.key`,
    /// created with mode 0600 on first start.
    pub fn load_or_create(
        explicit: Option<&Secret>,
        data_dir: &Path,
    ) -> Result<Self, MasterKeyError> {
        match Self::load(explicit, data_dir) {
            Err(MasterKeyError::Missing { path }) => {
                let bytes: [u8; 32] = random_bytes();
                write_private_file(&path, format!("{}\n", STANDARD.encode(bytes)).as_bytes())
                    .map_err(|source| MasterKeyError::Create {
                        path: path.clone(),
                        source,
                    })?;
                Ok(Self::from_bytes(&bytes))
            }
            other => other,
        }
    }

    /// The key the server uses, for an operator command: never creates one (a new key would
    /// seal what the command writes with a key the server does not have).
    pub fn load(explicit: Option<&Secret>, data_dir: &Path) -> Result<Self, MasterKeyError> {
        if let Some(secret) = explicit {
            return Self::parse(secret.expose(), "EZFORGE_MASTER_KEY");
        }
        let path = data_dir.join("master.key");
        match std::fs::read_to_string(&path) {
            Ok(text) => Self::parse(&text, &path.display().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(MasterKeyError::Missing { path })
            }
            Err(source) => Err(MasterKeyError::Read { path, source }),
        }
    }

    /// Encrypts `plaintext`, bound to `context`. Output: `v1.` + base64url(nonce || ciphertext).
    pub fn seal(&self, plaintext: &[u8], context: &str) -> String {
        let nonce_bytes: [u8; NONCE_LEN] = random_bytes();
        let mut buf = plaintext.to_vec();
        let nonce = Nonce::assume_unique_for_key(nonce_bytes);
        // Sealing only fails for inputs larger than GCM's 64 GiB limit.
        if self
            .0
            .seal_in_place_append_tag(nonce, Aad::from(context.as_bytes()), &mut buf)
            .is_err()
        {
            unreachable!("AES-GCM seal of an in-memory value cannot exceed its size limit");
        }
        let mut out = Vec::with_capacity(NONCE_LEN + buf.len());
        out.extend_from_slice(&nonce_bytes);
        out.extend_from_slice(&buf);
        format!("{SEALED_PREFIX}{}", URL_SAFE_NO_PAD.encode(out))
    }

    /// The length of what a sealed value of `sealed_len` characters holds.
    pub fn plaintext_len(sealed_len: usize) -> usize {
        (sealed_len.saturating_sub(SEALED_PREFIX.len()) * 3 / 4)
            .saturating_sub(NONCE_LEN + AES_256_GCM.tag_len())
    }

    pub fn open(&self, sealed: &str, context: &str) -> Result<Vec<u8>, OpenError> {
        let body = sealed.strip_prefix(SEALED_PREFIX).ok_or(OpenError)?;
        let mut bytes = URL_SAFE_NO_PAD.decode(body).map_err(|_| OpenError)?;
        if bytes.len() < NONCE_LEN {
            return Err(OpenError);
        }
        let mut ciphertext = bytes.split_off(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(&bytes).map_err(|_| OpenError)?;
        let plain = self
            .0
            .open_in_place(nonce, Aad::from(context.as_bytes()), &mut ciphertext)
            .map_err(|_| OpenError)?;
        Ok(plain.to_vec())
    }
}

/// Writes a file readable only by its owner, creating it exclusively.
pub fn write_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plaintext_len_reads_the_sealed_length() {
        let key = MasterKey::from_bytes(&[7u8; 32]);
        for n in [0, 1, 2, 3, 4, 31, 32, 33, 1000, 32 * 1024] {
            let sealed = key.seal(&vec![b'a'; n], "ctx");
            assert_eq!(MasterKey::plaintext_len(sealed.len()), n, "{n} bytes");
        }
    }

    #[test]
    fn seal_and_open_round_trip_with_context() {
        let key = MasterKey::from_bytes(&[7u8; 32]);
        let sealed = key.seal(b"private", "signing_key:abc");
        assert!(sealed.starts_with("v1."));
        assert_eq!(
            key.open(&sealed, "signing_key:abc").ok().as_deref(),
            Some(&b"private"[..])
        );
        assert!(key.open(&sealed, "signing_key:other").is_err());
        let other = MasterKey::from_bytes(&[8u8; 32]);
        assert!(other.open(&sealed, "signing_key:abc").is_err());
        assert!(key.open("v1.AAAA", "x").is_err());
        assert!(key.open("garbage", "x").is_err());
    }

    #[test]
    fn master_key_file_is_created_private_and_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let k1 = MasterKey::load_or_create(None, dir.path()).expect("create");
        let sealed = k1.seal(b"x", "c");
        let k2 = MasterKey::load_or_create(None, dir.path()).expect("reuse");
        assert_eq!(k2.open(&sealed, "c").ok().as_deref(), Some(&b"x"[..]));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("master.key"))
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn explicit_master_key_must_be_32_bytes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = MasterKey::load_or_create(Some(&Secret::new("c2hvcnQ=")), dir.path());
        assert!(matches!(err, Err(MasterKeyError::Malformed { .. })));
        let ok =
            MasterKey::load_or_create(Some(&Secret::new(STANDARD.encode([1u8; 32]))), dir.path());
        assert!(ok.is_ok());
        assert!(!dir.path().join("master.key").exists());
    }

    #[test]
    fn token_hash_is_hex_sha256() {
        assert_eq!(
            token_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(ct_eq(b"a", b"a"));
        assert!(!ct_eq(b"a", b"b"));
        assert!(!ct_eq(b"a", b"ab"));
    }
}
