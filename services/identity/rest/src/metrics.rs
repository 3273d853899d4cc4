//! Prometheus metrics of the service: requests and latency per REST endpoint and per
//! gRPC method. Labels are endpoint templates and status codes only: never ids, emails
//! or tokens.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
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
    method: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabel {
    method: String,
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
        Self {
            registry,
            http_requests,
            http_latency,
            grpc_requests,
            grpc_latency,
        }
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

    pub fn observe_grpc(&self, method: &str, code: &str, elapsed: Duration) {
        self.grpc_requests
            .get_or_create(&GrpcLabels {
                method: method.to_owned(),
                code: code.to_owned(),
            })
            .inc();
        self.grpc_latency
            .get_or_create(&MethodLabel {
                method: method.to_owned(),
            })
            .observe(elapsed.as_secs_f64());
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
