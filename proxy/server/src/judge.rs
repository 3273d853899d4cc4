//! The rollout guard's judgement, applied: after answers and comparisons (at most every
//! `EVALUATION_INTERVAL`) and on the proxy's timer, the guard judges every route, and a
//! route it aborts has its new share set to 0 at once.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::Proxy;

/// Least time between two evaluations of a route by the guard.
const EVALUATION_INTERVAL: Duration = Duration::from_millis(100);

impl Proxy {
    /// Lets the guard judge every route now (the periodic task, and `evaluate_soon`).
    pub fn evaluate_all(&self) {
        let now = Instant::now();
        let snap = self.live.snapshot();
        for route in snap.table.routes() {
            self.judge(route.name(), now);
        }
    }

    /// After an answer or a comparison: the guard judges every route if it has not in
    /// the last EVALUATION_INTERVAL. Merging the windows is not for every answer, and
    /// the check is one atomic load, no lock shared by the workers.
    pub fn evaluate_soon(&self) {
        let now_ms = self.started.elapsed().as_millis() as u64;
        let due = self.evaluation_due_ms.load(Ordering::Relaxed);
        if now_ms < due {
            return;
        }
        let next = now_ms + EVALUATION_INTERVAL.as_millis() as u64;
        if self
            .evaluation_due_ms
            .compare_exchange(due, next, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            self.evaluate_all();
        }
    }

    /// Applies the guard's decision for `route`: an abort sets the new share to 0.
    fn judge(&self, route: &str, now: Instant) {
        let decision = self.guard.evaluate(route, now);
        if let rollout_guard::Decision::Abort {
            reason,
            newly: true,
            ..
        } = decision
        {
            tracing::error!(route, reason = %reason, "rollout guard aborted the route: new share set to 0");
            self.metrics
                .guard_aborts
                .get_or_create(&crate::metrics::AbortLabels {
                    route: route.to_owned(),
                    reason: reason.metric(),
                })
                .inc();
            if let Err(e) = self
                .live
                .update_overrides(|o| o.set_rule(route, 0).map_err(|e| e.to_string()))
            {
                tracing::error!(route, error = %e, "could not apply the abort");
            }
            self.publish_route_gauges(crate::ShareCause::GuardAbort);
        }
    }
}
