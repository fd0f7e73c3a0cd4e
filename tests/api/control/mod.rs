//! The control API (`/v1`): rules, the scope matrix, secrets, invitations, declared servers,
//! and the OpenAPI document.

pub(crate) mod declared;
pub(crate) mod invitations;
pub(crate) mod leavers;
pub(crate) mod matrix;
pub(crate) mod openapi;
pub(crate) mod rules;
pub(crate) mod secrets;
