//! The SREs' rollout tool: reads the proxy's admin API, edits the weights in the
//! VirtualService manifest (the source of truth, for GitOps) and refuses unsafe steps.

pub mod manifest;
pub mod plan;
pub mod status;
