//! The built-in authorization server (managed mode).

pub mod keys;
