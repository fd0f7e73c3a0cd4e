//! `ezforge deploy`, `ezforge rollback` and `ezforge servers status`: a server's deployments.

use anyhow::{Context, bail};
use reqwest::StatusCode;
use serde_json::{Map, Value, json};
use std::io::IsTerminal;

use super::api::{ApiError, seg};
use super::args::{DeployArgs, RollbackArgs};

mod shell_words;
mod show;

use self::shell_words::split_command;
use self::show::{
    deployment_items, deployment_short, first_line, is_failure, process_line, target_short,
};
use super::ctx::Ctx;
use super::output::{cell, clean, clean_lines, pairs, print_json, table};

pub async fn deploy(ctx: &Ctx, args: &DeployArgs) -> anyhow::Result<()> {
    let body = deploy_body(args)?;
    let api = ctx.api()?;
    if !ctx.json && std::io::stderr().is_terminal() {
        eprintln!("Deploying to {}…", clean(&args.server));
    }
    let path = format!("/servers/{}/deployments", seg(&args.server));
    let d = with_progress(ctx, &args.server, api.post_slow(&path, &body)).await?;
    finish(ctx, &args.server, &d, "Deployed")
}

/// Runs `job` (a deploy or rollback) while printing, on stderr, each step of the pipeline as
/// the server's log stream tells it. Without the stream (a key without `logs:read`), the job
/// runs all the same.
async fn with_progress(
    ctx: &Ctx,
    server: &str,
    job: impl std::future::Future<Output = anyhow::Result<Value>>,
) -> anyhow::Result<Value> {
    use futures_util::StreamExt;
    if ctx.json {
        return job.await;
    }
    let api = ctx.api()?;
    let path = format!("/servers/{}/logs/stream", seg(server));
    let Ok(res) = api.stream(&path, &[]).await else {
        return job.await;
    };
    let mut body = res.bytes_stream();
    let mut sse = super::logs::SseParser::default();
    tokio::pin!(job);
    loop {
        tokio::select! {
            done = &mut job => return done,
            chunk = body.next() => {
                let Some(Ok(chunk)) = chunk else {
                    return job.await;
                };
                for frame in sse.push(&chunk).unwrap_or_default() {
                    if let super::logs::Frame::Event(e) = frame
                        && let Ok(entry) = serde_json::from_str::<Value>(&e.data)
                        && matches!(entry["source"].as_str(), Some("deploy" | "process"))
                    {
                        let message = clean_lines(entry["message"].as_str().unwrap_or_default());
                        eprintln!("  {}", message.replace('\n', "\n    "));
                    }
                }
            }
        }
    }
}

pub async fn rollback(ctx: &Ctx, args: &RollbackArgs) -> anyhow::Result<()> {
    let Some(body) = rollback_body(args)? else {
        return list(ctx, &args.server).await;
    };
    let api = ctx.api()?;
    if !ctx.json && std::io::stderr().is_terminal() {
        eprintln!("Rolling back {}…", clean(&args.server));
    }
    let path = format!("/servers/{}/rollback", seg(&args.server));
    let d = with_progress(ctx, &args.server, api.post_slow(&path, &body)).await?;
    finish(ctx, &args.server, &d, "Rolled back")
}

/// Prints the deployment a deploy or rollback answered with; a failed one is an error, so that
/// the exit status says whether the new version passed its health check.
fn finish(ctx: &Ctx, server: &str, d: &Value, done: &str) -> anyhow::Result<()> {
    let failed = is_failure(d);
    if ctx.json {
        print_json(d)?;
    } else {
        if !failed {
            println!(
                "{done} server {}: version {} is {}.",
                clean(server),
                cell(d, "version"),
                cell(d, "status")
            );
        }
        print!("{}", pairs(&deployment_items(d)));
    }
    if failed {
        let why = d
            .get("errorMessage")
            .and_then(Value::as_str)
            .map(clean_lines)
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| "no reason given".to_owned());
        // With rollback off the failed version takes the traffic anyway.
        let serving = if d.get("active").and_then(Value::as_bool) == Some(true) {
            " (it serves anyway: rollback was off)"
        } else {
            ""
        };
        bail!(
            "deployment version {} of {} failed: {why}{serving}",
            cell(d, "version"),
            clean(server),
        );
    }
    Ok(())
}

/// The `POST …/deployments` body the flags describe.
fn deploy_body(args: &DeployArgs) -> anyhow::Result<Value> {
    let mut body = Map::new();
    match (&args.upstream, &args.command) {
        (Some(url), None) => {
            body.insert("upstreamUrl".into(), json!(url));
        }
        (None, Some(command)) => {
            let argv = split_command(command).context("--command")?;
            if argv.is_empty() {
                bail!("--command is empty: name the program to run");
            }
            body.insert("command".into(), json!(argv));
            let transport = if args.stdio { "stdio" } else { "http" };
            body.insert("transport".into(), json!(transport));
            if let Some(port) = args.port {
                body.insert("port".into(), json!(port));
            }
        }
        // clap's `target` group makes these unreachable from the command line.
        (Some(_), Some(_)) => bail!("pass either --upstream or --command, not both"),
        (None, None) => bail!("pass --upstream URL or --command \"PROGRAM ARGS…\""),
    }
    if let Some(label) = &args.label {
        body.insert("version".into(), json!(label));
    }
    if args.no_rollback {
        body.insert("rollbackOnHealthCheckFailure".into(), json!(false));
    }
    Ok(Value::Object(body))
}

/// The `POST …/rollback` body, or `None` for `--list`.
fn rollback_body(args: &RollbackArgs) -> anyhow::Result<Option<Value>> {
    match (args.list, args.version, &args.deployment) {
        (true, None, None) => Ok(None),
        (false, Some(v), None) => Ok(Some(json!({ "version": v }))),
        (false, None, Some(id)) => Ok(Some(json!({ "deploymentId": id }))),
        _ => bail!("pass one of --list, --version N or --deployment dep_…"),
    }
}

/// `rollback --list`: the server's deployments, newest first.
async fn list(ctx: &Ctx, server: &str) -> anyhow::Result<()> {
    let api = ctx.api()?;
    let deployments = api
        .list(&format!("/servers/{}/deployments", seg(server)))
        .await?;
    if ctx.json {
        return print_json(&Value::Array(deployments));
    }
    if deployments.is_empty() {
        println!(
            "No deployments for server {}. Deploy with `ezforge deploy {} --upstream URL`.",
            clean(server),
            clean(server)
        );
        return Ok(());
    }
    let rows: Vec<Vec<String>> = deployments
        .iter()
        .map(|d| {
            let active = if d.get("active").and_then(Value::as_bool) == Some(true) {
                "*".to_owned()
            } else {
                String::new()
            };
            vec![
                cell(d, "version"),
                cell(d, "label"),
                cell(d, "type"),
                cell(d, "status"),
                active,
                cell(d, "createdAt"),
                target_short(d.get("target").unwrap_or(&Value::Null)),
                first_line(&cell(d, "errorMessage")),
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &[
                "VERSION", "LABEL", "TYPE", "STATUS", "ACTIVE", "CREATED", "TARGET", "ERROR"
            ],
            &rows
        )
    );
    Ok(())
}

/// `servers status`: the server, the deployment serving it, its process, and the latest
/// deployment when that one failed.
pub async fn status(ctx: &Ctx, server: &str) -> anyhow::Result<()> {
    let api = ctx.api()?;
    let s = api.get(&format!("/servers/{}", seg(server))).await?;
    // Address the deployments by id: the slug the caller typed could be renamed in between.
    let key = s
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or(server)
        .to_owned();
    // An API key with servers:read but not deployments:read still gets the server's state.
    let deployments = match api
        .list(&format!("/servers/{}/deployments", seg(&key)))
        .await
    {
        Ok(d) => Ok(d),
        Err(e)
            if e.downcast_ref::<ApiError>()
                .is_some_and(|a| a.status == StatusCode::FORBIDDEN) =>
        {
            Err(format!("{e:#}"))
        }
        Err(e) => return Err(e),
    };
    let active_id = s.get("activeDeploymentId").and_then(Value::as_str);
    let (active, latest_failed) = match &deployments {
        Ok(list) => (
            list.iter()
                .find(|d| d.get("active").and_then(Value::as_bool) == Some(true))
                .or_else(|| {
                    active_id.and_then(|id| {
                        list.iter()
                            .find(|d| d.get("id").and_then(Value::as_str) == Some(id))
                    })
                }),
            // Newest first: the latest is the first.
            list.first().filter(|d| is_failure(d)),
        ),
        Err(_) => (None, None),
    };
    if ctx.json {
        return print_json(&json!({
            "server": s,
            "activeDeployment": active,
            "latestFailedDeployment": latest_failed,
        }));
    }
    println!("Server {} ({})", cell(&s, "name"), cell(&s, "slug"));
    let deployment = match (&deployments, active) {
        (Err(why), _) => format!("unknown: {}", first_line(why)),
        (Ok(_), Some(d)) => deployment_short(d),
        (Ok(_), None) => match active_id {
            Some(id) => clean(id),
            None => "none".to_owned(),
        },
    };
    print!(
        "{}",
        pairs(&[
            ("status", cell(&s, "status")),
            ("url", cell(&s, "url")),
            ("deployment", deployment),
            (
                "process",
                process_line(s.get("process").unwrap_or(&Value::Null))
            ),
        ])
    );
    if let Some(d) = latest_failed {
        println!("The latest deployment failed:");
        print!("{}", pairs(&deployment_items(d)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deploy_args(upstream: Option<&str>, command: Option<&str>) -> DeployArgs {
        DeployArgs {
            server: "weather".into(),
            upstream: upstream.map(str::to_owned),
            command: command.map(str::to_owned),
            stdio: false,
            port: None,
            label: None,
            no_rollback: false,
        }
    }

    #[test]
    fn an_upstream_deploy_sends_the_url() {
        let mut a = deploy_args(Some("http://127.0.0.1:3001/mcp"), None);
        a.label = Some("v1.2".into());
        assert_eq!(
            deploy_body(&a).expect("body"),
            json!({"upstreamUrl": "http://127.0.0.1:3001/mcp", "version": "v1.2"})
        );
    }

    #[test]
    fn a_command_deploy_sends_argv_transport_and_port() {
        let mut a = deploy_args(None, Some("node 'my server.js'"));
        a.port = Some(3001);
        a.no_rollback = true;
        assert_eq!(
            deploy_body(&a).expect("body"),
            json!({
                "command": ["node", "my server.js"],
                "transport": "http",
                "port": 3001,
                "rollbackOnHealthCheckFailure": false,
            })
        );
        let mut a = deploy_args(None, Some("python3 srv.py"));
        a.stdio = true;
        assert_eq!(
            deploy_body(&a).expect("body"),
            json!({"command": ["python3", "srv.py"], "transport": "stdio"})
        );
    }

    #[test]
    fn a_bad_command_is_refused_before_sending() {
        let e = deploy_body(&deploy_args(None, Some("  ")))
            .expect_err("empty")
            .to_string();
        assert_eq!(e, "--command is empty: name the program to run");
        let e = deploy_body(&deploy_args(None, Some("echo 'x"))).expect_err("unbalanced");
        assert!(format!("{e:#}").starts_with("--command: unbalanced single quote"));
        assert!(deploy_body(&deploy_args(None, None)).is_err());
        assert!(deploy_body(&deploy_args(Some("http://h"), Some("x"))).is_err());
    }

    #[test]
    fn rollback_bodies() {
        let args = |list, version, deployment: Option<&str>| RollbackArgs {
            server: "s".into(),
            list,
            version,
            deployment: deployment.map(str::to_owned),
        };
        assert_eq!(rollback_body(&args(true, None, None)).expect("ok"), None);
        assert_eq!(
            rollback_body(&args(false, Some(2), None)).expect("ok"),
            Some(json!({"version": 2}))
        );
        assert_eq!(
            rollback_body(&args(false, None, Some("dep_1"))).expect("ok"),
            Some(json!({"deploymentId": "dep_1"}))
        );
        assert!(rollback_body(&args(false, None, None)).is_err());
        assert!(rollback_body(&args(true, Some(2), None)).is_err());
    }
}
