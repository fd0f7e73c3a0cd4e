#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};

use actix_web::dev::ServerHandle;
use ezforge::{App, Config};

mod api;
mod app;
mod at_rest;
mod fixtures;
mod mcp;
mod servers;

pub use api::*;
pub use app::*;
pub use at_rest::*;
pub use fixtures::*;
pub use mcp::*;
