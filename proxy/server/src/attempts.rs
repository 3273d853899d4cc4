//! The tries of one request to its upstream: one send with its per-try timeout, retries
//! as the rule allows (a connection that never reached the upstream always; a failure or
//! a status listed in `retryOn` only for safe methods), the fallback to the legacy when
//! the new side fails a safe request (and to the new side when the legacy fails one, for
//! the rules of `fallback.to_new`), and the record of every try for the metrics and the
//! guard.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Response;
use hyper::body::Incoming;
use proxy_routing::{ProxyConfig, Route, Side};

use crate::Proxy;
use crate::forward::{self, ErrorSource, ForwardError, ProxyBody};
use crate::request::{Inbound, build_request, is_safe};
use crate::trace::OutgoingSpan;

/// An upstream's answer, or why there is none.
pub type Attempt = Result<Response<Incoming>, ForwardError>;

/// Where one try goes: a rule's destination on one side, as the config resolves it.
#[derive(Clone, Copy)]
pub struct Target<'a> {
    pub route: &'a Route,
    pub side: Side,
    pub config: &'a ProxyConfig,
    /// Whether the try counts for the guard: not a fallback's, tried only because the
    /// other side failed (a sample of the failures alone).
    pub guarded: bool,
}

impl Proxy {
    /// Sends one try to `side`, recording it for metrics and the guard. When the body is
    /// a client's stream, `client_timed_out` tells a failure caused by the client's
    /// read deadline from the upstream's.
    pub(crate) async fn send_once(
        &self,
        target: Target<'_>,
        inbound: &Inbound,
        body: ProxyBody,
        timeout: Duration,
        client_timed_out: Option<&AtomicBool>,
    ) -> Attempt {
        let Target {
            route,
            side,
            config,
            guarded,
        } = target;
        let address = config.address_of(route, side).ok_or_else(|| {
            ForwardError::new(ErrorSource::Internal, false, "no destination for that side")
        })?;
        let mut req = build_request(inbound, body, None);
        let span = inbound.trace.as_ref().and_then(|cx| {
            let name = format!("{} {} {}", inbound.method, route.name(), side.as_str());
            OutgoingSpan::child(cx, name, side, req.headers_mut())
        });
        let t = Instant::now();
        let mut result = self.upstreams.send(address, req, timeout).await;
        if let Some(span) = &span {
            span.answered(result.as_ref().ok().map(|r| r.status().as_u16()));
        }
        if let Err(e) = &mut result
            && client_timed_out.is_some_and(|f| f.load(Ordering::Relaxed))
        {
            e.source_kind = ErrorSource::Client;
            e.context = "client did not send its body in time";
        }
        self.record(route, side, t.elapsed(), &result, guarded);
        result
    }

    /// Sends the request to `side` until `deadline`, retrying as the rule allows: a
    /// connection that never reached the upstream is always retryable; a failure or a
    /// status listed in `retryOn` only for safe methods (a retried write may apply twice).
    pub(crate) async fn forward_with_retries(
        &self,
        target: Target<'_>,
        inbound: &Inbound,
        body: &Bytes,
        deadline: Instant,
    ) -> Attempt {
        let route = target.route;
        let retries = route.retries();
        let attempts = 1 + retries.map_or(0, |r| r.attempts);
        let per_try = retries
            .and_then(|r| r.per_try_timeout)
            .unwrap_or(route.timeout());
        let mut attempt = 0;
        loop {
            attempt += 1;
            let remaining = deadline.saturating_duration_since(Instant::now());
            let result = self
                .send_once(
                    target,
                    inbound,
                    forward::full(body.clone()),
                    per_try.min(remaining),
                    None,
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

    /// Sends a buffered request to `side`; when the new side fails a safe request (no
    /// answer within half of the time left, or a 5xx), the legacy answers instead, and
    /// the other way for the rules of `fallback.to_new`. Returns the side that answered.
    pub(crate) async fn forward_with_fallback(
        &self,
        route: &Route,
        side: Side,
        inbound: &Inbound,
        body: &Bytes,
        config: &ProxyConfig,
        deadline: Instant,
    ) -> (Side, Attempt) {
        let target = |side, guarded| Target {
            route,
            side,
            config,
            guarded,
        };
        // A safe request the other side would answer if this one fails it leaves the
        // other half of its time: a side too slow to answer at all (or stuck) must not
        // take the fallback's time too.
        let safe = is_safe(&inbound.method);
        let falls_back = match side {
            Side::New => route.legacy_upstream().is_some(),
            Side::Legacy => {
                route.new_upstream().is_some()
                    && config.fallback.to_new.iter().any(|r| r == route.name())
            }
        };
        let first_deadline = if safe && falls_back {
            let now = Instant::now();
            now + deadline.saturating_duration_since(now) / 2
        } else {
            deadline
        };
        let result = self
            .forward_with_retries(target(side, true), inbound, body, first_deadline)
            .await;
        if !safe {
            return (side, result);
        }
        if side == Side::Legacy {
            if !falls_back {
                return (side, result);
            }
            return self
                .legacy_failed(route, inbound, body, config, deadline, result)
                .await;
        }
        let new_status = match &result {
            Ok(resp) if resp.status().is_server_error() => Some(resp.status().as_u16()),
            Ok(_) => return (side, result),
            Err(e) => {
                tracing::warn!(request_id = %inbound.request_id, route = route.name(), error = %e.chain(), "new side failed");
                None
            }
        };
        if route.legacy_upstream().is_none() {
            return (
                Side::New,
                Err(ForwardError::new(
                    ErrorSource::Upstream,
                    false,
                    "new side failed and the rule has no legacy destination to fall back on",
                )),
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
            self.forward_with_retries(target(Side::Legacy, false), inbound, body, deadline)
                .await,
        )
    }

    /// A safe request of a `fallback.to_new` rule the legacy answered (`result`): when
    /// it failed (no answer, or a 5xx), the new side's answer, unless it fails too.
    async fn legacy_failed(
        &self,
        route: &Route,
        inbound: &Inbound,
        body: &Bytes,
        config: &ProxyConfig,
        deadline: Instant,
        result: Attempt,
    ) -> (Side, Attempt) {
        let failed = match &result {
            Ok(resp) => resp.status().is_server_error(),
            Err(_) => true,
        };
        if !failed || Instant::now() >= deadline {
            return (Side::Legacy, result);
        }
        let new = self
            .forward_with_retries(
                Target {
                    route,
                    side: Side::New,
                    config,
                    guarded: false,
                },
                inbound,
                body,
                deadline,
            )
            .await;
        match new {
            Ok(resp) if !resp.status().is_server_error() => {
                self.metrics
                    .fallbacks_to_new
                    .get_or_create(&crate::metrics::RouteLabel {
                        route: route.name().to_owned(),
                    })
                    .inc();
                tracing::warn!(request_id = %inbound.request_id, route = route.name(), "the legacy failed a safe request: answered by the new side");
                (Side::New, Ok(resp))
            }
            _ => (Side::Legacy, result),
        }
    }

    /// Records one upstream answer (or failure) for metrics and, when `guarded`, the
    /// guard.
    fn record(
        &self,
        route: &Route,
        side: Side,
        elapsed: Duration,
        result: &Attempt,
        guarded: bool,
    ) {
        self.metrics.observe(route.name(), side.as_str(), elapsed);
        if let Err(e) = result {
            self.metrics
                .errors
                .get_or_create(&crate::metrics::ErrorLabels {
                    route: route.name().to_owned(),
                    side: side.as_str(),
                    kind: e.source_kind.label(),
                })
                .inc();
        }
        if !guarded {
            return;
        }
        // A client that did not send its body in time is not the upstream's failure.
        let failed = match result {
            Ok(r) => r.status().is_server_error(),
            Err(e) => e.source_kind != ErrorSource::Client,
        };
        self.guard
            .record_request(route.name(), side, elapsed, failed, Instant::now());
        self.evaluate_soon();
    }
}
