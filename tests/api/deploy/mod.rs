//! Deployments, supervised processes, their env vars, and the sandbox they run in.

pub(crate) mod deployments;
pub(crate) mod env;
pub(crate) mod sandbox;
