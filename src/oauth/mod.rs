//! The built-in authorization server (managed mode).

pub mod grants;
pub mod keys;
