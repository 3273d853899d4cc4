//! Prometheus metrics of the service: requests and latency per REST endpoint and per
//! gRPC method, the requests it could not answer by cause, and while migrating the
//! legacy sync (polls, rows applied, lag, which replica leads). Labels are endpoint templates and status codes only: never ids,
//! emails or tokens.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    endpoint: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabel {
    endpoint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GrpcLabels {
    method: &'static str,
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabel {
    method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PollLabel {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LookupLabel {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CauseLabel {
    cause: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 100 µs to about 6.5 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 17))
}

/// The service's metrics and their registry.
pub struct Metrics {
    registry: Registry,
    http_requests: Family<HttpLabels, Counter>,
    http_latency: HistogramFamily<EndpointLabel>,
    grpc_requests: Family<GrpcLabels, Counter>,
    grpc_latency: HistogramFamily<MethodLabel>,
    sync_polls: Family<PollLabel, Counter>,
    sync_applied: Counter,
    sync_lag: Histogram,
    sync_leader: Gauge,
    migrating: Gauge,
    http_in_flight: Gauge,
    session_cache_serving: Gauge,
    session_cache_entries: Gauge,
    session_cache_lookups: Family<LookupLabel, Counter>,
    failures: Family<CauseLabel, Counter>,
}

/// One REST request in flight; counted until dropped.
pub struct InFlight<'a>(&'a Gauge);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("identity");
        let http_requests = Family::<HttpLabels, Counter>::default();
        let http_latency: HistogramFamily<EndpointLabel> =
            Family::new_with_constructor(latency_histogram);
        let grpc_requests = Family::<GrpcLabels, Counter>::default();
        let grpc_latency: HistogramFamily<MethodLabel> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "http_requests",
            "REST requests by endpoint and status",
            http_requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "REST request latency by endpoint",
            http_latency.clone(),
        );
        registry.register(
            "grpc_requests",
            "gRPC requests by method and status code",
            grpc_requests.clone(),
        );
        registry.register(
            "grpc_request_duration_seconds",
            "gRPC request latency by method",
            grpc_latency.clone(),
        );
        let sync_polls = Family::<PollLabel, Counter>::default();
        let sync_applied = Counter::default();
        // 10 ms to about 40 s.
        let sync_lag = Histogram::new(exponential_buckets(0.01, 2.0, 13));
        let sync_leader = Gauge::default();
        let migrating = Gauge::default();
        registry.register(
            "sync_polls",
            "Polls of the legacy sync by result (synced, standby: another replica leads, failed)",
            sync_polls.clone(),
        );
        registry.register(
            "sync_applied_rows",
            "Legacy rows applied by the sync",
            sync_applied.clone(),
        );
        registry.register(
            "sync_lag_seconds",
            "From a legacy row's updated_at to its application here",
            sync_lag.clone(),
        );
        registry.register(
            "sync_leader",
            "1 while this replica runs the legacy sync",
            sync_leader.clone(),
        );
        registry.register(
            "migrating",
            "1 while writes go through to the legacy database (until cutover)",
            migrating.clone(),
        );
        let http_in_flight = Gauge::default();
        registry.register(
            "http_requests_in_flight",
            "REST requests received and not yet answered",
            http_in_flight.clone(),
        );
        let session_cache_serving = Gauge::default();
        let session_cache_entries = Gauge::default();
        let session_cache_lookups = Family::<LookupLabel, Counter>::default();
        registry.register(
            "session_cache_serving",
            "1 while VerifyAccessToken (and, while migrating, the access check) answers from the session cache (PostgreSQL, hearing every session end)",
            session_cache_serving.clone(),
        );
        registry.register(
            "session_cache_entries",
            "Live sessions kept by the session cache",
            session_cache_entries.clone(),
        );
        registry.register(
            "session_cache_lookups",
            "Session cache look-ups by result (hit, miss: read from the database)",
            session_cache_lookups.clone(),
        );
        let failures = Family::<CauseLabel, Counter>::default();
        // Every cause from the start: an alert on a rate sees 0, not no data.
        for cause in ["hashing_busy", "legacy_database", "database", "internal"] {
            drop(failures.get_or_create(&CauseLabel { cause }));
        }
        registry.register(
            "request_failures",
            "REST requests the service could not answer (503), by cause: hashing_busy (password hashing saturated), legacy_database (the legacy's database failed: a write-through or a read while migrating), database (its own), internal",
            failures.clone(),
        );
        Self {
            registry,
            failures,
            session_cache_serving,
            session_cache_entries,
            session_cache_lookups,
            http_requests,
            http_latency,
            grpc_requests,
            grpc_latency,
            sync_polls,
            http_in_flight,
            sync_applied,
            sync_lag,
            sync_leader,
            migrating,
        }
    }

    /// A REST request the service could not answer, by cause (see
    /// `identity_core::CoreError::failure_cause`).
    pub fn count_failure(&self, cause: &'static str) {
        self.failures.get_or_create(&CauseLabel { cause }).inc();
    }

    /// A REST request starts: in flight until the guard is dropped.
    pub fn in_flight(&self) -> InFlight<'_> {
        self.http_in_flight.inc();
        InFlight(&self.http_in_flight)
    }

    pub fn observe_http(&self, endpoint: &str, status: u16, elapsed: Duration) {
        self.http_requests
            .get_or_create(&HttpLabels {
                endpoint: endpoint.to_owned(),
                status: status.to_string(),
            })
            .inc();
        self.http_latency
            .get_or_create(&EndpointLabel {
                endpoint: endpoint.to_owned(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// The session cache's state, taken at each scrape (its counters only ever grow).
    pub fn observe_session_cache(&self, state: identity_core::SessionCacheState) {
        self.session_cache_serving.set(i64::from(state.trusted));
        self.session_cache_entries
            .set(i64::try_from(state.entries).unwrap_or(i64::MAX));
        for (result, total) in [("hit", state.hits), ("miss", state.misses)] {
            let counter = self
                .session_cache_lookups
                .get_or_create(&LookupLabel { result });
            counter.inc_by(total.saturating_sub(counter.get()));
        }
    }

    /// One gRPC call: its method and status code name (`Ok`, `NotFound`, ...), static
    /// strings, so that counting allocates nothing.
    pub fn observe_grpc(&self, method: &'static str, code: &'static str, elapsed: Duration) {
        self.grpc_requests
            .get_or_create(&GrpcLabels { method, code })
            .inc();
        self.grpc_latency
            .get_or_create(&MethodLabel { method })
            .observe(elapsed.as_secs_f64());
    }

    /// One poll of the legacy sync: `synced` (with the rows applied and their lags),
    /// `standby` (another replica leads) or `failed`.
    pub fn observe_sync_poll(&self, result: &'static str, lags: &[Duration]) {
        self.sync_polls.get_or_create(&PollLabel { result }).inc();
        match result {
            "synced" => self.sync_leader.set(1),
            "standby" => self.sync_leader.set(0),
            _ => 0,
        };
        self.sync_applied.inc_by(lags.len() as u64);
        for lag in lags {
            self.sync_lag.observe(lag.as_secs_f64());
        }
    }

    /// Whether writes go through to the legacy database.
    pub fn set_migrating(&self, migrating: bool) {
        self.migrating.set(i64::from(migrating));
        if !migrating {
            self.sync_leader.set(0);
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
