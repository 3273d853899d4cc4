//! The hostile-client suite: one test binary, one module per target. Each test is named
//! after the attack or the unlucky coincidence it plays, and runs it over real sockets
//! against the real binaries.

#[allow(dead_code)]
mod support;

mod alerts;
mod autopilot;
mod change_stream;
mod cutover;
mod migrating;
mod proxy_limits;
mod proxy_routing;
mod replicas;
mod traces;
mod write_effects;
