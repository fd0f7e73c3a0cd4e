//! How the running server is reached: its listener, its public URL (reachable from here, and
//! the issuer clients will see there), and this machine's clock against the clocks of the
//! servers that answered.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::HeaderMap;

use crate::config::{AuthMode, Config, TlsMode};

use super::discovery::Doc;
use super::http::{Answer, cause, is_certificate_error};
use super::report::Check;

const TIMEOUT: Duration = Duration::from_secs(10);

/// A clock within this of the others' is fine; beyond `CLOCK_FAIL`, tokens break (the front
/// door allows 60 s of leeway).
const CLOCK_WARN: i64 = 30;
const CLOCK_FAIL: i64 = 60;

/// How far ahead of this machine's clock the answer's `Date` is, in seconds.
pub fn date_skew(headers: &HeaderMap) -> Option<i64> {
    let date = headers.get(reqwest::header::DATE)?.to_str().ok()?;
    let remote = httpdate::parse_http_date(date).ok()?;
    let secs = |t: SystemTime| match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    };
    Some(secs(remote) - secs(SystemTime::now()))
}

/// Judges this machine's clock from the skews others' `Date` headers show: by the middle one
/// (one remote with a wrong clock does not make this one wrong).
pub fn judge_clock(samples: &[(String, i64)]) -> Check {
    if samples.is_empty() {
        return Check::ok(
            "clock",
            "not compared: no other server answered with a Date",
        );
    }
    let mut sorted: Vec<&(String, i64)> = samples.iter().collect();
    sorted.sort_by_key(|(_, s)| *s);
    let (_, median) = sorted[(sorted.len() - 1) / 2];
    let sources: Vec<&str> = samples.iter().map(|(s, _)| s.as_str()).collect();
    let off = median.abs();
    let direction = if *median > 0 { "behind" } else { "ahead of" };
    let message = format!("{off} s {direction} the clocks of {}", sources.join(", "));
    let fix = "synchronise the clock (NTP: timedatectl set-ntp true, or chrony)";
    if off > CLOCK_FAIL {
        Check::fail(
            "clock",
            format!("{message}: tokens look expired or not yet valid elsewhere"),
            fix,
        )
    } else if off > CLOCK_WARN {
        Check::warn("clock", message, fix)
    } else {
        Check::ok("clock", format!("within {off} s of {}", sources.join(", ")))
    }
}

/// The listener's own URL: its address, on loopback when it is unspecified.
pub fn listener_url(config: &Config, mut addr: std::net::SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        let lo: std::net::IpAddr = if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        };
        addr.set_ip(lo);
    }
    let scheme = if config.tls.mode == TlsMode::Off {
        "http"
    } else {
        "https"
    };
    format!("{scheme}://{addr}")
}

async fn get(client: &reqwest::Client, url: &str) -> Result<(Answer, Option<i64>), String> {
    let res = client.get(url).send().await.map_err(|e| cause(&e))?;
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let skew = date_skew(&headers);
    let body = res.bytes().await.map_err(|e| cause(&e))?.to_vec();
    Ok((
        Answer {
            status,
            headers,
            body,
        },
        skew,
    ))
}

/// The listener and the public URL; the clock samples gathered on the way.
/// The clients of these checks, built before any runtime (they read certificate files).
pub struct Clients {
    /// For the listener, this machine's own (its certificate may be self-signed).
    local: Result<reqwest::Client, String>,
    /// As MCP clients reach the public URL.
    public: Result<reqwest::Client, String>,
}

impl Clients {
    /// Blocking.
    pub fn new(config: &Config) -> Clients {
        let local = reqwest::Client::builder()
            .danger_accept_invalid_certs(true)
            .timeout(TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .map_err(|e| e.to_string());
        Clients {
            local,
            public: public_client(config),
        }
    }
}

/// `bound`: where the running server listens (server.listen, unless `serve --listen` said).
pub async fn check(
    config: &Config,
    clients: &Clients,
    bound: std::net::SocketAddr,
    public_url: &str,
) -> (Vec<Check>, Vec<(String, i64)>) {
    let mut checks = Vec::new();
    let mut dates = Vec::new();
    let listener = listener_url(config, bound);
    checks.push(listener_check(config, clients, bound, &listener).await);
    let client = match &clients.public {
        Ok(c) => c,
        Err(e) => {
            checks.push(Check::fail(
                "public_url",
                e.clone(),
                "fix outbound.ca_files",
            ));
            return (checks, dates);
        }
    };
    match public_health(client, public_url, &listener).await {
        Ok((check, skew)) => {
            dates.extend(skew.map(|s| (public_url.to_owned(), s)));
            checks.push(check);
        }
        Err(unreached) => {
            checks.push(unreached);
            return (checks, dates);
        }
    }
    if config.auth.mode == AuthMode::Managed {
        checks.push(issuer_check(client, public_url).await);
    }
    (checks, dates)
}

/// The listener answers /v1/health, asked on this machine.
async fn listener_check(
    config: &Config,
    clients: &Clients,
    bound: std::net::SocketAddr,
    listener: &str,
) -> Check {
    let elsewhere = if bound == config.server.listen {
        String::new()
    } else {
        format!(
            " (not server.listen {} as read here: started with --listen, or in another environment)",
            config.server.listen
        )
    };
    match &clients.local {
        Ok(c) => match get(c, &format!("{listener}/v1/health")).await {
            Ok((a, _)) if a.status == 200 => Check::ok(
                "listener",
                format!("{listener} answers /v1/health{elsewhere}"),
            ),
            Ok((a, _)) => Check::fail(
                "listener",
                format!("{listener}/v1/health answers HTTP {}", a.status),
                "see the server's log (journalctl -u ezforge, or its stderr)",
            ),
            Err(e) => Check::fail(
                "listener",
                format!("{listener}: {e}"),
                "is server.listen the address the running server uses (serve --listen overrides it)?",
            ),
        },
        Err(e) => Check::fail("listener", e.clone(), "-"),
    }
}

/// Is the public URL plain http to somewhere other than this machine?
fn in_clear_beyond_this_machine(public_url: &str) -> bool {
    url::Url::parse(public_url)
        .is_ok_and(|u| u.scheme() == "http" && !crate::domain::validate::is_loopback_host(&u))
}

/// The public URL answers /v1/health, as clients reach it: the check and the clock skew its
/// Date showed; `Err` when it gave no HTTP answer (then nothing else is asked there).
async fn public_health(
    client: &reqwest::Client,
    public_url: &str,
    listener: &str,
) -> Result<(Check, Option<i64>), Check> {
    let health = format!("{public_url}/v1/health");
    match get(client, &health).await {
        Ok((a, skew)) => {
            let check = if a.status == 200 && in_clear_beyond_this_machine(public_url) {
                Check::warn(
                    "public_url",
                    format!(
                        "{public_url} answers /v1/health, over plain http beyond this machine: passwords, session cookies and tokens cross the network in clear"
                    ),
                    "serve it over https: set tls.mode, or an https server.public_url behind a proxy that terminates TLS",
                )
            } else if a.status == 200 {
                Check::ok("public_url", format!("{public_url} answers /v1/health"))
            } else {
                Check::fail(
                    "public_url",
                    format!("{health} answers HTTP {}: is that this server?", a.status),
                    format!(
                        "server.public_url must be where clients reach this server (a proxy there forwards to {listener})"
                    ),
                )
            };
            Ok((check, skew))
        }
        Err(e) => {
            let fix = if is_certificate_error(&e) {
                "clients must trust the certificate: use one from a CA they trust (tls.mode = \"files\", or at the proxy)".to_owned()
            } else {
                format!(
                    "make {public_url} reach this server (DNS, proxy, firewall), or set server.public_url to the URL that does"
                )
            };
            Err(Check::fail("public_url", format!("{health}: {e}"), fix))
        }
    }
}

/// The authorization server's metadata at the public URL names the public URL as its issuer.
async fn issuer_check(client: &reqwest::Client, public_url: &str) -> Check {
    let meta = format!("{public_url}/.well-known/oauth-authorization-server");
    let doc = match get(client, &meta).await {
        Ok((a, _)) => a.doc(),
        Err(e) => Doc::Bad(e),
    };
    let said = doc
        .found()
        .and_then(|d| d.get("issuer"))
        .and_then(|v| v.as_str());
    match said {
        Some(i) if i == public_url => {
            Check::ok("public_url.issuer", format!("{meta} names the issuer {i}"))
        }
        Some(i) => Check::fail(
            "public_url.issuer",
            format!(
                "{meta} names the issuer {i}, not {public_url}: clients reject tokens and metadata that disagree"
            ),
            "set server.public_url to the URL clients use (scheme, host, port), and make sure this server answers there",
        ),
        None => Check::fail(
            "public_url.issuer",
            format!("{meta}: {}", describe(&doc)),
            "make sure this server answers at server.public_url",
        ),
    }
}

fn describe(doc: &Doc) -> String {
    match doc {
        Doc::Found(_) => "no issuer in it".into(),
        d => d.describe(),
    }
}

/// A client as MCP clients reach the public URL: certificates verified, with the CA files
/// the config trusts, and the self-signed certificate when that is what is served.
fn public_client(config: &Config) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .redirect(reqwest::redirect::Policy::none());
    let mut pems = config.outbound.ca_files.clone();
    if config.tls.mode == TlsMode::SelfSigned {
        pems.push(config.server.data_dir.join("tls/cert.pem"));
    }
    for path in pems.iter().filter(|p| p.exists()) {
        let pem = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        for cert in reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("{}: {e}", path.display()))?
        {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder.build().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_is_flagged_only_beyond_this_machine() {
        assert!(in_clear_beyond_this_machine("http://ezforge.corp.example"));
        assert!(in_clear_beyond_this_machine("http://10.0.0.5:8080"));
        assert!(!in_clear_beyond_this_machine("http://127.0.0.1:8080"));
        assert!(!in_clear_beyond_this_machine("http://localhost:8080"));
        assert!(!in_clear_beyond_this_machine(
            "https://ezforge.corp.example"
        ));
    }
    use crate::cli::doctor::report::Status;

    #[test]
    fn the_clock_is_judged_by_the_middle_of_the_others() {
        let s = |v: &[i64]| -> Vec<(String, i64)> {
            v.iter()
                .enumerate()
                .map(|(i, x)| (format!("s{i}"), *x))
                .collect()
        };
        assert_eq!(judge_clock(&[]).status, Status::Ok);
        assert_eq!(judge_clock(&s(&[0, 1, 900])).status, Status::Ok);
        assert_eq!(judge_clock(&s(&[45])).status, Status::Warn);
        let behind = judge_clock(&s(&[400, 420]));
        assert_eq!(behind.status, Status::Fail);
        assert!(behind.message.starts_with("400 s behind"), "{behind:?}");
        assert!(judge_clock(&s(&[-400])).message.contains("ahead of"));
    }

    #[test]
    fn dates_give_the_skew_and_the_listener_is_on_loopback() {
        let mut h = HeaderMap::new();
        let soon = SystemTime::now() + Duration::from_secs(120);
        h.insert(
            reqwest::header::DATE,
            httpdate::fmt_http_date(soon).parse().expect("header"),
        );
        let skew = date_skew(&h).expect("skew");
        assert!((119..=121).contains(&skew), "{skew}");
        h.insert(reqwest::header::DATE, "yesterday".parse().expect("header"));
        assert_eq!(date_skew(&h), None);
        let mut config = Config::default();
        config.tls.mode = TlsMode::SelfSigned;
        let addr = |s: &str| s.parse().expect("addr");
        assert_eq!(
            listener_url(&config, addr("0.0.0.0:9000")),
            "https://127.0.0.1:9000"
        );
        assert_eq!(
            listener_url(&config, addr("[::]:9000")),
            "https://[::1]:9000"
        );
    }
}
