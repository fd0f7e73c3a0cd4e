//! `ezforge grants list|revoke`: the authorizations people gave MCP clients.

use serde_json::Value;

use super::api::seg;
use super::ctx::Ctx;
use super::output::{cell, print_json, table, text};

pub async fn list(ctx: &Ctx) -> anyhow::Result<()> {
    let api = ctx.api()?;
    let grants = api.list("/grants").await?;
    if ctx.json {
        return print_json(&Value::Array(grants));
    }
    if grants.is_empty() {
        println!("No grants.");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = grants
        .iter()
        .map(|g| {
            let scopes = g["scopes"]
                .as_array()
                .map(|a| a.iter().map(text).collect::<Vec<_>>().join(" "))
                .unwrap_or_default();
            vec![
                cell(g, "id"),
                cell(g, "clientName"),
                cell(g, "resource"),
                scopes,
                cell(g, "lastUsedAt"),
            ]
        })
        .collect();
    print!(
        "{}",
        table(&["ID", "CLIENT", "SERVER", "SCOPES", "LAST USED"], &rows)
    );
    Ok(())
}

pub async fn revoke(ctx: &Ctx, grant: &str) -> anyhow::Result<()> {
    ctx.api()?
        .delete(&format!("/grants/{}", seg(grant)))
        .await?;
    if !ctx.json {
        println!("Revoked grant {grant}: its tokens stop working now.");
    }
    Ok(())
}
