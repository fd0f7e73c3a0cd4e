//! `ezforge auth login|logout|whoami|accept-invite`.

use std::io::{BufRead, IsTerminal};

use anyhow::{Context, anyhow, bail};
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::api::{Api, ApiError, Credential};
use super::credentials::{self, Stored};
use super::ctx::{Ctx, normalize_url};
use super::output::{cell, pairs, print_json, text};
use crate::domain::Secret;

pub async fn login(ctx: &Ctx, email: &str, password_stdin: bool) -> anyhow::Result<()> {
    let path = ctx.creds_path.clone().context(
        "cannot tell where to keep the credentials: set HOME (or XDG_CONFIG_HOME), or use EZFORGE_API_KEY",
    )?;
    let password = read_password(password_stdin)?;
    let api = Api::new(&ctx.base, Credential::None)?;
    let data = api
        .post(
            "/auth/login",
            &json!({"email": email, "password": password.expose()}),
        )
        .await?;
    let token = data
        .get("token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| anyhow!("the server's login answer has no session token"))?;
    let user = data.get("user").cloned().unwrap_or(Value::Null);
    let expires_at = data
        .get("expiresAt")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let email = user
        .get("email")
        .and_then(Value::as_str)
        .unwrap_or(email)
        .to_owned();
    credentials::save(
        &path,
        &Stored {
            url: ctx.base.clone(),
            token: token.to_owned(),
            expires_at: expires_at.clone(),
            email: Some(email.clone()),
        },
    )?;
    if ctx.json {
        // Everything but the token, which stays in the credentials file.
        print_json(&json!({"user": user, "expiresAt": expires_at}))?;
    } else {
        println!(
            "Logged in to {} as {}.",
            ctx.base,
            super::output::clean(&email)
        );
        if let Some(exp) = &expires_at {
            println!("The session expires at {}.", super::output::clean(exp));
        }
        println!("Credentials saved in {}.", path.display());
    }
    if ctx.api_key.is_some() {
        eprintln!("note: EZFORGE_API_KEY is set; commands use it instead of this session");
    }
    Ok(())
}

/// `POST /v1/auth/invite {token, password}`: sets the password of an invited account (and, for
/// a project invitation to an email without one, makes it).
pub async fn accept_invite(
    ctx: &Ctx,
    token: Option<String>,
    password_stdin: bool,
) -> anyhow::Result<()> {
    let token = match token {
        Some(t) => {
            eprintln!(
                "warning: a token on the command line can be read by other users of this machine \
                 (ps) until this command ends, and stays in your shell history; leave it out to \
                 be asked for it, or set EZFORGE_INVITE_TOKEN"
            );
            Secret::new(t)
        }
        None => read_invite_token(password_stdin)?,
    };
    let token = token.expose();
    let password = read_password(password_stdin)?;
    let api = Api::new(&ctx.base, Credential::None)?;
    let user = api
        .post(
            "/auth/invite",
            &json!({"token": token.trim(), "password": password.expose()}),
        )
        .await?;
    if ctx.json {
        return print_json(&user);
    }
    let email = cell(&user, "email");
    println!("Password set for {email}.");
    println!("Sign in with `ezforge auth login --email {email}`.");
    Ok(())
}

/// `EZFORGE_INVITE_TOKEN`, else a prompt without echo on a terminal (not when stdin carries
/// the password).
fn read_invite_token(password_stdin: bool) -> anyhow::Result<Secret> {
    let token = if let Some(t) = std::env::var("EZFORGE_INVITE_TOKEN")
        .ok()
        .filter(|t| !t.trim().is_empty())
    {
        t
    } else if !password_stdin && std::io::stdin().is_terminal() {
        prompt_without_echo("Invite token: ", "set EZFORGE_INVITE_TOKEN")?
    } else {
        bail!("no invite token: set EZFORGE_INVITE_TOKEN (or run this on a terminal to be asked)");
    };
    let token = token.trim().to_owned();
    if token.is_empty() {
        bail!("empty invite token");
    }
    Ok(Secret::new(token))
}

/// `--password-stdin`, else `EZFORGE_PASSWORD`, else a prompt without echo on a terminal.
fn read_password(from_stdin: bool) -> anyhow::Result<Secret> {
    let stdin = std::io::stdin();
    let password = if from_stdin {
        let mut line = String::new();
        stdin
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from stdin")?;
        line
    } else if let Some(p) = std::env::var("EZFORGE_PASSWORD")
        .ok()
        .filter(|p| !p.is_empty())
    {
        p
    } else if stdin.is_terminal() {
        prompt_without_echo(
            "Password: ",
            "pass --password-stdin or set EZFORGE_PASSWORD",
        )?
    } else {
        bail!(
            "no password: pass --password-stdin (reads one line from stdin) or set EZFORGE_PASSWORD"
        );
    };
    let password = password.trim_end_matches(['\r', '\n']).to_owned();
    if password.is_empty() {
        bail!("empty password");
    }
    Ok(Secret::new(password))
}

/// Reads one line from the terminal with echo turned off. Echo comes back however the read
/// ends, Ctrl-C included. `instead` tells the user what to do where that cannot work.
pub(super) fn prompt_without_echo(prompt: &str, instead: &str) -> anyhow::Result<String> {
    if !terminal::echo(false) {
        bail!("cannot turn off terminal echo (stdin is not a terminal?): {instead}");
    }
    eprint!("{prompt}");
    let mut line = String::new();
    let read = std::io::stdin().lock().read_line(&mut line);
    terminal::echo(true);
    eprintln!();
    read.context("cannot read from the terminal")?;
    Ok(line)
}

/// Terminal echo on stdin, by termios.
#[allow(unsafe_code)]
mod terminal {
    /// Turns echo on or off; false when stdin is not a terminal. While it is off, Ctrl-C turns
    /// it back on before the process ends.
    pub fn echo(on: bool) -> bool {
        if !set_echo(on) {
            return false;
        }
        let handler: extern "C" fn(libc::c_int) = restore_and_exit;
        // SAFETY: installs or removes a handler that only makes async-signal-safe calls.
        unsafe {
            libc::signal(
                libc::SIGINT,
                if on {
                    libc::SIG_DFL
                } else {
                    handler as libc::sighandler_t
                },
            );
        }
        true
    }

    fn set_echo(on: bool) -> bool {
        // SAFETY: termios is plain data; tcgetattr fills it, tcsetattr reads it; both only
        // touch that struct and file descriptor 0.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(libc::STDIN_FILENO, &mut t) != 0 {
                return false;
            }
            if on {
                t.c_lflag |= libc::ECHO;
            } else {
                t.c_lflag &= !libc::ECHO;
            }
            libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &t) == 0
        }
    }

    extern "C" fn restore_and_exit(_: libc::c_int) {
        set_echo(true);
        // SAFETY: _exit is async-signal-safe; 130 is the shell's code for an interrupt.
        unsafe { libc::_exit(130) }
    }
}

pub async fn logout(ctx: &Ctx) -> anyhow::Result<()> {
    let path = ctx.creds_path.as_ref();
    let Some((path, stored)) = path.zip(ctx.stored.as_ref()) else {
        if let Some(p) = path {
            // A file that did not parse is still ours to delete.
            credentials::remove(p)?;
        }
        if !ctx.json {
            println!("Not logged in.");
        }
        return Ok(());
    };
    let base = normalize_url(&stored.url).unwrap_or_else(|_| stored.url.clone());
    let api = Api::new(
        &base,
        Credential::Session(Secret::new(stored.token.clone())),
    )?;
    let ended = api.post_empty("/auth/logout").await;
    credentials::remove(path)?;
    match ended {
        Ok(()) => {}
        // Already ended or expired on the server: nothing left to do there.
        Err(e)
            if e.downcast_ref::<ApiError>()
                .is_some_and(|a| a.status == StatusCode::UNAUTHORIZED) => {}
        Err(e) => {
            return Err(e.context(format!(
                "deleted {}, but could not end the session on {base}",
                path.display()
            )));
        }
    }
    if !ctx.json {
        println!("Logged out of {base}; deleted {}.", path.display());
    }
    Ok(())
}

pub async fn whoami(ctx: &Ctx) -> anyhow::Result<()> {
    let api = ctx.api()?;
    if api.is_api_key() {
        let projects = api.list("/projects").await?;
        let prefix = key_prefix(ctx.api_key.as_ref().map(Secret::expose).unwrap_or(""));
        if ctx.json {
            return print_json(&json!({
                "credential": "apiKey",
                "keyPrefix": prefix,
                "projects": projects,
            }));
        }
        println!("API key {prefix}… (from EZFORGE_API_KEY) at {}", ctx.base);
        for p in &projects {
            println!(
                "  project  {} ({}, {})",
                cell(p, "name"),
                cell(p, "slug"),
                cell(p, "id")
            );
        }
        return Ok(());
    }
    let data = api.get("/auth/session").await?;
    if ctx.json {
        return print_json(&data);
    }
    let user = data.get("user").unwrap_or(&Value::Null);
    println!("{} at {}", cell(user, "email"), ctx.base);
    print!(
        "{}",
        pairs(&[
            ("user", cell(user, "id")),
            ("role", cell(user, "role")),
            (
                "expires",
                text(data.get("expiresAt").unwrap_or(&Value::Null))
            ),
        ])
    );
    Ok(())
}

/// `ezf_live_AbCd`: the part of a key that is safe to show (as the API's `prefix`).
fn key_prefix(key: &str) -> String {
    let visible = key
        .char_indices()
        .filter(|(_, c)| *c == '_')
        .nth(1)
        .map(|(i, _)| i + 1 + 4)
        .unwrap_or(4)
        .min(key.len());
    key.get(..visible).unwrap_or("").to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_prefix_shows_only_the_start() {
        assert_eq!(key_prefix("ezf_live_AbCdEfGhIjKl"), "ezf_live_AbCd");
        assert_eq!(key_prefix("ezf_test_xy"), "ezf_test_xy");
        assert_eq!(key_prefix("opaque-secret"), "opaq");
        assert_eq!(key_prefix(""), "");
    }
}
