//! One rule of the route table, checked and compiled: where its requests go (the legacy
//! and new upstreams with their weights and the new side's share), where they are
//! shadowed, and the timeout, retries and header changes that apply.

use std::time::Duration;

use http::HeaderMap;

use crate::hash::{BUCKETS, Bucket};
use crate::headers::HeaderOps;
use crate::matcher::MatchEntry;
use crate::split::{Side, side_of};

/// A destination of a rule: an upstream of the proxy config and its relative weight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightedUpstream {
    /// The upstream's key in the proxy config (the destination host, fully qualified).
    pub host: String,
    /// Its weight relative to the rule's other destination.
    pub weight: u32,
}

/// A shadow target: requests served by the other side are replayed here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shadow {
    /// The upstream's key in the proxy config.
    pub host: String,
    /// Its side (the opposite of the side whose requests it receives).
    pub side: Side,
    /// The share of those requests replayed.
    pub percentage: Percentage,
}

/// A share of requests, held exactly in parts per million (Istio's `Percent` is a
/// double from 0 to 100; six decimals of a percent are far below what it can mean).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Percentage(u32);

impl Percentage {
    /// One million parts: all requests.
    pub const ALL: Percentage = Percentage(1_000_000);

    /// A percentage from 0.0 to 100.0, rounded to the nearest part per million; `None`
    /// outside that range or for NaN.
    pub fn from_percent(percent: f64) -> Option<Percentage> {
        if !(0.0..=100.0).contains(&percent) {
            return None;
        }
        Some(Percentage((percent * 10_000.0).round() as u32))
    }

    /// Parts per million.
    pub fn ppm(self) -> u32 {
        self.0
    }

    /// As a percentage, for display.
    pub fn as_percent(self) -> f64 {
        f64::from(self.0) / 10_000.0
    }

    /// Whether a draw uniform in `0..1_000_000` falls in this share.
    pub fn includes(self, draw: u32) -> bool {
        draw < self.0
    }
}

/// When a failed try is retried (Istio's `retryOn`, Envoy's conditions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RetryOn {
    /// `5xx`: any 5xx status, a reset or a connect failure.
    ServerError,
    /// `gateway-error`: 502, 503 or 504.
    GatewayError,
    /// `reset`: no response (disconnect, reset, read timeout).
    Reset,
    /// `reset-before-request`: reset before the request was sent.
    ResetBeforeRequest,
    /// `connect-failure`: the connection could not be opened.
    ConnectFailure,
    /// `refused-stream`: the upstream refused the HTTP/2 stream.
    RefusedStream,
    /// `retriable-4xx`: 409.
    Retriable4xx,
    /// A listed status code (`503`).
    Status(u16),
}

impl RetryOn {
    /// Whether a response with `status` is retried under this condition.
    pub fn covers_status(self, status: u16) -> bool {
        match self {
            RetryOn::ServerError => (500..600).contains(&status),
            RetryOn::GatewayError => matches!(status, 502..=504),
            RetryOn::Retriable4xx => status == 409,
            RetryOn::Status(code) => code == status,
            RetryOn::Reset
            | RetryOn::ResetBeforeRequest
            | RetryOn::ConnectFailure
            | RetryOn::RefusedStream => false,
        }
    }
}

/// A rule's retry policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retries {
    /// Retries after the first try (at least 1: a rule with `attempts: 0` has none).
    pub attempts: u32,
    /// Timeout of each try; absent: the rule's timeout bounds them all.
    pub per_try_timeout: Option<Duration>,
    /// The conditions retried; when `retryOn` is absent, Istio's default without its
    /// gRPC-only conditions: `connect-failure`, `refused-stream`, `503`.
    pub retry_on: Vec<RetryOn>,
    /// Least time between tries.
    pub backoff: Option<Duration>,
}

impl Retries {
    /// Whether a response with `status` may be retried.
    pub fn retries_status(&self, status: u16) -> bool {
        self.retry_on
            .iter()
            .any(|condition| condition.covers_status(status))
    }
}

/// One rule of the route table.
#[derive(Debug, Clone)]
pub struct Route {
    pub(crate) name: String,
    pub(crate) matches: Vec<MatchEntry>,
    pub(crate) legacy: Option<WeightedUpstream>,
    pub(crate) new: Option<WeightedUpstream>,
    pub(crate) manifest_basis_points: u32,
    pub(crate) basis_points: u32,
    pub(crate) shadows: Vec<Shadow>,
    pub(crate) timeout: Duration,
    pub(crate) retries: Option<Retries>,
    pub(crate) headers: HeaderOps,
}

impl Route {
    /// The rule's `name`, or `rule-N` for the unnamed `spec.http[N]`: the route's name in
    /// metrics and in the admin API.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The legacy destination, if the rule has one.
    pub fn legacy_upstream(&self) -> Option<&WeightedUpstream> {
        self.legacy.as_ref()
    }

    /// The new destination, if the rule has one.
    pub fn new_upstream(&self) -> Option<&WeightedUpstream> {
        self.new.as_ref()
    }

    /// The destination of `side`, if the rule has one.
    pub fn upstream(&self, side: Side) -> Option<&WeightedUpstream> {
        match side {
            Side::Legacy => self.legacy_upstream(),
            Side::New => self.new_upstream(),
        }
    }

    /// The new side's share in basis points (0 to 10 000): its weight over the total,
    /// rounded down, or the runtime override when there is one.
    pub fn new_share_basis_points(&self) -> u32 {
        self.basis_points
    }

    /// The share the VirtualService gives, whatever the override.
    pub fn manifest_basis_points(&self) -> u32 {
        self.manifest_basis_points
    }

    /// Whether a runtime override changed the share.
    pub fn is_overridden(&self) -> bool {
        self.basis_points != self.manifest_basis_points
    }

    /// The side a key in `bucket` is sent to. Always a side the rule has a destination
    /// for: a rule without a new destination has share 0, one without a legacy 10 000.
    pub fn side_for(&self, bucket: Bucket) -> Side {
        side_of(bucket, self.basis_points)
    }

    /// The shadow target for requests served by `primary`: the mirror on the other side.
    pub fn shadow(&self, primary: Side) -> Option<&Shadow> {
        self.shadows
            .iter()
            .find(|shadow| shadow.side == primary.other())
    }

    /// The share, in percent, of `primary`'s requests that are shadowed (0 without a
    /// mirror on the other side).
    pub fn shadow_percent(&self, primary: Side) -> f64 {
        self.shadow(primary)
            .map_or(0.0, |shadow| shadow.percentage.as_percent())
    }

    /// Every shadow target, at most one per side.
    pub fn shadows(&self) -> &[Shadow] {
        &self.shadows
    }

    /// Timeout of the whole request: the rule's `timeout`, else the proxy config's
    /// `timeouts.request`.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The retry policy; `None` when the rule asks for no retries (the proxy does not
    /// apply Istio's mesh-wide default of two retries: a retried sign-up is a second
    /// sign-up).
    pub fn retries(&self) -> Option<&Retries> {
        self.retries.as_ref()
    }

    /// The header changes of the rule.
    pub fn headers(&self) -> &HeaderOps {
        &self.headers
    }

    /// Whether a request matches one of the rule's `match` entries (a rule without
    /// entries matches everything).
    pub fn matches(&self, method: &str, path: &str, headers: &HeaderMap) -> bool {
        self.matches.is_empty()
            || self
                .matches
                .iter()
                .any(|entry| entry.matches(method, path, headers))
    }

    /// Sets the share, clamped to what the destinations allow.
    pub(crate) fn set_share(&mut self, basis_points: u32) {
        self.basis_points = match (&self.legacy, &self.new) {
            (_, None) => 0,
            (None, _) => BUCKETS,
            _ => basis_points.min(BUCKETS),
        };
    }
}
