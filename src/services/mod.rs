//! The services: each part's state and the operations on it, built once in `app` and handed
//! to the handlers that need them. Below the edges (control, oauth, gateway), above `shared/`.

pub mod accounts;
pub mod gateway;
pub mod keys;
pub mod revocations;
