//! ezForge Server: an OAuth 2.1 authorization server and MCP front door in one process.
//! See ARCHITECTURE.md for the tour.

pub mod app;
pub mod cli;
pub mod config;
pub mod control;
pub mod crypto;
pub mod data_dir;
pub mod deploy;
pub mod domain;
pub mod error;
pub mod gateway;
pub mod logs;
pub mod metrics;
pub mod oauth;
pub mod outbound;
pub mod shared;
pub mod store;
pub mod telemetry;
pub mod tls;

pub use app::App;
pub use config::Config;
