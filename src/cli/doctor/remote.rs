//! `ezforge doctor URL`: what an MCP client meets at any MCP server's URL, ours or not — the
//! 401 challenge, the protected-resource metadata at every place clients look, and each
//! authorization server's metadata — judged check by check.

use std::collections::HashMap;

use futures_util::future::join_all;
use url::Url;

use super::discovery::{self, Doc};
use super::http::{self, Http};
use super::report::{Check, Report};
use super::{as_metadata, challenge, metadata};

/// At most this many authorization servers of one resource are checked.
const MAX_ISSUERS: usize = 3;

pub async fn check(http: &Http, raw: &str, insecure: bool) -> Report {
    let raw = raw.trim();
    let mut report = Report::new(raw);
    let url = match parse(raw) {
        Ok(u) => u,
        Err(c) => {
            report.push(c);
            return report;
        }
    };
    report.target = url.to_string();
    report.push(judge_url(&url));
    if insecure {
        report.push(Check::warn(
            "tls",
            "certificates are not verified (--insecure): MCP clients do verify them, and may fail where this passes",
            "use a certificate clients trust; --cacert FILE checks against a CA of your own instead",
        ));
    }
    if http::is_link_local_literal(&url) {
        return report;
    }
    let answer = match http.post_mcp(url.as_str(), &initialize()).await {
        Ok(a) => a,
        Err(e) => {
            report.push(unreachable("reach", url.as_str(), &e));
            return report;
        }
    };
    let judged = challenge::judge(
        answer.status,
        answer.header("location"),
        &answer.header_values("www-authenticate"),
        &url,
    );
    report.checks.extend(judged.checks);
    if answer.status != 401 {
        return report;
    }
    let prm_doc = protected_resource(http, &url, judged.resource_metadata, &mut report).await;
    if let Some(prm_doc) = prm_doc {
        authorization_servers(http, &prm_doc, &mut report).await;
    }
    report
}

/// The protected-resource metadata, at the place the challenge named (unless it is
/// link-local) and at the well-known places; the document a client would use, if any.
async fn protected_resource(
    http: &Http,
    url: &Url,
    mut named: Option<String>,
    report: &mut Report,
) -> Option<serde_json::Value> {
    let (inserted, root) = discovery::prm_locations(url);
    if let Some(rm) =
        named.take_if(|rm| Url::parse(rm).is_ok_and(|u| http::is_link_local_literal(&u)))
    {
        report.push(Check::fail(
            "prm.challenge",
            format!(
                "{rm} is a link-local address (cloud metadata services answer there): not fetched"
            ),
            "name the metadata's public URL in resource_metadata",
        ));
    }
    let docs = fetch_all(
        http,
        named.iter().chain(inserted.iter()).chain([&root]).cloned(),
    )
    .await;
    let doc = |u: &String| docs.get(u).cloned().unwrap_or(Doc::Missing(404));
    let (named_doc, inserted_doc, root_doc) = (
        named.as_ref().map(doc),
        inserted.as_ref().map(doc),
        doc(&root),
    );
    let prm = metadata::judge_prm(
        url,
        named.as_deref().zip(named_doc.as_ref()),
        inserted.as_deref().zip(inserted_doc.as_ref()),
        (&root, &root_doc),
    );
    report.checks.extend(prm.checks);
    prm.chosen.map(|(_, doc)| doc)
}

/// The metadata of each authorization server the resource names (at most [`MAX_ISSUERS`];
/// link-local ones are not fetched), at every place clients look.
async fn authorization_servers(http: &Http, prm_doc: &serde_json::Value, report: &mut Report) {
    for issuer in metadata::authorization_servers(prm_doc)
        .into_iter()
        .take(MAX_ISSUERS)
    {
        let Ok(issuer_url) = Url::parse(&issuer) else {
            continue;
        };
        if http::is_link_local_literal(&issuer_url) {
            report.push(Check::fail(
                "as.metadata",
                format!("{issuer} is a link-local address (cloud metadata services answer there): not fetched"),
                "name the authorization server by its public https URL",
            ));
            continue;
        }
        let forms = discovery::as_locations(&issuer_url);
        let docs = fetch_all(http, forms.iter().map(|(_, u)| u.clone())).await;
        let found: Vec<_> = forms
            .into_iter()
            .map(|(form, u)| {
                let d = docs.get(&u).cloned().unwrap_or(Doc::Missing(404));
                (form, u, d)
            })
            .collect();
        let (checks, _) = as_metadata::judge_authorization_server(&issuer, &found);
        report.checks.extend(checks);
    }
}

fn parse(raw: &str) -> Result<Url, Check> {
    let bad = |why: String| {
        Check::fail(
            "url",
            why,
            "give the MCP server's full URL, e.g. https://mcp.example.com/mcp",
        )
    };
    let url = Url::parse(raw).map_err(|e| bad(format!("{raw:?} is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(bad(format!("{raw:?} is not an http(s) URL")));
    }
    if url.fragment().is_some() || !url.username().is_empty() || url.password().is_some() {
        return Err(bad(format!(
            "{raw:?} has a fragment or credentials, which a resource URL must not"
        )));
    }
    Ok(url)
}

fn judge_url(url: &Url) -> Check {
    if http::is_link_local_literal(url) {
        Check::fail(
            "url",
            format!(
                "{url} is a link-local address, where cloud metadata services answer: not checked"
            ),
            "give the MCP server's own URL",
        )
    } else if url.scheme() == "https" {
        Check::ok("url", "https")
    } else if discovery::is_secure(url) {
        Check::ok(
            "url",
            "http to this machine: fine for local use (MCP clients require https elsewhere)",
        )
    } else {
        Check::fail(
            "url",
            "plain http beyond this machine: MCP clients refuse it, and tokens would travel in clear",
            "serve it over https (tls.mode = \"files\", or a proxy that terminates TLS)",
        )
    }
}

/// A request that got no HTTP answer: what happened, and what to do about it.
pub fn unreachable(id: &str, url: &str, cause: &str) -> Check {
    let fix = if http::is_certificate_error(cause) {
        "use a certificate clients trust (this check verifies it as they do); to look past it: --cacert FILE, or --insecure"
    } else {
        "check the URL, its DNS name and that the server is up and reachable from here"
    };
    Check::fail(id, format!("{url}: {cause}"), fix)
}

/// An MCP `initialize` request, as a client's first.
fn initialize() -> serde_json::Value {
    serde_json::json!({
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": { "name": "ezforge-doctor", "version": env!("CARGO_PKG_VERSION") }
        }
    })
}

/// GETs each distinct URL once, concurrently.
async fn fetch_all(http: &Http, urls: impl Iterator<Item = String>) -> HashMap<String, Doc> {
    let mut unique: Vec<String> = Vec::new();
    for u in urls {
        if !unique.contains(&u) {
            unique.push(u);
        }
    }
    let answers = join_all(unique.iter().map(|u| http.get(u))).await;
    unique
        .into_iter()
        .zip(answers)
        .map(|(u, a)| {
            let d = match a {
                Ok(a) => a.doc(),
                Err(e) => Doc::Bad(e),
            };
            (u, d)
        })
        .collect()
}
