//! Per-route figures for the admin API, metrics and the dashboard, taken at one
//! instant over the sliding window. Serialisable as they are (the admin API's JSON);
//! instants are given as ages in seconds.

use std::time::Instant;

use serde::Serialize;
use shadow_compare::{Category, Side};

use crate::decision::{AbortReason, RouteState};
use crate::window::{SideTotals, Totals, ratio};

/// One side's figures over the window.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SideFigures {
    /// Requests sent to this side (primary and shadow).
    pub requests: u64,
    /// Of those, errors (5xx, connection failures, timeouts).
    pub errors: u64,
    /// Requests per second over the span measured.
    pub request_rate: f64,
    /// Errors over requests, in [0, 1]; 0 without requests.
    pub error_rate: f64,
    /// Median latency, in milliseconds (within 1/16).
    pub p50_ms: Option<f64>,
    /// 99th percentile latency, in milliseconds (within 1/16).
    pub p99_ms: Option<f64>,
}

impl SideFigures {
    fn new(side: &SideTotals, span_secs: f64) -> Self {
        Self {
            requests: side.requests,
            errors: side.errors,
            request_rate: if span_secs > 0.0 {
                side.requests as f64 / span_secs
            } else {
                0.0
            },
            error_rate: side.error_rate(),
            p50_ms: side.latency.quantile_ms(0.5),
            p99_ms: side.latency.quantile_ms(0.99),
        }
    }
}

/// Comparisons over the window, by category.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ComparisonCounts {
    /// Equal under the rules.
    pub matches: u64,
    /// Differences in learned noise fields only.
    pub noise: u64,
    /// Real differences.
    pub mismatches: u64,
    /// Legacy 5xx against new 4xx (neither match nor mismatch).
    pub legacy_5xx_new_4xx: u64,
    /// Not compared (body too large, not JSON, shadow failed).
    pub skipped: u64,
}

/// A differing field and how many mismatches it was part of in the window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FieldCount {
    /// The generalised field name (`$.user.nickname`, `status`, `header:content-type`).
    pub field: String,
    /// Mismatches in which it differed.
    pub count: u64,
}

/// A route's state as the snapshot shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum StateFigures {
    /// Rolling out.
    Running,
    /// Aborted, with why and how long ago.
    Aborted {
        /// Why.
        reason: AbortReason,
        /// The reason as one line, for people.
        message: String,
        /// Seconds since the abort.
        secs_ago: f64,
    },
}

/// Everything known of one route at one instant.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RouteSnapshot {
    /// The route.
    pub route: String,
    /// Running or aborted.
    pub state: StateFigures,
    /// Seconds the figures cover (the window, or less for a route seen recently or
    /// resumed recently).
    pub span_secs: f64,
    /// The legacy's figures.
    pub legacy: SideFigures,
    /// The new side's figures.
    pub new: SideFigures,
    /// Comparisons by category.
    pub comparisons: ComparisonCounts,
    /// Mismatches over compared pairs (matches, noise, mismatches), in [0, 1].
    pub mismatch_rate: f64,
    /// The most frequent differing fields, most frequent first (bounded).
    pub top_fields: Vec<FieldCount>,
    /// Differing fields not counted because a bucket already held its maximum.
    pub untracked_fields: u64,
}

impl RouteSnapshot {
    pub(crate) fn new(
        route: &str,
        state: &RouteState,
        totals: Totals,
        top: usize,
        now: Instant,
    ) -> Self {
        let span_secs = totals.span.as_secs_f64();
        let state = match state {
            RouteState::Running => StateFigures::Running,
            RouteState::Aborted { reason, at } => StateFigures::Aborted {
                message: reason.to_string(),
                reason: reason.clone(),
                secs_ago: now.saturating_duration_since(*at).as_secs_f64(),
            },
        };
        let mut top_fields: Vec<FieldCount> = totals
            .fields
            .iter()
            .map(|(field, &count)| FieldCount {
                field: field.clone(),
                count,
            })
            .collect();
        top_fields.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.field.cmp(&b.field)));
        top_fields.truncate(top);
        Self {
            route: route.to_owned(),
            state,
            span_secs,
            legacy: SideFigures::new(totals.side(Side::Legacy), span_secs),
            new: SideFigures::new(totals.side(Side::New), span_secs),
            comparisons: ComparisonCounts {
                matches: totals.count(Category::Match),
                noise: totals.count(Category::Noise),
                mismatches: totals.count(Category::Mismatch),
                legacy_5xx_new_4xx: totals.count(Category::LegacyServerErrorNewClientError),
                skipped: totals.count(Category::Skipped),
            },
            mismatch_rate: ratio(totals.count(Category::Mismatch), totals.compared()),
            top_fields,
            untracked_fields: totals.untracked_fields,
        }
    }
}
