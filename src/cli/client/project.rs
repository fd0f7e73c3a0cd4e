//! `ezforge project create|list|create-key`.

use anyhow::bail;
use serde_json::{Map, Value, json};

use super::api::seg;
use super::ctx::{Ctx, split_scopes};
use super::output::{cell, pairs, print_json, table};

pub async fn create(ctx: &Ctx, name: &str, slug: Option<&str>) -> anyhow::Result<()> {
    let api = ctx.api()?;
    let mut body = Map::new();
    body.insert("name".into(), json!(name));
    if let Some(s) = slug {
        body.insert("slug".into(), json!(s));
    }
    let p = api.post("/projects", &Value::Object(body)).await?;
    if ctx.json {
        return print_json(&p);
    }
    println!("Created project {}.", cell(&p, "name"));
    print!(
        "{}",
        pairs(&[("id", cell(&p, "id")), ("slug", cell(&p, "slug"))])
    );
    Ok(())
}

pub async fn list(ctx: &Ctx) -> anyhow::Result<()> {
    let api = ctx.api()?;
    let projects = api.list("/projects").await?;
    if ctx.json {
        return print_json(&Value::Array(projects));
    }
    if projects.is_empty() {
        println!("No projects. Create one with `ezforge project create NAME`.");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = projects
        .iter()
        .map(|p| {
            vec![
                cell(p, "id"),
                cell(p, "slug"),
                cell(p, "name"),
                cell(p, "role"),
                cell(p, "createdAt"),
            ]
        })
        .collect();
    print!(
        "{}",
        table(&["ID", "SLUG", "NAME", "ROLE", "CREATED"], &rows)
    );
    Ok(())
}

pub async fn create_key(
    ctx: &Ctx,
    project: &str,
    name: &str,
    scopes: &str,
    expires_at: Option<&str>,
    test: bool,
) -> anyhow::Result<()> {
    let scopes = split_scopes(scopes);
    if scopes.is_empty() {
        bail!("--scopes needs at least one scope, e.g. --scopes servers:read,servers:write");
    }
    let api = ctx.api()?;
    let mut body = Map::new();
    body.insert("name".into(), json!(name));
    body.insert("scopes".into(), json!(scopes));
    body.insert(
        "environment".into(),
        json!(if test { "test" } else { "live" }),
    );
    if let Some(t) = expires_at {
        body.insert("expiresAt".into(), json!(t));
    }
    let k = api
        .post(
            &format!("/projects/{}/keys", seg(project)),
            &Value::Object(body),
        )
        .await?;
    if ctx.json {
        return print_json(&k);
    }
    println!("Created API key {} in project {project}.", cell(&k, "name"));
    print!(
        "{}",
        pairs(&[
            ("id", cell(&k, "id")),
            ("environment", cell(&k, "environment")),
            ("scopes", cell(&k, "scopes")),
            ("expires", expiry(&k)),
        ])
    );
    match k.get("key").and_then(Value::as_str) {
        Some(key) => {
            println!();
            println!("  {key}");
            println!();
            println!(
                "Save this key now: it is shown only this once. Use it as EZFORGE_API_KEY or `Authorization: Bearer …`."
            );
        }
        None => eprintln!("warning: the server's answer holds no key value"),
    }
    Ok(())
}

fn expiry(k: &Value) -> String {
    match k.get("expiresAt") {
        None | Some(Value::Null) => "never".to_owned(),
        Some(_) => cell(k, "expiresAt"),
    }
}
