//! TLS for the listener (rustls): `off`, `self_signed` (rcgen, made once and kept in
//! `data_dir/tls/`), or `files` (PEM chain and key, reloaded on SIGHUP).

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::{TlsConfig, TlsMode};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("TLS certificate {path}: {reason}")]
    Cert { path: PathBuf, reason: String },
    #[error("TLS key {path}: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error("cannot generate a self-signed certificate: {0}")]
    Generate(String),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Where the certificate comes from, so SIGHUP can read it again.
#[derive(Debug, Clone)]
struct Source {
    cert: PathBuf,
    key: PathBuf,
}

/// Serves the current certificate; `reload` swaps it without a restart.
#[derive(Debug)]
pub struct CertResolver {
    current: RwLock<Arc<CertifiedKey>>,
    source: Source,
    fingerprint: RwLock<String>,
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().map(|g| g.clone())
    }
}

impl CertResolver {
    /// Reads the certificate and key again (blocking). On error the old pair stays in use.
    pub fn reload(&self) -> Result<String, TlsError> {
        let (key, fingerprint) = load_pair(&self.source)?;
        if let Ok(mut g) = self.current.write() {
            *g = Arc::new(key);
        }
        if let Ok(mut f) = self.fingerprint.write() {
            f.clone_from(&fingerprint);
        }
        Ok(fingerprint)
    }

    /// SHA-256 fingerprint of the leaf certificate, colon-separated hex.
    pub fn fingerprint(&self) -> String {
        self.fingerprint
            .read()
            .map(|f| f.clone())
            .unwrap_or_default()
    }

    pub fn cert_path(&self) -> &Path {
        &self.source.cert
    }
}

/// Builds the rustls server config for `config` (blocking: reads or writes files).
/// `names` are the DNS names or addresses a self-signed certificate must cover.
pub fn server_config(
    config: &TlsConfig,
    data_dir: &Path,
    names: &[String],
) -> Result<Option<(rustls::ServerConfig, Arc<CertResolver>)>, TlsError> {
    let source = match config.mode {
        TlsMode::Off => return Ok(None),
        TlsMode::Files => Source {
            cert: config.cert_file.clone().unwrap_or_default(),
            key: config.key_file.clone().unwrap_or_default(),
        },
        TlsMode::SelfSigned => self_signed(data_dir, names)?,
    };
    let (key, fingerprint) = load_pair(&source)?;
    let resolver = Arc::new(CertResolver {
        current: RwLock::new(Arc::new(key)),
        source,
        fingerprint: RwLock::new(fingerprint),
    });
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(resolver.clone());
    Ok(Some((server, resolver)))
}

/// For `config check`: the certificate and key files of `tls.mode = "files"` can be read
/// and belong together.
pub fn check_files(config: &TlsConfig) -> Result<(), TlsError> {
    if config.mode != TlsMode::Files {
        return Ok(());
    }
    load_pair(&Source {
        cert: config.cert_file.clone().unwrap_or_default(),
        key: config.key_file.clone().unwrap_or_default(),
    })
    .map(|_| ())
}

/// Makes `data_dir/tls/{cert,key}.pem` on first use; reuses them afterwards while they cover
/// every name asked for (a new public URL or `tls.names` entry makes a new pair).
fn self_signed(data_dir: &Path, names: &[String]) -> Result<Source, TlsError> {
    let dir = data_dir.join("tls");
    let source = Source {
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    };
    if source.cert.exists() && source.key.exists() {
        match missing_name(&source.cert, names) {
            None => return Ok(source),
            Some(name) => tracing::warn!(
                name,
                "the self-signed certificate does not cover this name: making a new one"
            ),
        }
    }
    std::fs::create_dir_all(&dir).map_err(|e| TlsError::Write {
        path: dir.clone(),
        source: e,
    })?;
    let mut all: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    for n in names {
        if !n.is_empty() && !all.contains(n) {
            all.push(n.clone());
        }
    }
    let generated =
        rcgen::generate_simple_self_signed(all).map_err(|e| TlsError::Generate(e.to_string()))?;
    let _ = std::fs::remove_file(&source.key);
    crate::crypto::write_private_file(
        &source.key,
        generated.signing_key.serialize_pem().as_bytes(),
    )
    .map_err(|e| TlsError::Write {
        path: source.key.clone(),
        source: e,
    })?;
    std::fs::write(&source.cert, generated.cert.pem()).map_err(|e| TlsError::Write {
        path: source.cert.clone(),
        source: e,
    })?;
    Ok(source)
}

/// A name of `names` the certificate in `cert` is not valid for (`None` when it covers all,
/// or cannot be read: loading it reports that).
pub fn missing_name(cert: &Path, names: &[String]) -> Option<String> {
    let der = CertificateDer::pem_file_iter(cert).ok()?.next()?.ok()?;
    let cert = webpki::EndEntityCert::try_from(&der).ok()?;
    names
        .iter()
        .filter(|n| !n.is_empty())
        .find(|n| {
            rustls_pki_types::ServerName::try_from(n.as_str())
                .is_ok_and(|sn| cert.verify_is_valid_for_subject_name(&sn).is_err())
        })
        .cloned()
}

fn load_pair(source: &Source) -> Result<(CertifiedKey, String), TlsError> {
    let cert_err = |reason: String| TlsError::Cert {
        path: source.cert.clone(),
        reason,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&source.cert)
        .map_err(|e| cert_err(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| cert_err(e.to_string()))?;
    let leaf = certs
        .first()
        .ok_or_else(|| cert_err("no PEM certificate found".into()))?;
    let fingerprint = crate::crypto::sha256(leaf.as_ref())
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":");
    let key = PrivateKeyDer::from_pem_file(&source.key).map_err(|e| TlsError::Key {
        path: source.key.clone(),
        reason: e.to_string(),
    })?;
    let signing =
        rustls::crypto::aws_lc_rs::sign::any_supported_type(&key).map_err(|e| TlsError::Key {
            path: source.key.clone(),
            reason: e.to_string(),
        })?;
    let certified = CertifiedKey::new(certs, signing);
    certified.keys_match().map_err(|e| TlsError::Key {
        path: source.key.clone(),
        reason: format!("does not match the certificate: {e}"),
    })?;
    Ok((certified, fingerprint))
}
