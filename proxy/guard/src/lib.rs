//! The rollout guard of the migration proxy: per route, over a sliding window, it
//! measures both sides' request and error rates and latencies and the shadow
//! comparisons' outcomes, and aborts the route's rollout when the new side's error
//! rate, the mismatch rate (noise excluded) or its p99 latency relative to the legacy
//! crosses its threshold. An aborted route stays aborted, with its reason, until an SRE
//! resumes it; the proxy sets its new weight to 0 meanwhile.
//!
//! - [`Guard`] takes events ([`Guard::record_request`], [`Guard::record_outcome`]) and
//!   decides ([`Guard::evaluate`] → [`Decision`]); [`Guard::snapshot`] gives the
//!   figures for the admin API, metrics and dashboard.
//! - [`GuardConfig`] holds the thresholds and the window's shape.
//!
//! Pure logic: every call takes the current [`std::time::Instant`], so tests drive time
//! without sleeping. Memory is bounded: a fixed ring of buckets per route, a fixed
//! histogram per bucket and side, a bounded number of fields per bucket and of routes.
//! Each proxy replica guards on its own figures.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use rollout_guard::{Decision, Guard, GuardConfig};
//! use shadow_compare::Side;
//!
//! let guard = Guard::new(GuardConfig { min_requests: 10, ..Default::default() }).unwrap();
//! let t0 = Instant::now();
//! for i in 0..20 {
//!     let now = t0 + Duration::from_millis(100 * i);
//!     guard.record_request("GET /api/v1/users/me", Side::New, Duration::from_millis(3), i % 4 == 0, now);
//! }
//! let decision = guard.evaluate("GET /api/v1/users/me", t0 + Duration::from_secs(2));
//! let Decision::Abort { reason, newly, .. } = decision else { panic!() };
//! assert_eq!((reason.metric(), newly), ("error_rate", true));
//! assert!(guard.state("GET /api/v1/users/me").is_aborted());
//! ```

mod config;
mod decision;
mod guard;
mod histogram;
mod snapshot;
mod window;

pub use config::{ConfigError, GuardConfig, MAX_BUCKETS};
pub use decision::{AbortReason, Decision, RouteState};
pub use guard::Guard;
pub use shadow_compare::{Category, Side};
pub use snapshot::{ComparisonCounts, FieldCount, RouteSnapshot, SideFigures, StateFigures};

#[cfg(test)]
mod properties;
#[cfg(test)]
mod tests;
