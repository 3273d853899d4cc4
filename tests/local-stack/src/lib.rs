//! The whole migration on one machine: the legacy simulator seeded with members, the
//! identity service back-filled from it and migrating (sync and write-through), the
//! migration proxy in front at a small weight with shadowing, and synthetic clients.
//! `local-stack` runs it for a demo; `rehearsal` drives it through a whole rollout and
//! cutover (the rollout tests, and `local-stack --rehearse` against the Rails app).

pub mod rehearsal;
pub mod stack;
pub mod traffic;

pub use stack::{LegacySource, Stack, StackOptions};
pub use traffic::{Event, EventKind, Traffic, TrafficReport};
