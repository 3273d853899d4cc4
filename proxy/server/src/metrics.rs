//! The proxy's Prometheus metrics: requests, latency and errors per route and side,
//! comparisons by result, the new side's share per route, guard aborts and reloads.
//! Labels are route names, sides and categories only: never paths with ids, tokens or
//! personal data.

use std::sync::atomic::AtomicI64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: String,
    pub side: &'static str,
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SideLabels {
    pub route: String,
    pub side: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub route: String,
    pub side: &'static str,
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ComparisonLabels {
    pub route: String,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabels {
    pub route: String,
    pub kind: &'static str,
    /// `answer` (the replayed answer) or `effect` (the written state on both sides).
    pub compared: &'static str,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabel {
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AbortLabels {
    pub route: String,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CauseLabel {
    pub cause: &'static str,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 17))
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub latency: Histograms<SideLabels>,
    pub errors: Family<ErrorLabels, Counter>,
    pub shadow_requests: Family<SideLabels, Counter>,
    pub comparisons: Family<ComparisonLabels, Counter>,
    /// Writes by route, kind, what was compared (answer, effect) and result.
    pub writes: Family<WriteLabels, Counter>,
    pub new_share: Family<RouteLabel, Gauge<i64, AtomicI64>>,
    pub guard_aborted: Family<RouteLabel, Gauge<i64, AtomicI64>>,
    pub guard_aborts: Family<AbortLabels, Counter>,
    pub fallbacks: Family<RouteLabel, Counter>,
    pub fallbacks_to_new: Family<RouteLabel, Counter>,
    pub reloads: Family<ReloadLabels, Counter>,
    /// Requests forwarded as a stream (not retried, replayed or compared), by cause.
    pub streamed: Family<CauseLabel, Counter>,
    /// Requests and connections a limit ended, by which limit.
    pub limited: Family<CauseLabel, Counter>,
    /// Bytes of bodies held in memory now (the body budget in use).
    pub buffered_body_bytes: Gauge<i64, AtomicI64>,
    /// The body budget's limit.
    pub buffered_body_limit_bytes: Gauge<i64, AtomicI64>,
    /// Client connections open now.
    pub open_connections: Gauge<i64, AtomicI64>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("proxy");
        let m = Self {
            requests: Family::default(),
            latency: Family::new_with_constructor(latency),
            errors: Family::default(),
            shadow_requests: Family::default(),
            comparisons: Family::default(),
            writes: Family::default(),
            new_share: Family::default(),
            guard_aborted: Family::default(),
            guard_aborts: Family::default(),
            fallbacks: Family::default(),
            fallbacks_to_new: Family::default(),
            reloads: Family::default(),
            streamed: Family::default(),
            limited: Family::default(),
            buffered_body_bytes: Gauge::default(),
            buffered_body_limit_bytes: Gauge::default(),
            open_connections: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "requests",
            "Client requests by route, serving side and status code",
            m.requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Upstream latency by route and side (primary and shadow)",
            m.latency.clone(),
        );
        registry.register(
            "upstream_errors",
            "Upstream failures by route, side and kind",
            m.errors.clone(),
        );
        registry.register(
            "shadow_requests",
            "Replayed requests by route and the side they went to",
            m.shadow_requests.clone(),
        );
        registry.register(
            "comparisons",
            "Shadow comparisons by route and result",
            m.comparisons.clone(),
        );
        registry.register(
            "writes",
            "Writes by route, kind (sign_up, profile_update, ...), what was compared (answer: the replay's answer; effect: the member written, on both sides) and result (match, mismatch, not_comparable, unresolved, unavailable, ...)",
            m.writes.clone(),
        );
        registry.register(
            "new_share_basis_points",
            "The new side's share per route (0-10000) in force",
            m.new_share.clone(),
        );
        registry.register(
            "guard_aborted",
            "1 while the guard holds a route aborted",
            m.guard_aborted.clone(),
        );
        registry.register(
            "guard_aborts",
            "Guard aborts by route and reason",
            m.guard_aborts.clone(),
        );
        registry.register(
            "fallbacks",
            "Safe requests the new side failed, answered by the legacy instead",
            m.fallbacks.clone(),
        );
        registry.register(
            "fallbacks_to_new",
            "Safe requests the legacy failed, answered by the new side instead (fallback.to_new)",
            m.fallbacks_to_new.clone(),
        );
        registry.register(
            "reloads",
            "Reloads of the VirtualService and config by result",
            m.reloads.clone(),
        );
        registry.register(
            "streamed_requests",
            "Requests forwarded as a stream, uncompared, by cause (too_large, over_budget)",
            m.streamed.clone(),
        );
        registry.register(
            "limited",
            "Requests and connections ended by a limit, by cause (body_read_timeout, answer_timeout, max_connections, idle)",
            m.limited.clone(),
        );
        registry.register(
            "buffered_body_bytes",
            "Bytes of request and answer bodies held in memory now",
            m.buffered_body_bytes.clone(),
        );
        registry.register(
            "buffered_body_limit_bytes",
            "The most bytes of bodies the proxy holds at once (limits.max_buffered_body_bytes)",
            m.buffered_body_limit_bytes.clone(),
        );
        registry.register(
            "open_connections",
            "Client connections open now",
            m.open_connections.clone(),
        );
        Self { registry, ..m }
    }

    /// Counts one comparison (or skipped one) of `route` by its result.
    pub fn count_comparison(&self, route: &str, result: &'static str) {
        self.comparisons
            .get_or_create(&ComparisonLabels {
                route: route.to_owned(),
                result,
            })
            .inc();
    }

    /// Counts one write of `route` by kind, what was compared and result.
    pub fn count_write(
        &self,
        route: &str,
        kind: &'static str,
        compared: &'static str,
        result: &'static str,
    ) {
        self.writes
            .get_or_create(&WriteLabels {
                route: route.to_owned(),
                kind,
                compared,
                result,
            })
            .inc();
    }

    /// Counts one event of a limit.
    pub fn count_limited(&self, cause: &'static str) {
        self.limited.get_or_create(&CauseLabel { cause }).inc();
    }

    pub fn observe(&self, route: &str, side: &'static str, elapsed: Duration) {
        self.latency
            .get_or_create(&SideLabels {
                route: route.to_owned(),
                side,
            })
            .observe(elapsed.as_secs_f64());
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
