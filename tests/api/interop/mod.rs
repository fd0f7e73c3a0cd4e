//! Interop with what is outside, for real: the official MCP SDKs (npm, PyPI) and a headless
//! Chromium.

pub(crate) mod chromium;
pub(crate) mod sdk;
