//! The new side's share of each route over time, kept as the changes that made it
//! (start, reload, admin override, abort, resume), so that the dashboard draws the
//! share's history even when it was opened after the change, and an SRE sees when and
//! why a route went to 0. Bounded: the last few changes (the number given to
//! [`ShareHistory::new`]) of each route in the table; routes a reload removed are
//! forgotten. Instants are given as ages in seconds, as the guard's figures are, so no
//! wall clock is involved.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use serde::Serialize;

/// What changed a route's share (or, for `Start`, set it first).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ShareCause {
    /// The proxy started with the manifest's weight.
    Start,
    /// The VirtualService (or the proxy config) was reloaded.
    Reload,
    /// An operator set a weight through the admin API.
    AdminWeight,
    /// An operator cleared the weight override: the manifest's weight applies.
    AdminClear,
    /// An operator aborted the route through the admin API.
    AdminAbort,
    /// An operator resumed the route: the manifest's weight applies.
    AdminResume,
    /// The rollout guard aborted the route.
    GuardAbort,
}

/// One change as the admin API shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ShareChange {
    /// Seconds since the change.
    pub secs_ago: f64,
    /// The new side's share from then on, in percent.
    pub percent: f64,
    /// What changed it.
    pub cause: ShareCause,
}

#[derive(Clone, Copy, Debug)]
struct Point {
    at: Instant,
    basis_points: u32,
    cause: ShareCause,
}

/// The recent share changes of every route. Shareable between threads.
#[derive(Debug)]
pub struct ShareHistory {
    per_route: usize,
    routes: Mutex<HashMap<String, VecDeque<Point>>>,
}

impl ShareHistory {
    /// An empty history keeping `per_route` changes of each route (at least one).
    pub fn new(per_route: usize) -> Self {
        Self {
            per_route: per_route.max(1),
            routes: Mutex::new(HashMap::new()),
        }
    }

    /// Notes that `route`'s share is `basis_points` at `now`. Kept only when it differs
    /// from the last share noted for the route (or none was). Returns whether it was.
    pub fn record(&self, route: &str, basis_points: u32, cause: ShareCause, now: Instant) -> bool {
        let mut routes = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
        let ring = routes.entry(route.to_owned()).or_default();
        if ring.back().is_some_and(|p| p.basis_points == basis_points) {
            return false;
        }
        if ring.len() == self.per_route {
            ring.pop_front();
        }
        ring.push_back(Point {
            at: now,
            basis_points,
            cause,
        });
        true
    }

    /// Forgets the routes for which `keep` is false (those a reload removed).
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        let mut routes = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
        routes.retain(|name, _| keep(name));
    }

    /// The changes of `route`, oldest first.
    pub fn changes(&self, route: &str, now: Instant) -> Vec<ShareChange> {
        let routes = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
        routes.get(route).map_or_else(Vec::new, |ring| {
            ring.iter()
                .map(|p| ShareChange {
                    secs_ago: now.saturating_duration_since(p.at).as_secs_f64(),
                    percent: f64::from(p.basis_points) / 100.0,
                    cause: p.cause,
                })
                .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn only_changes_are_kept_with_their_cause_and_age() {
        let history = ShareHistory::new(8);
        let t0 = Instant::now();
        assert!(history.record("reads", 500, ShareCause::Start, t0));
        // The same share again (a reload of an unchanged rule) is not a change.
        assert!(!history.record(
            "reads",
            500,
            ShareCause::Reload,
            t0 + Duration::from_secs(1)
        ));
        assert!(history.record(
            "reads",
            4200,
            ShareCause::AdminWeight,
            t0 + Duration::from_secs(10)
        ));
        assert!(history.record(
            "reads",
            0,
            ShareCause::GuardAbort,
            t0 + Duration::from_secs(15)
        ));
        let changes = history.changes("reads", t0 + Duration::from_secs(20));
        let seen: Vec<(f64, f64, ShareCause)> = changes
            .iter()
            .map(|c| (c.secs_ago, c.percent, c.cause))
            .collect();
        assert_eq!(
            seen,
            [
                (20.0, 5.0, ShareCause::Start),
                (10.0, 42.0, ShareCause::AdminWeight),
                (5.0, 0.0, ShareCause::GuardAbort),
            ]
        );
        assert!(history.changes("writes", t0).is_empty());
    }

    #[test]
    fn each_route_keeps_a_bounded_number_and_removed_routes_are_forgotten() {
        let history = ShareHistory::new(3);
        let t0 = Instant::now();
        for (i, bp) in [100, 200, 300, 400, 500].into_iter().enumerate() {
            history.record(
                "reads",
                bp,
                ShareCause::Reload,
                t0 + Duration::from_secs(i as u64),
            );
        }
        history.record("writes", 100, ShareCause::Start, t0);
        let kept: Vec<f64> = history
            .changes("reads", t0 + Duration::from_secs(10))
            .iter()
            .map(|c| c.percent)
            .collect();
        assert_eq!(kept, [3.0, 4.0, 5.0]);
        history.retain(|name| name == "reads");
        assert!(history.changes("writes", t0).is_empty());
        assert_eq!(history.changes("reads", t0).len(), 3);
    }
}
