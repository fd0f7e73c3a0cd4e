//! `ezforge doctor`: checks this machine's installation (config, data directory, lock, TLS,
//! clock, public URL, upstreams, exposure, BYOA issuers, sandbox, disk), or with a URL any MCP
//! server's authorization setup, and prints one line per check — `ok`, `warn` or `fail`, the
//! reason and the fix. Exit status 1 when a check failed.
//!
//! The checks' logic is pure functions over what was observed (documents, modes, dates), each
//! unit-tested; the gathering around them is kept thin. Network checks run on a runtime of
//! their own (the CLI has no other), blocking file and `/proc` reads before it starts.

mod as_metadata;
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
    /// this machine's installation is checked (`--url` and EZFORGE_URL play no part).
    #[arg(id = "target", value_name = "URL")]
    pub url: Option<String>,
    /// Accept any TLS certificate (self-signed, expired, another name's). Says so in the report.
    #[arg(long, requires = "target")]
    pub insecure: bool,
    /// Also trust the certificates in this PEM file (a private CA, a self-signed certificate).
    #[arg(long, value_name = "FILE", requires = "target")]
    pub cacert: Vec<PathBuf>,
    /// Send requests for NAME to this address instead of asking DNS (as curl's --resolve), to
    /// check a server before its DNS name points at it. Repeatable.
    #[arg(long, value_name = "NAME=IP[:PORT]", requires = "target")]
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

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::cli::{Cli, Command};

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("ezforge").chain(args.iter().copied()))
    }

    #[test]
    fn the_url_to_check_is_not_the_global_url_and_url_flags_need_it() {
        let cli = parse(&["--url", "http://127.0.0.1:9", "doctor"]).expect("parses");
        assert_eq!(cli.client.url.as_deref(), Some("http://127.0.0.1:9"));
        let Command::Doctor(args) = cli.command else {
            panic!("doctor");
        };
        assert_eq!(args.url, None);
        let cli = parse(&[
            "doctor",
            "https://mcp.example.com/mcp",
            "--insecure",
            "--json",
        ])
        .expect("parses");
        assert!(cli.client.json);
        let Command::Doctor(args) = cli.command else {
            panic!("doctor");
        };
        assert_eq!(args.url.as_deref(), Some("https://mcp.example.com/mcp"));
        assert!(args.insecure);
        for flags in [
            &["doctor", "--insecure"][..],
            &["--url", "http://127.0.0.1:9", "doctor", "--cacert", "x.pem"],
            &["doctor", "--resolve", "a=127.0.0.1"],
        ] {
            assert!(parse(flags).is_err(), "{flags:?}");
        }
    }
}
