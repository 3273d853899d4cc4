//! What the guard decides for a route ([`Decision`]), why it aborted ([`AbortReason`])
//! and the state it keeps ([`RouteState`]).

use std::fmt;
use std::time::Instant;

use serde::Serialize;

/// Why a route's rollout was aborted: the metric, its value and the threshold.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "metric", rename_all = "snake_case")]
pub enum AbortReason {
    /// The new side's error rate crossed the threshold (when so configured, beyond the
    /// legacy's).
    ErrorRate {
        /// The new side's error rate over the window.
        new: f64,
        /// The legacy's error rate over the same window.
        legacy: f64,
        /// The configured `max_error_rate`.
        threshold: f64,
    },
    /// The new side failed this many requests in a row.
    ConsecutiveErrors {
        /// Failures since its last success.
        count: u64,
        /// The configured `max_consecutive_errors`.
        threshold: u64,
    },
    /// Mismatches over compared pairs (noise excluded) crossed the threshold.
    MismatchRate {
        /// The mismatch rate over the window.
        rate: f64,
        /// The configured `max_mismatch_rate`.
        threshold: f64,
    },
    /// The new side's p99 latency over the legacy's crossed the threshold.
    LatencyP99 {
        /// The new side's p99, in milliseconds.
        new_ms: f64,
        /// The legacy's p99, in milliseconds.
        legacy_ms: f64,
        /// `new_ms / legacy_ms`.
        ratio: f64,
        /// The configured `max_p99_ratio`.
        threshold: f64,
    },
}

impl AbortReason {
    /// Every label [`AbortReason::metric`] gives.
    pub const METRICS: [&'static str; 4] = [
        "error_rate",
        "consecutive_errors",
        "mismatch_rate",
        "latency_p99",
    ];

    /// The metric that crossed its threshold, as a stable label (one of
    /// [`AbortReason::METRICS`]).
    pub fn metric(&self) -> &'static str {
        match self {
            AbortReason::ErrorRate { .. } => "error_rate",
            AbortReason::ConsecutiveErrors { .. } => "consecutive_errors",
            AbortReason::MismatchRate { .. } => "mismatch_rate",
            AbortReason::LatencyP99 { .. } => "latency_p99",
        }
    }
}

impl fmt::Display for AbortReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AbortReason::ErrorRate {
                new,
                legacy,
                threshold,
            } => write!(
                f,
                "new side error rate {:.2}% >= {:.2}% (legacy {:.2}%)",
                new * 100.0,
                threshold * 100.0,
                legacy * 100.0
            ),
            AbortReason::ConsecutiveErrors { count, threshold } => write!(
                f,
                "new side failed {count} requests in a row (limit {threshold})"
            ),
            AbortReason::MismatchRate { rate, threshold } => write!(
                f,
                "mismatch rate {:.2}% >= {:.2}%",
                rate * 100.0,
                threshold * 100.0
            ),
            AbortReason::LatencyP99 {
                new_ms,
                legacy_ms,
                ratio,
                threshold,
            } => write!(
                f,
                "new side p99 {new_ms:.1} ms is {ratio:.2}x the legacy's {legacy_ms:.1} ms (limit {threshold:.2}x)"
            ),
        }
    }
}

/// The guard's verdict on a route.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Go on.
    Healthy,
    /// The route is aborted: its new weight must be 0 until it is resumed.
    Abort {
        /// Why.
        reason: AbortReason,
        /// When the route aborted.
        at: Instant,
        /// True only for the evaluation that aborted the route (log and alert once);
        /// false while it stays aborted.
        newly: bool,
    },
}

impl Decision {
    /// True for [`Decision::Abort`].
    pub fn is_abort(&self) -> bool {
        matches!(self, Decision::Abort { .. })
    }
}

/// A route's rollout state.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum RouteState {
    /// Rolling out; the configured weight applies.
    #[default]
    Running,
    /// Aborted: the new weight is 0 until [`crate::Guard::resume`].
    Aborted {
        /// Why.
        reason: AbortReason,
        /// When.
        at: Instant,
    },
}

impl RouteState {
    /// `running` or `aborted`, as a stable label.
    pub fn name(&self) -> &'static str {
        match self {
            RouteState::Running => "running",
            RouteState::Aborted { .. } => "aborted",
        }
    }

    /// True when aborted.
    pub fn is_aborted(&self) -> bool {
        matches!(self, RouteState::Aborted { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_read_well_and_serialise_with_their_metric() {
        let reason = AbortReason::ErrorRate {
            new: 0.125,
            legacy: 0.01,
            threshold: 0.05,
        };
        assert_eq!(
            reason.to_string(),
            "new side error rate 12.50% >= 5.00% (legacy 1.00%)"
        );
        let json = serde_json::to_value(&reason).unwrap();
        assert_eq!(json["metric"], "error_rate");
        assert_eq!(json["new"], 0.125);
        let latency = AbortReason::LatencyP99 {
            new_ms: 120.0,
            legacy_ms: 40.0,
            ratio: 3.0,
            threshold: 2.0,
        };
        assert_eq!(latency.metric(), "latency_p99");
        assert!(latency.to_string().contains("3.00x"));
    }
}
