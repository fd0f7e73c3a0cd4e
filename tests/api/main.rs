//! The one integration-test binary: every test starts the real server in-process on
//! 127.0.0.1:0 with its own temporary data dir and real SQLite, and talks HTTP to it.

mod cli_client;
mod cli_process;
mod foundation;
mod helpers;
mod fakes;
mod gateway;
