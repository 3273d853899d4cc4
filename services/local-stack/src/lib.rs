//! The whole migration on one machine: the legacy simulator seeded with members, the
//! identity service back-filled from it and migrating (sync and write-through), the
//! migration proxy in front at a small weight with shadowing, and synthetic clients.
//! `local-stack` runs it for a demo; the rollout test drives it through a rollout.

pub mod stack;
pub mod traffic;

pub use stack::{Stack, StackOptions};
pub use traffic::{Traffic, TrafficReport};
