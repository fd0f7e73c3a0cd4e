//! The `ezforge` binary run as a process: the operator's server, the client commands, and
//! `ezforge doctor`.

pub(crate) mod admin;
pub(crate) mod client;
pub(crate) mod doctor;
pub(crate) mod fake_mcp_auth;
pub(crate) mod process;
