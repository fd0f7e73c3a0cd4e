//! `ezforge project members|invite|invitations|withdraw|join`: membership by invitation.

use serde_json::{Value, json};

use super::Ctx;
use super::api::seg;
use super::output::{cell, clean, pairs, print_json, table};

pub async fn members(ctx: &Ctx, project: &str) -> anyhow::Result<()> {
    let api = ctx.api()?;
    let members = api
        .list(&format!("/projects/{}/members", seg(project)))
        .await?;
    if ctx.json {
        return print_json(&Value::Array(members));
    }
    let rows: Vec<Vec<String>> = members
        .iter()
        .map(|m| {
            vec![
                cell(m, "userId"),
                cell(m, "email"),
                cell(m, "role"),
                cell(m, "createdAt"),
            ]
        })
        .collect();
    print!("{}", table(&["USER", "EMAIL", "ROLE", "SINCE"], &rows));
    Ok(())
}

pub async fn invite(ctx: &Ctx, project: &str, email: &str, role: &str) -> anyhow::Result<()> {
    let api = ctx.api()?;
    let inv = api
        .post(
            &format!("/projects/{}/members", seg(project)),
            &json!({ "email": email, "role": role }),
        )
        .await?;
    if ctx.json {
        return print_json(&inv);
    }
    println!(
        "Invited {} to {} as {}.",
        cell(&inv, "email"),
        clean(project),
        cell(&inv, "role")
    );
    print!(
        "{}",
        pairs(&[
            ("id", cell(&inv, "id")),
            ("expires", cell(&inv, "expiresAt"))
        ])
    );
    let Some(token) = inv.get("inviteToken").and_then(Value::as_str) else {
        eprintln!("warning: the server's answer holds no invitation token");
        return Ok(());
    };
    println!();
    println!("  {}", clean(token));
    println!();
    println!(
        "Give this token to {} (it is shown only this once). With an account, they sign in and run \
         `ezforge project join TOKEN`; without one, `ezforge auth accept-invite TOKEN` makes it.",
        cell(&inv, "email")
    );
    Ok(())
}

/// A project's invitations (owners), or without a project the caller's own.
pub async fn invitations(ctx: &Ctx, project: Option<&str>) -> anyhow::Result<()> {
    let api = ctx.api()?;
    let path = match project {
        Some(p) => format!("/projects/{}/invitations", seg(p)),
        None => "/invitations".to_owned(),
    };
    let items = api.list(&path).await?;
    if ctx.json {
        return print_json(&Value::Array(items));
    }
    if items.is_empty() {
        println!("No invitations.");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|i| {
            let project = i.get("project").cloned().unwrap_or(Value::Null);
            vec![
                cell(i, "id"),
                cell(&project, "slug"),
                cell(i, "email"),
                cell(i, "role"),
                cell(i, "status"),
                cell(i, "invitedByEmail"),
                cell(i, "expiresAt"),
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &[
                "ID",
                "PROJECT",
                "EMAIL",
                "ROLE",
                "STATUS",
                "INVITED BY",
                "EXPIRES"
            ],
            &rows
        )
    );
    Ok(())
}

pub async fn withdraw(ctx: &Ctx, project: &str, invitation: &str) -> anyhow::Result<()> {
    let api = ctx.api()?;
    api.delete(&format!(
        "/projects/{}/invitations/{}",
        seg(project),
        seg(invitation)
    ))
    .await?;
    if !ctx.json {
        println!("Withdrew invitation {}.", clean(invitation));
    }
    Ok(())
}

pub async fn join(ctx: &Ctx, token: &str) -> anyhow::Result<()> {
    let api = ctx.api()?;
    let p = api
        .post("/invitations/accept", &json!({ "token": token.trim() }))
        .await?;
    if ctx.json {
        return print_json(&p);
    }
    println!(
        "Joined project {} ({}) as {}.",
        cell(&p, "name"),
        cell(&p, "slug"),
        cell(&p, "role")
    );
    Ok(())
}
