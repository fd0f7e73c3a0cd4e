//! `ezforge audit` (`GET /v1/audit`, admins): who did what, when, from where; newest first.

use serde_json::Value;

use super::ctx::Ctx;
use super::output::{cell, clean, print_json, table};

pub async fn audit(ctx: &Ctx, limit: usize) -> anyhow::Result<()> {
    let rows = ctx.api()?.list_first("/audit", limit).await?;
    if ctx.json {
        return print_json(&Value::Array(rows));
    }
    if rows.is_empty() {
        println!("No audit entries.");
        return Ok(());
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|a| {
            let details = match a.get("details") {
                None | Some(Value::Null) => "-".to_owned(),
                Some(d) => clean(&d.to_string()),
            };
            vec![
                cell(a, "at"),
                cell(a, "actor"),
                cell(a, "action"),
                cell(a, "target"),
                cell(a, "projectId"),
                cell(a, "address"),
                details,
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &[
                "AT", "ACTOR", "ACTION", "TARGET", "PROJECT", "ADDRESS", "DETAILS"
            ],
            &cells
        )
    );
    Ok(())
}
