//! `ezforge servers create|list|get|delete|update` and `ezforge servers clients add|list|remove`.

use anyhow::{Context, bail};
use serde_json::{Map, Value, json};

use super::api::{Api, seg};
use super::args::UpdateArgs;
use super::ctx::{Ctx, split_scopes};
use super::output::{cell, pairs, print_json, table, text};

pub async fn create(
    ctx: &Ctx,
    name: &str,
    project: Option<&str>,
    slug: Option<&str>,
    upstream: Option<&str>,
) -> anyhow::Result<()> {
    let api = ctx.api()?;
    let project = match project {
        Some(p) => p.to_owned(),
        None => only_project(&api).await?,
    };
    let mut body = Map::new();
    body.insert("name".into(), json!(name));
    if let Some(s) = slug {
        body.insert("slug".into(), json!(s));
    }
    if let Some(u) = upstream {
        body.insert("upstreamUrl".into(), json!(u));
    }
    let s = api
        .post(
            &format!("/projects/{}/servers", seg(&project)),
            &Value::Object(body),
        )
        .await?;
    if ctx.json {
        return print_json(&s);
    }
    println!("Created server {}.", cell(&s, "name"));
    print!(
        "{}",
        pairs(&[
            ("id", cell(&s, "id")),
            ("slug", cell(&s, "slug")),
            ("url", cell(&s, "url")),
            ("status", cell(&s, "status")),
            ("auth mode", cell(&s, "authMode")),
        ])
    );
    Ok(())
}

/// The project to use when none is named: the only one the caller can see.
async fn only_project(api: &Api) -> anyhow::Result<String> {
    let projects = api.list("/projects").await?;
    match projects.as_slice() {
        [p] => p
            .get("id")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .context("the project in the server's answer has no id"),
        [] => bail!("no project yet: create one with `ezforge project create NAME`"),
        _ => bail!(
            "you can see {} projects: name one with --project (id or slug)",
            projects.len()
        ),
    }
}

pub async fn list(ctx: &Ctx, project: Option<&str>) -> anyhow::Result<()> {
    let api = ctx.api()?;
    let path = match project {
        Some(p) => format!("/projects/{}/servers", seg(p)),
        None => "/servers".to_owned(),
    };
    let servers = api.list(&path).await?;
    if ctx.json {
        return print_json(&Value::Array(servers));
    }
    if servers.is_empty() {
        println!("No servers. Create one with `ezforge servers create NAME --project P`.");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = servers
        .iter()
        .map(|s| {
            vec![
                cell(s, "id"),
                cell(s, "slug"),
                cell(s, "name"),
                cell(s, "status"),
                cell(s, "authMode"),
                cell(s, "url"),
            ]
        })
        .collect();
    print!(
        "{}",
        table(&["ID", "SLUG", "NAME", "STATUS", "AUTH", "URL"], &rows)
    );
    Ok(())
}

/// The fields `servers get` shows first, in this order; the rest follow as they come.
const SERVER_FIELDS: &[(&str, &str)] = &[
    ("id", "id"),
    ("name", "name"),
    ("slug", "slug"),
    ("projectId", "project"),
    ("status", "status"),
    ("url", "url"),
    ("authMode", "auth mode"),
    ("upstreamUrl", "upstream"),
];

pub async fn get(ctx: &Ctx, server: &str) -> anyhow::Result<()> {
    let api = ctx.api()?;
    let s = api.get(&format!("/servers/{}", seg(server))).await?;
    if ctx.json {
        return print_json(&s);
    }
    let mut items: Vec<(&str, String)> = SERVER_FIELDS
        .iter()
        .map(|(k, label)| (*label, cell(&s, k)))
        .collect();
    if let Value::Object(map) = &s {
        for (k, v) in map {
            if !SERVER_FIELDS.iter().any(|(f, _)| f == k) {
                items.push((k.as_str(), text(v)));
            }
        }
    }
    // The BYOA settings are behind a session-only endpoint; an API key sees the mode only.
    let byoa = if api.is_session() && cell(&s, "authMode") == "byoa" {
        api.get(&format!("/servers/{}/auth", seg(server)))
            .await
            .ok()
    } else {
        None
    };
    if let Some(cfg) = byoa.as_ref().and_then(|a| a.get("byoaConfig")) {
        items.push(("byoa issuer", cell(cfg, "issuer")));
        items.push(("byoa jwks uri", cell(cfg, "jwksUri")));
        items.push(("byoa authorization", cell(cfg, "authorizationEndpoint")));
        items.push(("byoa token", cell(cfg, "tokenEndpoint")));
    }
    println!("Server {}", cell(&s, "name"));
    print!("{}", pairs(&items));
    Ok(())
}

pub async fn delete(ctx: &Ctx, server: &str) -> anyhow::Result<()> {
    let api = ctx.api()?;
    api.delete(&format!("/servers/{}", seg(server))).await?;
    if !ctx.json {
        println!("Deleted server {server}.");
    }
    Ok(())
}

pub async fn update(ctx: &Ctx, args: &UpdateArgs) -> anyhow::Result<()> {
    let mut general = Map::new();
    if let Some(n) = &args.name {
        general.insert("name".into(), json!(n));
    }
    if let Some(u) = &args.upstream {
        general.insert("upstreamUrl".into(), json!(u));
    }
    let auth = auth_body(args)?;
    if general.is_empty() && auth.is_none() {
        bail!("nothing to change: pass --name, --upstream or --auth-mode");
    }
    // The auth config is session-only: refuse before changing anything else.
    if auth.is_some() && ctx.api_key.is_some() {
        bail!(
            "--auth-mode needs a signed-in session (a server's auth config cannot be changed with an API key); nothing was changed"
        );
    }
    let api = ctx.api()?;
    let mut target = args.server.clone();
    let mut server = None;
    if !general.is_empty() {
        let s = api
            .patch(
                &format!("/servers/{}", seg(&target)),
                &Value::Object(general),
            )
            .await?;
        // Address the auth change by id: a rename must not lose the server.
        if let Some(id) = s.get("id").and_then(Value::as_str) {
            target = id.to_owned();
        }
        server = Some(s);
    }
    let auth = match auth {
        Some(body) => Some(
            api.patch(&format!("/servers/{}/auth", seg(&target)), &body)
                .await
                .map_err(|e| {
                    if server.is_some() {
                        e.context("the name and upstream were changed, but the auth change failed")
                    } else {
                        e
                    }
                })?,
        ),
        None => None,
    };
    if ctx.json {
        return print_json(&match (server, auth) {
            (Some(s), None) => s,
            (None, Some(a)) => a,
            (s, a) => json!({"server": s, "auth": a}),
        });
    }
    println!("Updated server {}.", args.server);
    let mut items = Vec::new();
    if let Some(s) = &server {
        items.push(("name", cell(s, "name")));
        items.push(("upstream", cell(s, "upstreamUrl")));
    }
    if let Some(a) = &auth {
        items.push(("auth mode", cell(a, "authMode")));
        if let Some(cfg) = a.get("byoaConfig").filter(|c| !c.is_null()) {
            items.push(("byoa issuer", cell(cfg, "issuer")));
            items.push(("byoa jwks uri", cell(cfg, "jwksUri")));
            items.push(("byoa authorization", cell(cfg, "authorizationEndpoint")));
            items.push(("byoa token", cell(cfg, "tokenEndpoint")));
        }
    }
    print!("{}", pairs(&items));
    Ok(())
}

/// The `PATCH …/auth` body the flags ask for, checked for completeness before sending.
fn auth_body(args: &UpdateArgs) -> anyhow::Result<Option<Value>> {
    let flags = [
        ("--byoa-issuer", "issuer", &args.byoa_issuer),
        ("--byoa-jwks-uri", "jwksUri", &args.byoa_jwks_uri),
        (
            "--byoa-authorization-endpoint",
            "authorizationEndpoint",
            &args.byoa_authorization_endpoint,
        ),
        (
            "--byoa-token-endpoint",
            "tokenEndpoint",
            &args.byoa_token_endpoint,
        ),
    ];
    match args.auth_mode.as_deref() {
        None => Ok(None),
        Some("byoa") => {
            let missing: Vec<&str> = flags
                .iter()
                .filter(|(_, _, v)| v.is_none())
                .map(|(flag, _, _)| *flag)
                .collect();
            if !missing.is_empty() {
                bail!("--auth-mode byoa also needs {}", missing.join(", "));
            }
            let cfg: Map<String, Value> = flags
                .iter()
                .filter_map(|(_, field, v)| v.as_ref().map(|v| ((*field).to_owned(), json!(v))))
                .collect();
            Ok(Some(json!({"authMode": "byoa", "byoaConfig": cfg})))
        }
        Some(mode) => {
            if flags.iter().any(|(_, _, v)| v.is_some()) {
                bail!("the --byoa-* flags go with --auth-mode byoa");
            }
            Ok(Some(json!({ "authMode": mode })))
        }
    }
}

/// What `servers clients add` was given.
pub struct NewClient {
    pub name: Option<String>,
    pub redirect_uris: Vec<String>,
    pub scopes: Option<String>,
    pub trusted: bool,
    pub confidential: bool,
    pub metadata_url: Option<String>,
}

pub async fn clients_add(ctx: &Ctx, server: &str, new: NewClient) -> anyhow::Result<()> {
    let mut body = Map::new();
    match &new.metadata_url {
        Some(url) => {
            body.insert("clientMetadataUrl".into(), json!(url));
        }
        None => {
            body.insert("name".into(), json!(new.name));
            body.insert("redirectUris".into(), json!(new.redirect_uris));
        }
    }
    if let Some(s) = &new.scopes {
        let scopes = split_scopes(s);
        if scopes.is_empty() {
            bail!("--scopes needs at least one scope, e.g. --scopes mcp:read,mcp:execute");
        }
        body.insert("scopes".into(), json!(scopes));
    }
    if new.trusted {
        body.insert("trusted".into(), json!(true));
    }
    if new.confidential {
        body.insert("confidential".into(), json!(true));
    }
    let api = ctx.api()?;
    let c = api
        .post(
            &format!("/servers/{}/clients", seg(server)),
            &Value::Object(body),
        )
        .await?;
    if ctx.json {
        return print_json(&c);
    }
    println!("Added client {} to server {server}.", cell(&c, "name"));
    let mut items = vec![
        ("id", cell(&c, "id")),
        ("client_id", cell(&c, "clientId")),
        ("scopes", cell(&c, "scopes")),
        ("redirect uris", cell(&c, "redirectUris")),
        ("trusted", cell(&c, "trusted")),
    ];
    let secret = c.get("clientSecret").and_then(Value::as_str);
    if let Some(s) = secret {
        items.push(("client_secret", s.to_owned()));
    }
    print!("{}", pairs(&items));
    if secret.is_some() {
        println!("Save the client secret now: it is shown only this once.");
    }
    Ok(())
}

pub async fn clients_list(ctx: &Ctx, server: &str) -> anyhow::Result<()> {
    let api = ctx.api()?;
    let data = api
        .get(&format!("/servers/{}/clients", seg(server)))
        .await?;
    let clients = match data {
        Value::Array(items) => items,
        _ => bail!("unexpected answer from the server: expected a list of clients"),
    };
    if ctx.json {
        return print_json(&Value::Array(clients));
    }
    if clients.is_empty() {
        println!("No clients for server {server}.");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = clients
        .iter()
        .map(|c| {
            vec![
                cell(c, "id"),
                cell(c, "clientId"),
                cell(c, "name"),
                cell(c, "scopes"),
                cell(c, "trusted"),
                cell(c, "redirectUris"),
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &[
                "ID",
                "CLIENT ID",
                "NAME",
                "SCOPES",
                "TRUSTED",
                "REDIRECT URIS"
            ],
            &rows
        )
    );
    Ok(())
}

pub async fn clients_remove(ctx: &Ctx, server: &str, client: &str) -> anyhow::Result<()> {
    let api = ctx.api()?;
    api.delete(&format!("/servers/{}/clients/{}", seg(server), seg(client)))
        .await?;
    if !ctx.json {
        println!("Removed client {client} from server {server}.");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(mode: Option<&str>, issuer: Option<&str>, all: bool) -> UpdateArgs {
        let u = |s: &str| all.then(|| s.to_owned());
        UpdateArgs {
            server: "s".into(),
            name: None,
            upstream: None,
            auth_mode: mode.map(str::to_owned),
            byoa_issuer: issuer.map(str::to_owned),
            byoa_jwks_uri: u("https://idp.example/jwks"),
            byoa_authorization_endpoint: u("https://idp.example/authorize"),
            byoa_token_endpoint: u("https://idp.example/token"),
        }
    }

    #[test]
    fn byoa_needs_all_four_flags() {
        let body = auth_body(&args(Some("byoa"), Some("https://idp.example"), true))
            .expect("ok")
            .expect("some");
        assert_eq!(
            body,
            json!({"authMode": "byoa", "byoaConfig": {
                "issuer": "https://idp.example",
                "jwksUri": "https://idp.example/jwks",
                "authorizationEndpoint": "https://idp.example/authorize",
                "tokenEndpoint": "https://idp.example/token",
            }})
        );
        let err = auth_body(&args(Some("byoa"), None, true))
            .expect_err("missing issuer")
            .to_string();
        assert_eq!(err, "--auth-mode byoa also needs --byoa-issuer");
    }

    #[test]
    fn managed_mode_takes_no_byoa_flags() {
        assert_eq!(
            auth_body(&args(Some("ezforge_managed"), None, false))
                .expect("ok")
                .expect("some"),
            json!({"authMode": "ezforge_managed"})
        );
        assert!(auth_body(&args(Some("ezforge_managed"), Some("https://i"), false)).is_err());
        assert!(auth_body(&args(None, None, false)).expect("ok").is_none());
    }
}
