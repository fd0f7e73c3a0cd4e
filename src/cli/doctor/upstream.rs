//! What ezforge reaches out to: each server's upstream URL (under the same destination rules
//! and TLS settings as the front door) and each BYOA issuer (through the same outbound client
//! as the server's JWKS fetches).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use url::Url;

use crate::config::{ByoaConfig, Config};
use crate::outbound::{FetchError, Outbound};
use crate::shared::destinations::{Destinations, SystemResolver};
use crate::shared::jwks;
use crate::store::servers::ServerRow;

use super::discovery;
use super::report::Check;

/// Checks run at once, at most.
const CONCURRENCY: usize = 8;
/// Past the connection, how long an upstream may take to answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// A server's upstream as the front door would reach it: refused by the destination rules,
/// unresolvable, refusing connections, failing TLS — or answering (any HTTP status will do).
/// Also gives the upstream's `Date`, for the clock check.
async fn upstream(
    destinations: &Destinations,
    tls: &rustls::ClientConfig,
    connect_timeout: Duration,
    slug: &str,
    raw: &str,
) -> (Check, Option<(String, i64)>) {
    let id = format!("upstream.{slug}");
    let repoint = format!(
        "start it, or point the server where it runs: ezforge deploy {slug} --upstream URL"
    );
    match resolve_allowed(destinations, connect_timeout, &id, raw, &repoint).await {
        Ok(target) => probe(tls, connect_timeout, &id, slug, raw, &repoint, &target).await,
        Err(check) => (check, None),
    }
}

/// Where the front door would connect for an upstream URL.
struct Target {
    url: Url,
    /// The host, when it is a name (not an address literal).
    name: Option<String>,
    /// The first of its addresses the destination rules allow.
    addr: SocketAddr,
}

/// The upstream URL parsed, and its host resolved to an address the destination rules allow;
/// else the failed check that says which step refused it.
async fn resolve_allowed(
    destinations: &Destinations,
    connect_timeout: Duration,
    id: &str,
    raw: &str,
    repoint: &str,
) -> Result<Target, Check> {
    let url = Url::parse(raw)
        .map_err(|e| Check::fail(id, format!("{raw:?} is not a URL: {e}"), repoint))?;
    if let Err(r) = destinations.check_url(&url) {
        return Err(refused(id, raw, r.to_string()));
    }
    let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
        return Err(Check::fail(id, format!("{raw} names no host"), repoint));
    };
    let host = host.trim_matches(['[', ']']).to_owned();
    let name = matches!(url.host(), Some(url::Host::Domain(_))).then_some(host.as_str());
    let addrs = lookup(connect_timeout, id, raw, &host, port).await?;
    let mut refusal = None;
    let allowed = addrs
        .iter()
        .copied()
        .find(|a| match destinations.check_addr(name, *a) {
            Ok(()) => true,
            Err(r) => {
                refusal.get_or_insert(r);
                false
            }
        });
    let Some(addr) = allowed else {
        let why = refusal.map_or_else(|| format!("{host} has no address"), |r| r.to_string());
        return Err(refused(id, raw, why));
    };
    let name = name.map(str::to_owned);
    Ok(Target { url, name, addr })
}

/// The failed check for an upstream the destination rules refuse.
fn refused(id: &str, raw: &str, why: String) -> Check {
    Check::fail(
        id,
        format!("{raw}: {why}; the front door refuses it too"),
        "point the server at an allowed address, or lift the rule (gateway.upstream_allow, gateway.upstream_deny)",
    )
}

/// The host's addresses, within the connect timeout.
async fn lookup(
    connect_timeout: Duration,
    id: &str,
    raw: &str,
    host: &str,
    port: u16,
) -> Result<Vec<SocketAddr>, Check> {
    match tokio::time::timeout(connect_timeout, tokio::net::lookup_host((host, port))).await {
        Ok(Ok(a)) => Ok(a.collect()),
        Ok(Err(e)) => Err(Check::fail(
            id,
            format!("{raw}: cannot resolve {host}: {e}"),
            "check the name, and this machine's DNS",
        )),
        Err(_) => Err(Check::fail(
            id,
            format!("{raw}: resolving {host} timed out"),
            "check this machine's DNS",
        )),
    }
}

/// One request to the address just checked, as the front door connects (no proxy, no other
/// lookup): any HTTP answer is a pass.
async fn probe(
    tls: &rustls::ClientConfig,
    connect_timeout: Duration,
    id: &str,
    slug: &str,
    raw: &str,
    repoint: &str,
    target: &Target,
) -> (Check, Option<(String, i64)>) {
    let Target { url, name, addr } = target;
    let mut builder = reqwest::Client::builder()
        .use_preconfigured_tls(tls.clone())
        .connect_timeout(connect_timeout)
        .timeout(connect_timeout + ANSWER_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy();
    if let Some(n) = name {
        builder = builder.resolve(n, *addr);
    }
    let client = match builder.build() {
        Ok(c) => c,
        Err(e) => {
            return (
                Check::fail(id, format!("cannot build a client: {e}"), repoint),
                None,
            );
        }
    };
    let sent = client
        .get(url.clone())
        .header(
            reqwest::header::ACCEPT,
            "application/json, text/event-stream",
        )
        .send()
        .await;
    match sent {
        Ok(res) => {
            let date =
                super::served::date_skew(res.headers()).map(|s| (format!("upstream {slug}"), s));
            (
                Check::ok(
                    id,
                    format!("{raw} answers (HTTP {}, {addr})", res.status().as_u16()),
                ),
                date,
            )
        }
        Err(e) => (
            Check::fail(id, format!("{raw}: {}", super::http::cause(&e)), repoint),
            None,
        ),
    }
}

/// How upstreams are reached, made before any runtime (the system's CA certificates are read).
pub struct Reach {
    destinations: Result<Destinations, String>,
    tls: rustls::ClientConfig,
    connect_timeout: Duration,
}

impl Reach {
    /// Blocking.
    pub fn new(config: &Config) -> Reach {
        Reach {
            destinations: config
                .gateway
                .destination_rules()
                .map(|rules| {
                    Destinations::new(rules, config.own_listeners(), Arc::new(SystemResolver))
                })
                .map_err(|e| e.to_string()),
            tls: (*crate::shared::upstream::tls_config()).clone(),
            connect_timeout: config.gateway.upstream_connect_timeout.0,
        }
    }
}

/// Every server with an upstream URL. Gives the checks, and the upstreams' clocks.
pub async fn upstreams(reach: &Reach, servers: &[ServerRow]) -> (Vec<Check>, Vec<(String, i64)>) {
    let with_url: Vec<(&str, &str)> = servers
        .iter()
        .filter_map(|s| Some((s.slug.as_str(), s.upstream_url.as_deref()?)))
        .collect();
    if with_url.is_empty() {
        return (
            vec![Check::ok("upstream", "no server with an upstream URL")],
            Vec::new(),
        );
    }
    let destinations = match &reach.destinations {
        Ok(d) => d,
        Err(e) => {
            return (
                vec![Check::fail(
                    "upstream",
                    format!("the destination rules: {e}"),
                    "fix gateway.upstream_allow / gateway.upstream_deny",
                )],
                Vec::new(),
            );
        }
    };
    let results: Vec<(Check, Option<(String, i64)>)> = futures_util::stream::iter(with_url)
        .map(|(slug, url)| upstream(destinations, &reach.tls, reach.connect_timeout, slug, url))
        .buffered(CONCURRENCY)
        .collect()
        .await;
    let mut checks = Vec::new();
    let mut dates = Vec::new();
    for (c, d) in results {
        checks.push(c);
        dates.extend(d);
    }
    (checks, dates)
}

/// The external issuers of BYOA servers: the config's default and each server's own.
pub fn byoa_issuers(config: &Config, servers: &[ServerRow]) -> Vec<ByoaConfig> {
    let mut out: Vec<ByoaConfig> = Vec::new();
    let stored = servers
        .iter()
        .filter(|s| s.auth_mode == crate::domain::kinds::ServerAuthMode::Byoa)
        .filter_map(|s| serde_json::from_str::<ByoaConfig>(s.byoa_config.as_deref()?).ok());
    let declared = config.servers.iter().filter_map(|d| d.byoa.clone());
    for b in config
        .auth
        .byoa
        .clone()
        .into_iter()
        .chain(declared)
        .chain(stored)
    {
        if !out.contains(&b) {
            out.push(b);
        }
    }
    out
}

/// Every algorithm an external issuer's tokens may be signed with.
const ALGORITHMS: [jsonwebtoken::Algorithm; 9] = {
    use jsonwebtoken::Algorithm::*;
    [
        RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA,
    ]
};

fn outbound_fix(e: &FetchError) -> &'static str {
    match e {
        FetchError::Forbidden(_) => {
            "an issuer on a private address needs outbound.allow_private_addresses = true"
        }
        FetchError::CaFile { .. } => "fix outbound.ca_files",
        _ => {
            "check the issuer's URLs in the BYOA config, and that it is reachable from this machine (a private CA goes in outbound.ca_files)"
        }
    }
}

/// One issuer: its JWKS (which the front door verifies tokens with) and its discovery
/// metadata (which MCP clients find it by).
async fn issuer(outbound: &Outbound, b: &ByoaConfig) -> Vec<Check> {
    let jwks = match outbound.get_json(&b.jwks_uri).await {
        Ok((set, _)) => match jwks::usable_keys(&set, &ALGORITHMS) {
            Ok(n) if n > 0 => Check::ok(
                "byoa.jwks",
                format!("{}: {n} usable keys at {}", b.issuer, b.jwks_uri),
            ),
            Ok(_) => Check::fail(
                "byoa.jwks",
                format!(
                    "{}: {} has no key tokens can be verified with",
                    b.issuer, b.jwks_uri
                ),
                "publish the issuer's signing keys (RSA, EC P-256/P-384 or Ed25519) there",
            ),
            Err(e) => Check::fail(
                "byoa.jwks",
                format!("{}: {}: {e}", b.issuer, b.jwks_uri),
                "check jwks_uri in the BYOA config",
            ),
        },
        Err(e) => Check::fail(
            "byoa.jwks",
            format!("{}: {e}: tokens from it cannot be verified", b.issuer),
            outbound_fix(&e),
        ),
    };
    let discovery = match Url::parse(&b.issuer) {
        Ok(u) => discover(outbound, &b.issuer, &u).await,
        Err(e) => Check::fail(
            "byoa.discovery",
            format!("{:?} is not a URL: {e}", b.issuer),
            "fix the issuer in the BYOA config",
        ),
    };
    vec![jwks, discovery]
}

async fn discover(outbound: &Outbound, issuer: &str, url: &Url) -> Check {
    let mut seen = Vec::new();
    for (form, u) in discovery::as_locations(url) {
        match outbound.get_json(&u).await {
            Ok((doc, _)) => {
                let said = doc.get("issuer").and_then(|v| v.as_str());
                return if said == Some(issuer) {
                    Check::ok(
                        "byoa.discovery",
                        format!("{issuer}: {} metadata at {u}", form.name()),
                    )
                } else {
                    Check::fail(
                        "byoa.discovery",
                        format!(
                            "{u} says issuer {}, not {issuer}: MCP clients reject it",
                            said.unwrap_or("nothing")
                        ),
                        "set the BYOA issuer to exactly the `issuer` its metadata names",
                    )
                };
            }
            Err(e) => seen.push(e.to_string()),
        }
    }
    Check::fail(
        "byoa.discovery",
        format!(
            "{issuer}: no metadata ({}): MCP clients find the issuer through it",
            seen.join("; ")
        ),
        "check the issuer URL; `ezforge doctor <a BYOA server's URL>` shows what clients see",
    )
}

/// `outbound`: the server's own outbound client, as the config makes it.
pub async fn byoa(outbound: &Result<Outbound, FetchError>, issuers: &[ByoaConfig]) -> Vec<Check> {
    if issuers.is_empty() {
        return Vec::new();
    }
    let outbound = match outbound {
        Ok(o) => o,
        Err(e) => return vec![Check::fail("byoa", e.to_string(), "fix outbound.ca_files")],
    };
    futures_util::stream::iter(issuers)
        .map(|b| issuer(outbound, b))
        .buffered(CONCURRENCY)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .flatten()
        .collect()
}
