//! The MCP front door: challenges, policy, forwarding, what the upstream reads, its assertion,
//! where upstreams may point, slugs, and the metrics of what it answered.

pub(crate) mod assertion;
pub(crate) mod confusion;
pub(crate) mod front_door;
pub(crate) mod metrics;
pub(crate) mod slugs;
pub(crate) mod upstream;
