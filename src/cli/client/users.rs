//! `ezforge users list|invite|delete`: accounts, through the control API (admins). (`ezforge
//! users create` works on the data directory instead: see `cli::local`.)

use anyhow::bail;
use serde_json::{Value, json};

use super::api::{Api, seg};
use super::ctx::Ctx;
use super::output::{cell, clean, pairs, print_json, table};

/// What `ezforge users` asks of the control API.
#[derive(Debug)]
pub enum Call {
    List,
    Invite { email: String, admin: bool },
    Delete { user: String },
}

pub async fn run(ctx: &Ctx, call: Call) -> anyhow::Result<()> {
    match call {
        Call::List => list(ctx).await,
        Call::Invite { email, admin } => invite(ctx, &email, admin).await,
        Call::Delete { user } => delete(ctx, &user).await,
    }
}

async fn list(ctx: &Ctx) -> anyhow::Result<()> {
    let users = ctx.api()?.list("/users").await?;
    if ctx.json {
        return print_json(&Value::Array(users));
    }
    let rows: Vec<Vec<String>> = users
        .iter()
        .map(|u| {
            vec![
                cell(u, "id"),
                cell(u, "email"),
                cell(u, "role"),
                cell(u, "createdAt"),
            ]
        })
        .collect();
    print!("{}", table(&["ID", "EMAIL", "ROLE", "CREATED"], &rows));
    Ok(())
}

/// An account without a password: its owner sets one with the printed token.
async fn invite(ctx: &Ctx, email: &str, admin: bool) -> anyhow::Result<()> {
    let role = if admin { "admin" } else { "member" };
    let made = ctx
        .api()?
        .post("/users", &json!({ "email": email, "role": role }))
        .await?;
    if ctx.json {
        return print_json(&made);
    }
    let user = made.get("user").cloned().unwrap_or(Value::Null);
    println!(
        "Created the account {} ({}).",
        cell(&user, "email"),
        cell(&user, "role")
    );
    print!("{}", pairs(&[("id", cell(&user, "id"))]));
    let Some(token) = made.get("inviteToken").and_then(Value::as_str) else {
        eprintln!("warning: the server's answer holds no invite token");
        return Ok(());
    };
    println!();
    println!("  {}", clean(token));
    println!();
    println!(
        "Give this token to {} (it is shown only this once, and is good for 7 days). They set \
         their password with `ezforge auth accept-invite` (which asks for it), then sign in.",
        cell(&user, "email")
    );
    Ok(())
}

async fn delete(ctx: &Ctx, user: &str) -> anyhow::Result<()> {
    let api = ctx.api()?;
    let (id, email) = resolve(&api, user).await?;
    api.delete(&format!("/users/{}", seg(&id))).await?;
    if !ctx.json {
        println!(
            "Deleted the account {} ({}): its sessions and grants end now, and the invitations it sent are withdrawn.",
            clean(&email),
            clean(&id)
        );
    }
    Ok(())
}

/// A user named by id (`usr_…`) or email: `(id, email)`. An email is looked up in the list.
async fn resolve(api: &Api, user: &str) -> anyhow::Result<(String, String)> {
    let user = user.trim();
    if !user.contains('@') {
        return Ok((user.to_owned(), user.to_owned()));
    }
    let users = api.list("/users").await?;
    match users.iter().find(|u| {
        u["email"]
            .as_str()
            .is_some_and(|e| e.eq_ignore_ascii_case(user))
    }) {
        Some(u) => Ok((cell(u, "id"), cell(u, "email"))),
        None => bail!("no account has the email {}", clean(user)),
    }
}
