//! The listener's TLS certificate: readable, matching its key, valid now and for a while, and
//! for the public URL's host. Blocking (reads files).

use std::path::Path;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use url::Url;

use crate::config::{Config, TlsMode};

use super::discovery;
use super::report::{Check, Status};

/// A certificate that expires sooner than this is worth a warning.
const RENEW_WITHIN_DAYS: i64 = 14;

/// The leaf certificate's validity (`notBefore`, `notAfter`) as Unix seconds.
pub fn validity(pem: &Path) -> Result<(i64, i64), String> {
    let der = CertificateDer::pem_file_iter(pem)
        .map_err(|e| e.to_string())?
        .next()
        .ok_or("no PEM certificate in it")?
        .map_err(|e| e.to_string())?;
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
        .map_err(|e| format!("not an X.509 certificate: {e}"))?;
    let v = cert.validity();
    Ok((v.not_before.timestamp(), v.not_after.timestamp()))
}

/// Judges a validity period at `now`: expired or not yet valid fail, close to its end warns.
pub fn judge_validity(not_before: i64, not_after: i64, now: i64) -> (Status, String) {
    let until = crate::domain::rfc3339(not_after);
    if now >= not_after {
        (Status::Fail, format!("expired at {until}"))
    } else if now < not_before {
        (
            Status::Fail,
            format!(
                "not valid before {} (is this machine's clock right?)",
                crate::domain::rfc3339(not_before)
            ),
        )
    } else {
        let days = (not_after - now) / 86_400;
        let status = if days < RENEW_WITHIN_DAYS {
            Status::Warn
        } else {
            Status::Ok
        };
        (status, format!("valid until {until} ({days} days)"))
    }
}

fn host_of(public_url: &str) -> Option<String> {
    Url::parse(public_url)
        .ok()?
        .host_str()
        .map(|h| h.trim_matches(['[', ']']).to_owned())
}

pub fn check(config: &Config, public_url: &str, now: i64) -> Check {
    match config.tls.mode {
        TlsMode::Off => plain(public_url),
        TlsMode::SelfSigned => self_signed(config, public_url, now),
        TlsMode::Files => files(config, public_url, now),
    }
}

fn plain(public_url: &str) -> Check {
    match Url::parse(public_url) {
        Ok(u) if u.scheme() == "https" => Check::ok(
            "tls",
            format!("off here; the public URL {public_url} is https (a proxy terminates TLS)"),
        ),
        Ok(u) if discovery::is_secure(&u) => Check::ok("tls", "off (this machine only)"),
        _ => Check::warn(
            "tls",
            format!(
                "off, and the public URL {public_url} is plain http: MCP clients require https beyond this machine"
            ),
            "set tls.mode, or put a proxy that terminates TLS in front and an https server.public_url",
        ),
    }
}

fn self_signed(config: &Config, public_url: &str, now: i64) -> Check {
    let cert = config.server.data_dir.join("tls/cert.pem");
    if !cert.exists() {
        return Check::warn(
            "tls",
            "self-signed, not made yet (the first start makes it)",
            "start the server once",
        );
    }
    let fix = format!(
        "for MCP clients, use tls.mode = \"files\" with a certificate from a CA they trust, or give them {}",
        cert.display()
    );
    let period = match validity(&cert) {
        Ok((nb, na)) => judge_validity(nb, na, now),
        Err(e) => return Check::fail("tls", format!("{}: {e}", cert.display()), fix),
    };
    let mut message = format!(
        "self-signed ({}), {}: MCP clients reject it unless they are given it",
        cert.display(),
        period.1
    );
    if let Some(name) = host_of(public_url).and_then(|h| crate::tls::missing_name(&cert, &[h])) {
        message.push_str(&format!(
            "; it does not cover {name} yet (the next start makes one that does)"
        ));
    }
    if period.0 == Status::Fail {
        return Check::fail("tls", message, "delete it; the next start makes a new one");
    }
    Check::warn("tls", message, fix)
}

fn files(config: &Config, public_url: &str, now: i64) -> Check {
    let fix_files = "point tls.cert_file and tls.key_file at a readable PEM chain and its key";
    if let Err(e) = crate::tls::check_files(&config.tls) {
        return Check::fail("tls", e.to_string(), fix_files);
    }
    let cert = config.tls.cert_file.clone().unwrap_or_default();
    let (status, period) = match validity(&cert) {
        Ok((nb, na)) => judge_validity(nb, na, now),
        Err(e) => return Check::fail("tls", format!("{}: {e}", cert.display()), fix_files),
    };
    let uncovered = host_of(public_url).and_then(|h| crate::tls::missing_name(&cert, &[h]));
    let message = format!("{}: {period}", cert.display());
    match (status, uncovered) {
        (_, Some(name)) => Check::fail(
            "tls",
            format!("{message}, but not for {name}, the public URL's host: clients refuse it"),
            format!(
                "get a certificate that names {name}, or set server.public_url to a name it covers"
            ),
        ),
        (Status::Fail, None) => Check::fail(
            "tls",
            message,
            "renew the certificate, then `kill -HUP` the server (it reloads the files)",
        ),
        (Status::Warn, None) => Check::warn(
            "tls",
            message,
            "renew it soon, then `kill -HUP` the server (it reloads the files)",
        ),
        (Status::Ok, None) => Check::ok("tls", message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validity_is_judged_against_now() {
        let day = 86_400;
        let now = 1_800_000_000;
        assert_eq!(judge_validity(now - day, now + 90 * day, now).0, Status::Ok);
        let (s, m) = judge_validity(now - day, now + 3 * day, now);
        assert_eq!((s, m.contains("(3 days)")), (Status::Warn, true));
        let (s, m) = judge_validity(now - 9 * day, now - day, now);
        assert_eq!((s, m.starts_with("expired at")), (Status::Fail, true));
        let (s, m) = judge_validity(now + day, now + 9 * day, now);
        assert_eq!((s, m.contains("clock")), (Status::Fail, true));
    }

    fn cert_file(dir: &Path, names: &[&str], days: (i32, i32)) -> std::path::PathBuf {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(
            names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>(),
        )
        .expect("params");
        let (y, m, d) = ymd_from_now(days.0);
        params.not_before = rcgen::date_time_ymd(y, m, d);
        let (y, m, d) = ymd_from_now(days.1);
        params.not_after = rcgen::date_time_ymd(y, m, d);
        let cert = params.self_signed(&key).expect("cert");
        let path = dir.join("cert.pem");
        std::fs::write(&path, cert.pem()).expect("write");
        std::fs::write(dir.join("key.pem"), key.serialize_pem()).expect("write key");
        path
    }

    /// The date `days` from now.
    fn ymd_from_now(days: i32) -> (i32, u8, u8) {
        let secs = crate::domain::now() + i64::from(days) * 86_400;
        let s = crate::domain::rfc3339(secs);
        let num = |a: usize, b: usize| s[a..b].parse::<u8>().expect("number");
        (s[0..4].parse().expect("year"), num(5, 7), num(8, 10))
    }

    #[test]
    fn a_certificate_file_is_read_judged_and_matched_to_the_public_host() {
        let dir = tempfile::tempdir().expect("tmp");
        let cert = cert_file(dir.path(), &["mcp.example.com"], (-1, 60));
        let (nb, na) = validity(&cert).expect("validity");
        assert!(nb < na);
        let mut config = Config::default();
        config.tls.mode = TlsMode::Files;
        config.tls.cert_file = Some(cert.clone());
        config.tls.key_file = Some(dir.path().join("key.pem"));
        let now = crate::domain::now();
        let fine = check(&config, "https://mcp.example.com", now);
        assert_eq!(fine.status, Status::Ok, "{fine:?}");
        let other = check(&config, "https://other.example.com", now);
        assert_eq!(other.status, Status::Fail, "{other:?}");
        assert!(other.message.contains("other.example.com"), "{other:?}");
        let expiring = check(&config, "https://mcp.example.com", now + 50 * 86_400);
        assert_eq!(expiring.status, Status::Warn, "{expiring:?}");
        std::fs::write(&cert, "not a certificate").expect("write");
        assert_eq!(
            check(&config, "https://mcp.example.com", now).status,
            Status::Fail
        );
        assert!(validity(&cert).is_err());
    }
}
