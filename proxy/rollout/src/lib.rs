//! The SREs' rollout tool: reads the proxy's admin API, edits the weights in the
//! VirtualService manifest (the source of truth, for GitOps) and refuses unsafe steps;
//! its autopilot moves routes along the plan on evidence alone and its report says
//! whether the legacy may be decommissioned.

pub mod autopilot;
pub mod evidence;
pub mod fleet;
pub mod journal;
pub mod manifest;
pub mod plan;
pub mod report;
pub mod status;
