//! A browser-like driver for the authorization server's HTML pages, and the fixtures the
//! `oauth_*` tests share: a project with a server routed to a fake upstream, clients, PKCE,
//! the token endpoint and the front door.
//!
//! The driver keeps cookies and never follows redirects on its own: it follows a redirect only
//! while it stays on the server, and stops at the first one that leaves for the client's
//! redirect URI (nothing listens there; the `Location` header is parsed instead).
#![allow(dead_code)]

use std::collections::BTreeSet;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

use crate::fakes::FakeUpstream;
use crate::helpers::{ADMIN_EMAIL, ADMIN_PASSWORD, ApiResponse, McpRequest, TestApp};

mod authorize;
mod html;
mod page;
mod tokens;
mod world;

pub use authorize::*;
pub use html::*;
pub use page::*;
pub use tokens::*;
pub use world::*;

/// The redirect URI most tests register (a loopback: any port matches).
pub const REDIRECT: &str = "http://127.0.0.1:43210/callback";
