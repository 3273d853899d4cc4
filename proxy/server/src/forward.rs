//! Forwarding one request to one upstream: a pooled HTTP/1.1 client per worker thread
//! (keep-alive connections per upstream authority), hop-by-hop headers removed, `X-Forwarded-For`,
//! `X-Forwarded-Proto` and `X-Request-Id` set, a per-try timeout, and the error tagged
//! with where it came from and whether a retry is safe (pingora's
//! `Error { etype, esource, retry }`).

use std::net::IpAddr;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, Uri};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Any error a body or a connection can end with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body type the proxy sends and receives.
pub type ProxyBody = BoxBody<Bytes, BoxError>;

/// Where a forwarding error came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorSource {
    /// The upstream could not be reached or failed mid-way.
    Upstream,
    /// The upstream did not answer in time.
    Timeout,
    /// The client failed to send its request body in time.
    Client,
    /// A bug or a resource problem in the proxy.
    Internal,
}

impl ErrorSource {
    /// A label for metrics.
    pub fn label(self) -> &'static str {
        match self {
            ErrorSource::Timeout => "timeout",
            ErrorSource::Upstream => "connect",
            ErrorSource::Client => "client",
            ErrorSource::Internal => "internal",
        }
    }
}

/// A forwarding failure: where it came from, whether sending again is safe (the request
/// never reached the upstream), what the proxy was doing, and the error that caused it,
/// kept whole (as pingora's `Error` keeps its cause) for the one log line that reports it.
#[derive(Debug, thiserror::Error)]
#[error("{source_kind:?} error (retry safe: {retry_safe}): {context}")]
pub struct ForwardError {
    pub source_kind: ErrorSource,
    pub retry_safe: bool,
    pub context: &'static str,
    #[source]
    pub cause: Option<BoxError>,
}

impl ForwardError {
    pub fn new(source_kind: ErrorSource, retry_safe: bool, context: &'static str) -> Self {
        Self {
            source_kind,
            retry_safe,
            context,
            cause: None,
        }
    }

    pub fn because(mut self, cause: impl Into<BoxError>) -> Self {
        self.cause = Some(cause.into());
        self
    }

    /// The error and its causes, for a log line.
    pub fn chain(&self) -> String {
        let mut out = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            out.push_str(": ");
            out.push_str(&cause.to_string());
            source = cause.source();
        }
        out
    }
}

/// Hop-by-hop headers (RFC 9110 §7.6.1), never forwarded.
const HOP_BY_HOP: [HeaderName; 8] = [
    http::header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    http::header::PROXY_AUTHENTICATE,
    http::header::PROXY_AUTHORIZATION,
    http::header::TE,
    http::header::TRAILER,
    http::header::TRANSFER_ENCODING,
    http::header::UPGRADE,
];

/// Removes hop-by-hop headers, including those the `Connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none: one pass over the names instead of a lookup of each.
    if !headers.keys().any(|name| HOP_BY_HOP.contains(name)) {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
}

/// Appends the peer to `X-Forwarded-For` (none: a local hop, not recorded) and sets
/// `X-Forwarded-Proto` (kept if a trusted hop in front already set it).
pub fn add_forwarded(headers: &mut HeaderMap, peer: Option<IpAddr>, proto: &str) {
    if let Some(peer) = peer {
        let xff = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
            Some(prev) if !prev.trim().is_empty() => format!("{prev}, {peer}"),
            _ => peer.to_string(),
        };
        if let Ok(v) = HeaderValue::from_str(&xff) {
            headers.insert("x-forwarded-for", v);
        }
    }
    if !headers.contains_key("x-forwarded-proto") {
        headers.insert(
            "x-forwarded-proto",
            HeaderValue::from_static(if proto == "https" { "https" } else { "http" }),
        );
    }
}

/// The pooled clients, one per worker thread: a connection is driven by the thread whose
/// requests use it, so a request never wakes another thread (see `serve`).
#[derive(Clone)]
pub struct Upstreams {
    clients: std::sync::Arc<[Client<HttpConnector, ProxyBody>]>,
}

thread_local! {
    /// The worker this thread is (0 on any other thread).
    static WORKER: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Marks the current thread as worker `index`: its requests use that worker's pool.
pub(crate) fn enter_worker(index: usize) {
    WORKER.with(|w| w.set(index));
}

impl Upstreams {
    pub fn new(connect_timeout: Duration, idle_per_host: usize, workers: usize) -> Self {
        let client = || {
            let mut connector = HttpConnector::new();
            connector.set_connect_timeout(Some(connect_timeout));
            connector.set_nodelay(true);
            connector.enforce_http(true);
            Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .pool_max_idle_per_host(idle_per_host)
                .build(connector)
        };
        Self {
            clients: (0..workers.max(1)).map(|_| client()).collect(),
        }
    }

    fn client(&self) -> &Client<HttpConnector, ProxyBody> {
        let index = WORKER.with(std::cell::Cell::get);
        &self.clients[index % self.clients.len()]
    }

    /// Sends `req` (whose URI holds the path and query) to `authority` (`host:port`),
    /// within `timeout`.
    pub async fn send(
        &self,
        authority: &Authority,
        mut req: Request<ProxyBody>,
        timeout: Duration,
    ) -> Result<Response<hyper::body::Incoming>, ForwardError> {
        let mut uri = std::mem::take(req.uri_mut()).into_parts();
        uri.scheme = Some(Scheme::HTTP);
        uri.authority = Some(authority.clone());
        if uri.path_and_query.is_none() {
            uri.path_and_query = Some(PathAndQuery::from_static("/"));
        }
        *req.uri_mut() = Uri::from_parts(uri).map_err(|e| {
            ForwardError::new(ErrorSource::Internal, false, "upstream URI").because(e)
        })?;
        match tokio::time::timeout(timeout, self.client().request(req)).await {
            Err(_) => Err(ForwardError::new(
                ErrorSource::Timeout,
                false,
                "upstream did not answer in time",
            )),
            Ok(Err(e)) => Err(ForwardError::new(
                ErrorSource::Upstream,
                e.is_connect(),
                if e.is_connect() {
                    "upstream unreachable"
                } else {
                    "upstream failed"
                },
            )
            .because(e)),
            Ok(Ok(resp)) => Ok(resp),
        }
    }
}

/// A buffered body as a `ProxyBody`.
pub fn full(bytes: Bytes) -> ProxyBody {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}

/// An upstream's answer body as a `ProxyBody`.
pub fn upstream_body(body: hyper::body::Incoming) -> ProxyBody {
    body.map_err(BoxError::from).boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_are_removed() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("close, x-secret-hop"),
        );
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("authorization", HeaderValue::from_static("Bearer x"));
        strip_hop_by_hop(&mut h);
        assert!(
            h.get("x-secret-hop").is_none()
                && h.get("connection").is_none()
                && h.get("keep-alive").is_none()
        );
        assert!(h.get("authorization").is_some());
    }

    #[test]
    fn forwarded_for_appends() {
        let mut h = HeaderMap::new();
        add_forwarded(&mut h, "10.0.0.1".parse().ok(), "http");
        add_forwarded(&mut h, "127.0.0.1".parse().ok(), "http");
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 127.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "http");
        // A local hop: nothing appended.
        add_forwarded(&mut h, None, "http");
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 127.0.0.1");
    }
}
