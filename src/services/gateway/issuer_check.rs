//! A look at a BYOA issuer when a server is switched to it: its discovery document and its
//! keys, fetched the way the front door will fetch them. What fails is a warning, not a refusal:
//! the issuer may simply not be up yet, and the operator decides.

use serde_json::Value;

use crate::config::ByoaConfig;
use crate::outbound::Outbound;

/// What is wrong with `cfg`'s issuer as seen from here; empty when nothing is.
pub async fn warnings(outbound: &Outbound, cfg: &ByoaConfig) -> Vec<String> {
    let mut out = Vec::new();
    let issuer = cfg.issuer.trim_end_matches('/');
    let mut discovery = None;
    let mut first_error = None;
    for url in discovery_urls(issuer) {
        match outbound.get_json(&url).await {
            Ok((doc, _)) => {
                discovery = Some(doc);
                break;
            }
            Err(e) => {
                first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    match discovery {
        None => out.push(format!(
            "the issuer's discovery document cannot be fetched ({})",
            first_error.unwrap_or_default()
        )),
        Some(doc) => out.extend(compare(&doc, cfg)),
    }
    match outbound.get_json(&cfg.jwks_uri).await {
        Err(e) => out.push(format!(
            "the issuer's keys cannot be fetched ({e}): every token will be refused until they can"
        )),
        Ok((jwks, _)) => {
            let keys = jwks["keys"].as_array().map_or(0, Vec::len);
            if keys == 0 {
                out.push(format!(
                    "the key set at {} holds no keys: every token will be refused",
                    cfg.jwks_uri
                ));
            }
        }
    }
    out
}

/// Looks at every BYOA server's issuer (at start and after a reload: servers the config file
/// switched to one) and writes what is wrong to that server's log and ours.
pub async fn check_all(gateway: actix_web::web::Data<super::Gateway>, outbound: Outbound) {
    use std::collections::HashMap;
    let mut by_issuer: HashMap<String, (ByoaConfig, Vec<(String, String)>)> = HashMap::new();
    for entry in gateway.registry.all() {
        if let super::registry::ServerAuth::Byoa(cfg) = &entry.auth {
            by_issuer
                .entry(format!("{}|{}", cfg.issuer, cfg.jwks_uri))
                .or_insert_with(|| (cfg.as_ref().clone(), Vec::new()))
                .1
                .push((entry.id.clone(), entry.slug.clone()));
        }
    }
    for (cfg, servers) in by_issuer.into_values() {
        let found = warnings(&outbound, &cfg).await;
        for w in &found {
            for (id, slug) in &servers {
                tracing::warn!(server = %slug, issuer = %cfg.issuer, "BYOA issuer: {w}");
                gateway
                    .hub
                    .write(id, "warn", "auth", format!("BYOA issuer: {w}"));
            }
        }
    }
}

/// Where an issuer publishes its metadata: OpenID discovery, then RFC 8414 (path-inserted for
/// an issuer with a path).
fn discovery_urls(issuer: &str) -> Vec<String> {
    let mut urls = vec![format!("{issuer}/.well-known/openid-configuration")];
    match url::Url::parse(issuer) {
        Ok(u) if u.path() != "/" && !u.path().is_empty() => {
            let origin = u.origin().ascii_serialization();
            urls.push(format!(
                "{origin}/.well-known/oauth-authorization-server{}",
                u.path().trim_end_matches('/')
            ));
        }
        _ => urls.push(format!("{issuer}/.well-known/oauth-authorization-server")),
    }
    urls
}

/// The discovery document's word against the server's settings.
fn compare(doc: &Value, cfg: &ByoaConfig) -> Vec<String> {
    let mut out = Vec::new();
    for (field, ours) in [
        ("issuer", &cfg.issuer),
        ("jwks_uri", &cfg.jwks_uri),
        ("authorization_endpoint", &cfg.authorization_endpoint),
        ("token_endpoint", &cfg.token_endpoint),
    ] {
        match doc[field].as_str() {
            Some(theirs) if theirs == ours => {}
            Some(theirs) => out.push(format!(
                "the issuer's discovery document says {field} is {theirs}, not {ours}"
            )),
            None => out.push(format!("the issuer's discovery document names no {field}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> ByoaConfig {
        ByoaConfig {
            issuer: "https://idp.example/tenant".into(),
            jwks_uri: "https://idp.example/tenant/keys".into(),
            authorization_endpoint: "https://idp.example/tenant/authorize".into(),
            token_endpoint: "https://idp.example/tenant/token".into(),
        }
    }

    #[test]
    fn a_discovery_document_that_disagrees_is_named_field_by_field() {
        let doc = serde_json::json!({
            "issuer": "https://idp.example/tenant",
            "jwks_uri": "https://idp.example/tenant/other-keys",
            "authorization_endpoint": "https://idp.example/tenant/authorize",
        });
        let w = compare(&doc, &cfg());
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].contains("jwks_uri is https://idp.example/tenant/other-keys"));
        assert!(w[1].contains("no token_endpoint"));
        assert_eq!(
            discovery_urls("https://idp.example/tenant"),
            [
                "https://idp.example/tenant/.well-known/openid-configuration",
                "https://idp.example/.well-known/oauth-authorization-server/tenant"
            ]
        );
    }
}
