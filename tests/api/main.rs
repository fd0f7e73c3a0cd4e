//! The one integration-test binary: every test starts the real server in-process on
//! 127.0.0.1:0 with its own temporary data dir and real SQLite, and talks HTTP to it.
//!
//! The tests follow the product's parts: `control/` (the control API), `oauth/` (the
//! authorization server), `gateway/` (the MCP front door), `deploy/` (deployments and the
//! sandbox), `cli/` (the `ezforge` binary as a process), `interop/` (official SDKs and a real
//! browser). `helpers` starts the app and talks to it; `fakes` are what is outside.

mod cli;
mod control;
mod deploy;
mod docs;
mod fakes;
mod foundation;
mod gateway;
mod helpers;
mod interop;
mod oauth;
