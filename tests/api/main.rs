//! The one integration-test binary: every test starts the real server in-process on
//! 127.0.0.1:0 with its own temporary data dir and real SQLite, and talks HTTP to it.

mod browser;
mod cli_client;
mod cli_process;
mod clients_tested;
mod control_declared;
mod control_invitations;
mod control_matrix;
mod control_rules;
mod control_secrets;
mod deploy;
mod doctor;
mod fake_mcp_auth;
mod fakes;
mod foundation;
mod gateway;
mod gateway_confusion;
mod helpers;
mod interop;
mod interop_chromium;
mod isolation_assertion;
mod isolation_env;
mod isolation_trust;
mod isolation_upstream;
mod oauth_cimd;
mod oauth_cross_site;
mod oauth_flow;
mod oauth_hardening;
mod oauth_issuers;
mod oauth_rules;
mod sandbox;
