//! The authorization server: the flow, its rules and refusals, issuers, client metadata
//! documents, trusted clients, and the MCP clients people use, replayed.

pub(crate) mod browser;
pub(crate) mod byoa_switch;
pub(crate) mod cimd;
pub(crate) mod clients_tested;
pub(crate) mod cross_site;
pub(crate) mod flow;
pub(crate) mod hardening;
pub(crate) mod issuers;
pub(crate) mod rules;
pub(crate) mod trust;
