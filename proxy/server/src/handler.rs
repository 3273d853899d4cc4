//! One client request through the proxy: route it (the VirtualService rules), choose the
//! side (the sticky split), forward it (timeouts, retries), fall back to the legacy when
//! the new side fails a safe request, stream the answer back while keeping a bounded
//! copy, and hand the replay and comparison to the shadow task.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use proxy_routing::{Route, Side, StickyKey};

use crate::Proxy;
use crate::body::{self, RequestBody};
use crate::forward::{self, ForwardError, ProxyBody};
use crate::shadow::{ShadowJob, spawn_shadow};
use crate::tee::TeeBody;

/// A request's facts the proxy keeps while it is in flight.
pub struct Inbound {
    pub method: Method,
    pub path_and_query: http::uri::PathAndQuery,
    pub headers: http::HeaderMap,
    pub request_id: String,
}

pub fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

fn plain(status: StatusCode, text: &'static str) -> Response<ProxyBody> {
    let mut r = Response::new(forward::full(Bytes::from_static(text.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// The original client address, as the edge proxy recorded it.
fn original_client(headers: &http::HeaderMap) -> Option<std::net::IpAddr> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    header("x-envoy-external-address")
        .or_else(|| header("x-forwarded-for").and_then(|v| v.split(',').next()))
        .and_then(|v| v.trim().parse().ok())
}

fn request_id(headers: &http::HeaderMap) -> String {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 200)
        .map(str::to_owned)
        .unwrap_or_else(|| member_contract::headers::new_request_id(trace_random()))
}

/// 16 bytes for a request id: unique, not secret (a trace id is no credential), so
/// drawn from a per-thread xorshift generator seeded once from the OS, not from a
/// system call per request.
fn trace_random() -> [u8; 16] {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<(u64, u64)> = Cell::new({
            let mut seed = [0u8; 16];
            let _ = getrandom::fill(&mut seed);
            let (a, b) = seed.split_at(8);
            let a = u64::from_le_bytes(a.try_into().unwrap_or([1; 8]));
            let b = u64::from_le_bytes(b.try_into().unwrap_or([2; 8]));
            (a | 1, b | 1)
        });
    }
    STATE.with(|state| {
        // xorshift128+, twice: 128 bits.
        let (mut s0, mut s1) = state.get();
        let mut out = [0u8; 16];
        for half in out.chunks_mut(8) {
            let mut x = s0;
            let y = s1;
            s0 = y;
            x ^= x << 23;
            s1 = x ^ y ^ (x >> 17) ^ (y >> 26);
            half.copy_from_slice(&s1.wrapping_add(y).to_le_bytes());
        }
        state.set((s0, s1));
        out
    })
}

impl Proxy {
    pub async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        client: SocketAddr,
    ) -> Response<ProxyBody> {
        let started = Instant::now();
        let snap = self.live.snapshot();
        let (parts, incoming) = req.into_parts();
        let mut headers = parts.headers;
        // A client may not ask for a dry run: only the proxy's own replays carry it.
        headers.remove("x-shadow");
        forward::strip_hop_by_hop(&mut headers);
        let request_id = request_id(&headers);
        if let Ok(v) = HeaderValue::from_str(&request_id) {
            headers.insert("x-request-id", v);
        }
        let path_and_query = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
        let Some(route) = snap
            .table
            .route(parts.method.as_str(), parts.uri.path(), &headers)
            .cloned()
        else {
            tracing::info!(request_id, method = %parts.method, "no route matches");
            return plain(StatusCode::NOT_FOUND, "no route\n");
        };
        // Behind the mesh the peer is the local sidecar: the client is the one the edge
        // recorded. (The split is not a security boundary; a forged header only moves
        // its sender.)
        let client_ip = original_client(&headers).unwrap_or(client.ip());
        let key = StickyKey::from_request(&snap.config.sticky_key, &headers, client_ip);
        route.headers().request().apply(&mut headers);
        let side = route.side_for(key.bucket());
        forward::add_forwarded(&mut headers, client.ip(), "http");
        let limit = snap.config.comparison.max_body_bytes;
        let body = match body::read(incoming, limit).await {
            Ok(b) => b,
            Err(_) => return plain(StatusCode::BAD_REQUEST, "unreadable request body\n"),
        };
        let inbound = Inbound {
            method: parts.method,
            path_and_query,
            headers,
            request_id,
        };
        let bytes = match body {
            RequestBody::Buffered(bytes) => bytes,
            RequestBody::Streaming(stream) => {
                // Over the bound: sent once, as a stream; no retry, fallback or replay.
                let result = self
                    .send_once(
                        &route,
                        side,
                        &inbound,
                        stream,
                        route.timeout(),
                        &snap.config,
                    )
                    .await;
                return self.respond(&route, side, &inbound, result);
            }
        };
        let result = self
            .forward_with_retries(&route, side, &inbound, &bytes, &snap.config)
            .await;
        let (served_by, result) = match result {
            Ok(resp)
                if side == Side::New
                    && resp.status().is_server_error()
                    && is_safe(&inbound.method) =>
            {
                self.fallback(
                    &route,
                    &inbound,
                    &bytes,
                    &snap.config,
                    Some(resp.status().as_u16()),
                )
                .await
            }
            Err(e) if side == Side::New && is_safe(&inbound.method) => {
                tracing::warn!(request_id = %inbound.request_id, route = route.name(), error = %e, "new side failed");
                self.fallback(&route, &inbound, &bytes, &snap.config, None)
                    .await
            }
            other => (side, other),
        };
        let shadow = self.shadow_target(&route, served_by, &inbound.method);
        let response = self.respond(&route, served_by, &inbound, result);
        tracing::debug!(request_id = %inbound.request_id, route = route.name(), side = served_by.as_str(), status = response.status().as_u16(), elapsed_ms = started.elapsed().as_secs_f64() * 1000.0, "proxied");
        let Some(target) = shadow.filter(|_| {
            response.status() != StatusCode::BAD_GATEWAY
                && response.status() != StatusCode::GATEWAY_TIMEOUT
        }) else {
            return response;
        };
        let (resp_parts, resp_body) = response.into_parts();
        let (tee, captured) = TeeBody::new(resp_body, limit);
        let job = ShadowJob {
            route,
            primary_side: served_by,
            shadow_side: target,
            primary_status: resp_parts.status.as_u16(),
            primary_headers: resp_parts.headers.clone(),
            captured,
            inbound,
            body: bytes,
        };
        spawn_shadow(Arc::clone(&self), job);
        Response::from_parts(resp_parts, tee.boxed())
    }

    /// The client's answer: the upstream's, hop-by-hop headers removed and the rule's
    /// response header changes applied, or a gateway error when the upstream failed.
    fn respond(
        &self,
        route: &Route,
        side: Side,
        inbound: &Inbound,
        result: Result<Response<Incoming>, ForwardError>,
    ) -> Response<ProxyBody> {
        let response = match result {
            Ok(resp) => {
                let (mut parts, body) = resp.into_parts();
                forward::strip_hop_by_hop(&mut parts.headers);
                route.headers().response().apply(&mut parts.headers);
                Response::from_parts(parts, body.boxed())
            }
            Err(e) => {
                tracing::warn!(request_id = %inbound.request_id, route = route.name(), side = side.as_str(), error = %e, "upstream failed");
                if e.source_kind == forward::ErrorSource::Timeout {
                    plain(StatusCode::GATEWAY_TIMEOUT, "upstream timed out\n")
                } else {
                    plain(StatusCode::BAD_GATEWAY, "upstream unavailable\n")
                }
            }
        };
        self.metrics
            .requests
            .get_or_create(&crate::metrics::RequestLabels {
                route: route.name().to_owned(),
                side: side.as_str(),
                code: response.status().as_u16().to_string(),
            })
            .inc();
        response
    }

    /// Sends one try to `side`, recording it for metrics and the guard.
    async fn send_once(
        &self,
        route: &Route,
        side: Side,
        inbound: &Inbound,
        body: ProxyBody,
        timeout: Duration,
        config: &proxy_routing::ProxyConfig,
    ) -> Result<Response<Incoming>, ForwardError> {
        let address = route
            .upstream(side)
            .and_then(|u| config.upstream(&u.host))
            .map(|u| u.address.authority())
            .ok_or_else(|| ForwardError {
                source_kind: forward::ErrorSource::Internal,
                retry_safe: false,
                reason: "no destination for that side".into(),
            })?;
        let req = build_request(inbound, body, None);
        let t = Instant::now();
        let result = self.upstreams.send(address, req, timeout).await;
        let failed = result
            .as_ref()
            .map_or(true, |r| r.status().is_server_error());
        self.record(route, side, t.elapsed(), failed, &result);
        result
    }

    /// Sends the request to `side`, retrying as the rule allows: a connection that never
    /// reached the upstream is always retryable; a failure or a status listed in
    /// `retryOn` only for safe methods (a retried write may apply twice).
    async fn forward_with_retries(
        &self,
        route: &Route,
        side: Side,
        inbound: &Inbound,
        body: &Bytes,
        config: &proxy_routing::ProxyConfig,
    ) -> Result<Response<Incoming>, ForwardError> {
        let retries = route.retries();
        let attempts = 1 + retries.map_or(0, |r| r.attempts);
        let deadline = Instant::now() + route.timeout();
        let per_try = retries
            .and_then(|r| r.per_try_timeout)
            .unwrap_or(route.timeout());
        let mut attempt = 0;
        loop {
            attempt += 1;
            let remaining = deadline.saturating_duration_since(Instant::now());
            let result = self
                .send_once(
                    route,
                    side,
                    inbound,
                    forward::full(body.clone()),
                    per_try.min(remaining),
                    config,
                )
                .await;
            let retry = attempt < attempts
                && Instant::now() < deadline
                && match (&result, retries) {
                    (Err(e), Some(_)) => e.retry_safe || is_safe(&inbound.method),
                    (Ok(r), Some(policy)) => {
                        is_safe(&inbound.method) && policy.retries_status(r.status().as_u16())
                    }
                    _ => false,
                };
            if !retry {
                return result;
            }
            if let Some(backoff) = retries.and_then(|r| r.backoff) {
                tokio::time::sleep(backoff.min(deadline.saturating_duration_since(Instant::now())))
                    .await;
            }
        }
    }

    /// Records one upstream answer (or failure) for metrics and the guard.
    fn record(
        &self,
        route: &Route,
        side: Side,
        elapsed: Duration,
        failed: bool,
        result: &Result<Response<Incoming>, ForwardError>,
    ) {
        self.metrics.observe(route.name(), side.as_str(), elapsed);
        if let Err(e) = result {
            let kind = match e.source_kind {
                forward::ErrorSource::Timeout => "timeout",
                forward::ErrorSource::Upstream => "connect",
                forward::ErrorSource::Internal => "internal",
            };
            self.metrics
                .errors
                .get_or_create(&crate::metrics::ErrorLabels {
                    route: route.name().to_owned(),
                    side: side.as_str(),
                    kind,
                })
                .inc();
        }
        self.guard
            .record_request(route.name(), side, elapsed, failed, Instant::now());
        self.evaluate_soon();
    }

    /// The new side failed a safe request: the legacy answers instead.
    async fn fallback(
        &self,
        route: &Route,
        inbound: &Inbound,
        body: &Bytes,
        config: &proxy_routing::ProxyConfig,
        new_status: Option<u16>,
    ) -> (Side, Result<Response<Incoming>, ForwardError>) {
        if route.legacy_upstream().is_none() {
            return (
                Side::New,
                Err(ForwardError {
                    source_kind: forward::ErrorSource::Upstream,
                    retry_safe: false,
                    reason: "no fallback".into(),
                }),
            );
        }
        self.metrics
            .fallbacks
            .get_or_create(&crate::metrics::RouteLabel {
                route: route.name().to_owned(),
            })
            .inc();
        tracing::warn!(request_id = %inbound.request_id, route = route.name(), new_status, "new side failed a safe request: answering from the legacy");
        (
            Side::Legacy,
            self.forward_with_retries(route, Side::Legacy, inbound, body, config)
                .await,
        )
    }
}

/// The upstream request: the client's method, path, query and headers, and a body.
pub fn build_request(
    inbound: &Inbound,
    body: ProxyBody,
    shadow_mark: Option<&'static str>,
) -> Request<ProxyBody> {
    let mut req = Request::new(body);
    *req.method_mut() = inbound.method.clone();
    *req.uri_mut() = http::Uri::from(inbound.path_and_query.clone());
    *req.headers_mut() = inbound.headers.clone();
    req.headers_mut().remove(http::header::HOST);
    if let Some(mark) = shadow_mark {
        req.headers_mut()
            .insert("x-shadow", HeaderValue::from_static(mark));
    }
    req
}
