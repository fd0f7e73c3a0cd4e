//! `ezforge project members|remove-member|invite|invitations|withdraw|join|decline`: membership
//! by invitation.

use anyhow::bail;
use serde_json::{Value, json};

use super::api::seg;
use super::ctx::Ctx;
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
        "Give this token to {} (it is shown only this once), or let them find the invitation \
         with `ezforge project invitations`. Signed in as that email, they run \
         `ezforge project join TOKEN` (or `join {}`). Without an account, an administrator \
         creates one first; only an invitation an administrator sent also makes the account, \
         with `ezforge auth accept-invite` (which asks for the token).",
        cell(&inv, "email"),
        cell(&inv, "id")
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

/// Accepts an invitation by its token (`ezf_inv_…`) or, from the caller's own list, its id
/// (`inv_…`).
pub async fn join(ctx: &Ctx, invitation: &str) -> anyhow::Result<()> {
    let api = ctx.api()?;
    let invitation = invitation.trim();
    let p = if invitation.starts_with("inv_") {
        api.post(
            &format!("/invitations/{}/accept", seg(invitation)),
            &json!({}),
        )
        .await?
    } else {
        api.post("/invitations/accept", &json!({ "token": invitation }))
            .await?
    };
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

/// Declines one of the caller's invitations (`inv_…`, from `ezforge project invitations`).
pub async fn decline(ctx: &Ctx, invitation: &str) -> anyhow::Result<()> {
    let invitation = invitation.trim();
    ctx.api()?
        .delete(&format!("/invitations/{}", seg(invitation)))
        .await?;
    if !ctx.json {
        println!("Declined invitation {}.", clean(invitation));
    }
    Ok(())
}

/// Removes a member (owners), named by user id (`usr_…`) or email.
pub async fn remove(ctx: &Ctx, project: &str, user: &str) -> anyhow::Result<()> {
    let api = ctx.api()?;
    let path = format!("/projects/{}/members", seg(project));
    let user = user.trim();
    let (id, email) = if user.contains('@') {
        let members = api.list(&path).await?;
        match members.iter().find(|m| {
            m["email"]
                .as_str()
                .is_some_and(|e| e.eq_ignore_ascii_case(user))
        }) {
            Some(m) => (cell(m, "userId"), cell(m, "email")),
            None => bail!("{} is not a member of {}", clean(user), clean(project)),
        }
    } else {
        (user.to_owned(), clean(user))
    };
    api.delete(&format!("{path}/{}", seg(&id))).await?;
    if !ctx.json {
        println!("Removed {email} from {}.", clean(project));
    }
    Ok(())
}
