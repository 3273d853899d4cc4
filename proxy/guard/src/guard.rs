//! The guard itself: per-route windows and abort states behind one map, fed by the
//! proxy with each request and comparison, and asked for a decision.
//!
//! Shared by reference between the proxy's tasks (`&self` everywhere): a read lock on
//! the route map and a mutex per route, so that routes do not contend with each other;
//! the map's write lock is taken only when a route is first seen.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use shadow_compare::{Category, Outcome, Side};

use crate::config::{ConfigError, GuardConfig};
use crate::decision::{AbortReason, Decision, RouteState};
use crate::snapshot::RouteSnapshot;
use crate::window::{Totals, Window};

/// One route's window and state.
#[derive(Debug)]
pub(crate) struct RouteGuard {
    pub(crate) window: Window,
    state: RouteState,
    /// The new side's failures since its last success.
    new_failures_in_a_row: u64,
    /// Whether the legacy's last request failed (a dependency both share may be down).
    legacy_failing: bool,
}

/// Per-route sliding-window figures and abort states; see the crate documentation.
#[derive(Debug)]
pub struct Guard {
    /// Replaced by [`Guard::reconfigure`] (a reload of the proxy's config).
    config: RwLock<GuardConfig>,
    routes: RwLock<HashMap<String, Mutex<RouteGuard>>>,
}

impl Guard {
    /// A guard with no route yet; the configuration is validated.
    pub fn new(config: GuardConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self {
            config: RwLock::new(config),
            routes: RwLock::new(HashMap::new()),
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> GuardConfig {
        self.config
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Applies new thresholds (a reload); `Ok(false)` when nothing changed. Abort
    /// states stay as they are. When the window's shape changes (its length, bucket
    /// width or field bounds), every route's window starts afresh: figures of one shape
    /// cannot be judged against another's thresholds.
    pub fn reconfigure(&self, config: GuardConfig, now: Instant) -> Result<bool, ConfigError> {
        config.validate()?;
        let current = self.config();
        if current == config {
            return Ok(false);
        }
        let reshaped = current.window_secs != config.window_secs
            || current.bucket_ms != config.bucket_ms
            || current.fields_per_bucket != config.fields_per_bucket;
        // The config lock is not held while route locks are taken (an evaluation takes
        // them the other way round).
        *self.config.write().unwrap_or_else(PoisonError::into_inner) = config.clone();
        if reshaped {
            let routes = self.routes.read().unwrap_or_else(PoisonError::into_inner);
            for entry in routes.values() {
                let mut r = entry.lock().unwrap_or_else(PoisonError::into_inner);
                r.window = Window::new(&config, now);
            }
        }
        Ok(true)
    }

    /// Runs `f` on `route`, creating it (when under `max_routes`) if `create`.
    pub(crate) fn with_route<R>(
        &self,
        route: &str,
        create: Option<Instant>,
        f: impl FnOnce(&mut RouteGuard) -> R,
    ) -> Option<R> {
        {
            let routes = self.routes.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(entry) = routes.get(route) {
                let mut entry = entry.lock().unwrap_or_else(PoisonError::into_inner);
                return Some(f(&mut entry));
            }
        }
        let now = create?;
        let config = self.config();
        let mut routes = self.routes.write().unwrap_or_else(PoisonError::into_inner);
        if !routes.contains_key(route) && routes.len() >= config.max_routes {
            return None;
        }
        let entry = routes.entry(route.to_owned()).or_insert_with(|| {
            Mutex::new(RouteGuard {
                window: Window::new(&config, now),
                state: RouteState::Running,
                new_failures_in_a_row: 0,
                legacy_failing: false,
            })
        });
        let entry = entry.get_mut().unwrap_or_else(PoisonError::into_inner);
        Some(f(entry))
    }

    /// Records one request sent to `side` on `route` (primary or shadow): its latency
    /// and whether it failed (5xx, connection failure, timeout; a 4xx is not an error).
    pub fn record_request(
        &self,
        route: &str,
        side: Side,
        latency: Duration,
        is_error: bool,
        now: Instant,
    ) {
        self.with_route(route, Some(now), |r| {
            r.window.record_request(side, latency, is_error, now);
            match side {
                Side::New if is_error => r.new_failures_in_a_row += 1,
                Side::New => r.new_failures_in_a_row = 0,
                Side::Legacy => r.legacy_failing = is_error,
            }
        });
    }

    /// Records one comparison's category.
    pub fn record_comparison(&self, route: &str, category: Category, now: Instant) {
        self.with_route(route, Some(now), |r| {
            r.window.record_comparison(category, &[], now);
        });
    }

    /// Records one comparison's outcome: its category and, for a mismatch, its
    /// differing fields (for the top differing fields).
    pub fn record_outcome(&self, route: &str, outcome: &Outcome, now: Instant) {
        self.with_route(route, Some(now), |r| {
            r.window
                .record_comparison(outcome.category(), outcome.mismatch_fields(), now);
        });
    }

    /// Decides on `route` at `now`. An aborted route stays aborted (the same reason and
    /// instant, `newly` false) until [`Guard::resume`]; otherwise, if a figure over the
    /// window crosses its threshold, the route aborts now (`newly` true). The figures
    /// are checked in this order, the first crossed being the reason:
    ///
    /// 1. error rate: with at least `min_requests` new-side requests, the new side's
    ///    error rate is at least `max_error_rate` above the legacy's (when
    ///    `error_rate_relative_to_legacy`; the legacy's rate is 0 without requests),
    ///    or at least `max_error_rate` (when not);
    /// 2. mismatch rate: with at least `min_comparisons` compared pairs, mismatches over
    ///    compared pairs (match + noise + mismatch) is at least `max_mismatch_rate`.
    ///    Noise is compared but not a mismatch; legacy-5xx-against-new-4xx pairs and
    ///    skipped ones are in neither count;
    /// 3. latency: with at least `min_requests` requests on each side, the new side's
    ///    p99 is at least `p99_floor_ms` and at least `max_p99_ratio` times the legacy's.
    ///
    /// Before them, whatever the window holds: `max_consecutive_errors` new-side
    /// failures in a row (a route too quiet to reach `min_requests` fails them all),
    /// unless, when `error_rate_relative_to_legacy`, the legacy's last request failed too.
    pub fn evaluate(&self, route: &str, now: Instant) -> Decision {
        let decision = self.with_route(route, None, |r| {
            if let RouteState::Aborted { reason, at } = &r.state {
                return Decision::Abort {
                    reason: reason.clone(),
                    at: *at,
                    newly: false,
                };
            }
            let c = self.config();
            let in_a_row = (c.max_consecutive_errors > 0
                && r.new_failures_in_a_row >= c.max_consecutive_errors
                && !(c.error_rate_relative_to_legacy && r.legacy_failing))
                .then_some(AbortReason::ConsecutiveErrors {
                    count: r.new_failures_in_a_row,
                    threshold: c.max_consecutive_errors,
                });
            match in_a_row.or_else(|| check(&c, &r.window.totals(now))) {
                None => Decision::Healthy,
                Some(reason) => {
                    r.state = RouteState::Aborted {
                        reason: reason.clone(),
                        at: now,
                    };
                    Decision::Abort {
                        reason,
                        at: now,
                        newly: true,
                    }
                }
            }
        });
        decision.unwrap_or(Decision::Healthy)
    }

    /// The state of `route` (`Running` for a route never seen).
    pub fn state(&self, route: &str) -> RouteState {
        self.with_route(route, None, |r| r.state.clone())
            .unwrap_or_default()
    }

    /// Resumes an aborted route and starts its window afresh at `now`, so that the
    /// figures that caused the abort do not abort it again at once. Returns whether
    /// the route was aborted.
    pub fn resume(&self, route: &str, now: Instant) -> bool {
        self.with_route(route, None, |r| {
            let was = r.state.is_aborted();
            r.state = RouteState::Running;
            r.window.reset(now);
            r.new_failures_in_a_row = 0;
            r.legacy_failing = false;
            was
        })
        .unwrap_or(false)
    }

    /// The figures of `route` at `now`, if it was ever seen.
    pub fn route_snapshot(&self, route: &str, now: Instant) -> Option<RouteSnapshot> {
        let top_fields = self.config().top_fields;
        self.with_route(route, None, |r| {
            RouteSnapshot::new(route, &r.state, r.window.totals(now), top_fields, now)
        })
    }

    /// The figures of every route at `now`, by route name.
    pub fn snapshot(&self, now: Instant) -> Vec<RouteSnapshot> {
        let top_fields = self.config().top_fields;
        let routes = self.routes.read().unwrap_or_else(PoisonError::into_inner);
        let mut out: Vec<RouteSnapshot> = routes
            .iter()
            .map(|(route, entry)| {
                let r = entry.lock().unwrap_or_else(PoisonError::into_inner);
                RouteSnapshot::new(route, &r.state, r.window.totals(now), top_fields, now)
            })
            .collect();
        out.sort_by(|a, b| a.route.cmp(&b.route));
        out
    }
}

/// The first threshold of `c` crossed by these figures (see [`Guard::evaluate`]).
fn check(c: &GuardConfig, totals: &Totals) -> Option<AbortReason> {
    let (new, legacy) = (totals.side(Side::New), totals.side(Side::Legacy));
    if new.requests >= c.min_requests {
        let (new_rate, legacy_rate) = (new.error_rate(), legacy.error_rate());
        // Relative: only the share of failures beyond the legacy's is the new side's.
        let own = if c.error_rate_relative_to_legacy {
            new_rate - legacy_rate
        } else {
            new_rate
        };
        if own >= c.max_error_rate {
            return Some(AbortReason::ErrorRate {
                new: new_rate,
                legacy: legacy_rate,
                threshold: c.max_error_rate,
            });
        }
    }
    if totals.compared() >= c.min_comparisons {
        let rate = totals.mismatch_rate();
        if rate >= c.max_mismatch_rate {
            return Some(AbortReason::MismatchRate {
                rate,
                threshold: c.max_mismatch_rate,
            });
        }
    }
    if new.requests >= c.min_requests && legacy.requests >= c.min_requests {
        let new_ms = new.latency.quantile_ms(0.99)?;
        let legacy_ms = legacy.latency.quantile_ms(0.99)?;
        // A legacy p99 under a microsecond would make any ratio huge.
        let ratio = new_ms / legacy_ms.max(0.001);
        if new_ms >= c.p99_floor_ms && ratio >= c.max_p99_ratio {
            return Some(AbortReason::LatencyP99 {
                new_ms,
                legacy_ms,
                ratio,
                threshold: c.max_p99_ratio,
            });
        }
    }
    None
}
