//! `ezforge env set|list|unset`: a server's environment variables. The API never returns
//! values, so neither does the CLI.

use std::io::{IsTerminal, Read};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use super::api::seg;
use super::auth::prompt_without_echo;
use super::ctx::Ctx;
use super::output::{cell, clean, print_json, table};
use crate::domain::Secret;

/// The API refuses values over 32 KiB; reading stops a little past that.
const MAX_STDIN: u64 = 64 * 1024;

pub async fn set(
    ctx: &Ctx,
    server: &str,
    name: &str,
    value: Option<String>,
    value_stdin: bool,
) -> anyhow::Result<()> {
    let value = read_value(name, value, value_stdin)?;
    let api = ctx.api()?;
    // PUT creates the variable or replaces its value (201 or 200).
    let v = api
        .put(
            &format!("/servers/{}/env/{}", seg(server), seg(name)),
            &json!({ "value": value.expose() }),
        )
        .await?;
    if ctx.json {
        return print_json(&v);
    }
    println!(
        "Set {} on server {}. It applies at the next deployment (`ezforge deploy`).",
        cell(&v, "name"),
        clean(server)
    );
    Ok(())
}

/// `--value-stdin`, else `--value`, else a prompt without echo on a terminal.
fn read_value(name: &str, value: Option<String>, from_stdin: bool) -> anyhow::Result<Secret> {
    if from_stdin {
        let mut buf = String::new();
        std::io::stdin()
            .lock()
            .take(MAX_STDIN)
            .read_to_string(&mut buf)
            .context("cannot read the value from stdin")?;
        return Ok(Secret::new(strip_newline(buf)));
    }
    if let Some(v) = value {
        return Ok(Secret::new(v));
    }
    if !std::io::stdin().is_terminal() {
        bail!("no value: pass --value-stdin (reads all of stdin) or --value V");
    }
    let line = prompt_without_echo(
        &format!("Value of {}: ", clean(name)),
        "pass --value-stdin or --value V",
    )?;
    let v = strip_newline(line);
    if v.is_empty() {
        bail!("empty value: nothing set (to set an empty value, pass --value '')");
    }
    Ok(Secret::new(v))
}

/// Drops one trailing `\n` or `\r\n`: what `echo` or the Enter key adds.
fn strip_newline(mut s: String) -> String {
    if s.ends_with('\n') {
        s.pop();
        if s.ends_with('\r') {
            s.pop();
        }
    }
    s
}

pub async fn list(ctx: &Ctx, server: &str) -> anyhow::Result<()> {
    let api = ctx.api()?;
    let vars = api.list(&format!("/servers/{}/env", seg(server))).await?;
    if ctx.json {
        return print_json(&Value::Array(vars));
    }
    if vars.is_empty() {
        println!(
            "No environment variables for server {}. Set one with `ezforge env set {} NAME`.",
            clean(server),
            clean(server)
        );
        return Ok(());
    }
    let rows: Vec<Vec<String>> = vars
        .iter()
        .map(|v| vec![cell(v, "name"), cell(v, "createdAt"), cell(v, "updatedAt")])
        .collect();
    print!("{}", table(&["NAME", "CREATED", "UPDATED"], &rows));
    Ok(())
}

pub async fn unset(ctx: &Ctx, server: &str, name: &str) -> anyhow::Result<()> {
    let api = ctx.api()?;
    api.delete(&format!("/servers/{}/env/{}", seg(server), seg(name)))
        .await?;
    if !ctx.json {
        println!(
            "Removed {} from server {}. It applies at the next deployment (`ezforge deploy`).",
            clean(name),
            clean(server)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_trailing_newline_is_dropped() {
        assert_eq!(strip_newline("s3cret\n".into()), "s3cret");
        assert_eq!(strip_newline("s3cret\r\n".into()), "s3cret");
        assert_eq!(strip_newline("a\nb\n\n".into()), "a\nb\n");
        assert_eq!(strip_newline("no newline".into()), "no newline");
        assert_eq!(strip_newline(String::new()), "");
    }
}
