//! `ezforge doctor`: checks this machine's installation (config, data directory, lock, TLS,
//! clock, public URL, upstreams, exposure, BYOA issuers, sandbox, disk), or with a URL any MCP
//! server's authorization setup, and prints one line per check — `ok`, `warn` or `fail`, the
//! reason and the fix. Exit status 1 when a check failed.
//!
//! The checks' logic is pure functions over what was observed (documents, modes, dates), each
//! unit-tested; the gathering around them is kept thin. Network checks run on a runtime of
//! their own (the CLI has no other), blocking file and `/proc` reads before it starts.

mod cert;
mod challenge;
mod discovery;
mod files;
mod http;
mod local;
mod metadata;
mod procs;
mod remote;
mod report;
mod served;
mod upstream;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// An MCP server's URL (ours or any other) to check as MCP clients see it; without it,
    /// this machine's installation is checked.
    #[arg(value_name = "URL")]
    pub url: Option<String>,
    /// Accept any TLS certificate (self-signed, expired, another name's). Says so in the report.
    #[arg(long, requires = "url")]
    pub insecure: bool,
    /// Also trust the certificates in this PEM file (a private CA, a self-signed certificate).
    #[arg(long, value_name = "FILE", requires = "url")]
    pub cacert: Vec<PathBuf>,
    /// Send requests for NAME to this address instead of asking DNS (as curl's --resolve), to
    /// check a server before its DNS name points at it. Repeatable.
    #[arg(long, value_name = "NAME=IP[:PORT]", requires = "url")]
    pub resolve: Vec<String>,
}

pub fn run(config_path: Option<&Path>, args: DoctorArgs, json: bool) -> anyhow::Result<ExitCode> {
    match args.url {
        Some(url) => {
            let opts = http::Options {
                insecure: args.insecure,
                cacerts: args.cacert,
                resolve: args.resolve,
            };
            let http = http::Http::new(&opts)?;
            let report = runtime()?.block_on(remote::check(&http, &url, opts.insecure));
            Ok(report.finish(json))
        }
        None => Ok(local::check(config_path)?.finish(json)),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}
