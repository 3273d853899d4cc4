//! One client request through the proxy, in its phases, in order (as pingora names the
//! phases of a request):
//!
//! 1. [`Proxy::admit`]: the path normalised as the upstream will route it, the rule it
//!    matches, the side of its user (the sticky split);
//! 2. [`Proxy::read_body`]: the body, within the client's read deadline, buffered when
//!    the comparison's bound and the body budget allow, otherwise streamed;
//! 3. forward (`attempts`): timeouts, retries, the fallback to the legacy;
//! 4. [`Proxy::respond`]: the upstream's answer (or a gateway error) made the client's;
//! 5. [`Proxy::hand_to_replay`]: a bounded copy of the answer kept while it streams, and
//!    the replay to the other side started in the background (`replay`), whose
//!    comparison feeds the guard's judgement (`judge`).
//!
//! Every answer is held to the route's deadline to its last byte.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use proxy_routing::{Route, Side, StickyKey};

use crate::Proxy;
use crate::attempts::{Attempt, Target};
use crate::body::{self, Buffered, RequestBody, StreamCause};
use crate::forward::{self, ErrorSource, ProxyBody};
use crate::limits::{BodyError, InFlight, Served, TimedRequest};
use crate::replay::{Early, ReplayJob, Replayed, Slots, spawn_replay};
use crate::request::{self, Inbound, is_safe};
use crate::state::Snapshot;
use crate::tee::TeeBody;
use crate::trace::RequestSpan;
use crate::writes;

/// A request the proxy took on: its rule, its side, and what it keeps of it.
struct Admitted {
    route: Arc<Route>,
    side: Side,
    inbound: Inbound,
    incoming: Incoming,
}

/// A short text answer of the proxy's own.
fn plain(status: StatusCode, text: &'static str) -> Response<ProxyBody> {
    let mut r = Response::new(forward::full(Bytes::from_static(text.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// An answer that ends the connection (the request's body was not read to its end).
fn closing(mut response: Response<ProxyBody>) -> Response<ProxyBody> {
    response
        .headers_mut()
        .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// A request the proxy answers itself, before any upstream sees it.
struct Refusal {
    status: StatusCode,
    text: &'static str,
    /// The request's body was not read to its end: the connection cannot be reused.
    close: bool,
}

impl Refusal {
    fn into_response(self, in_flight: Option<InFlight>) -> Response<Served> {
        let response = plain(self.status, self.text);
        let response = if self.close {
            closing(response)
        } else {
            response
        };
        response.map(|b| Served::new(b, None, in_flight))
    }
}

impl Proxy {
    pub async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        client: SocketAddr,
        in_flight: Option<InFlight>,
    ) -> Response<Served> {
        let started = Instant::now();
        let snap = self.live.snapshot();
        let span = RequestSpan::start(req.method(), req.headers());
        let admitted = match self.admit(&snap, req, client, started) {
            Ok(a) => a,
            Err(refusal) => return refusal.into_response(in_flight),
        };
        let Admitted {
            route,
            side,
            mut inbound,
            incoming,
        } = admitted;
        if let Some(span) = &span {
            span.routed(&inbound.method, route.name(), side);
            inbound.trace = Some(span.context());
        }
        let body = match self.read_body(&snap, incoming, started).await {
            Ok(body) => body,
            Err(refusal) => return refusal.into_response(in_flight),
        };
        let (served_by, result, buffered, deadline, early) = match body {
            Read::Buffered(buffered) => {
                let replayed = Replayed {
                    route: &route,
                    inbound: &inbound,
                    body: &buffered.bytes,
                };
                let early = self.replay_first(&snap.config, replayed, side).await;
                let deadline = Instant::now() + route.timeout();
                let (served_by, result) = self
                    .forward_with_fallback(
                        &route,
                        side,
                        &inbound,
                        &buffered.bytes,
                        &snap.config,
                        deadline,
                    )
                    .await;
                (served_by, result, Some(buffered), deadline, early)
            }
            Read::Streaming(stream, timed_out) => {
                // Sent once, as a stream: no retry, fallback or replay. The upstream
                // answers once the body is in: its time counts from the body's deadline.
                let deadline = started + snap.config.limits.body_read_timeout + route.timeout();
                let result = self
                    .send_once(
                        Target {
                            route: &route,
                            side,
                            config: &snap.config,
                            guarded: true,
                        },
                        &inbound,
                        stream,
                        deadline.saturating_duration_since(Instant::now()),
                        Some(&*timed_out),
                    )
                    .await;
                (side, result, None, deadline, None)
            }
        };
        let response = self.respond(&route, served_by, &inbound, result);
        if let Some(span) = &span {
            span.answered(response.status().as_u16(), served_by);
        }
        tracing::debug!(request_id = %inbound.request_id, route = route.name(), side = served_by.as_str(), status = response.status().as_u16(), elapsed_ms = started.elapsed().as_secs_f64() * 1000.0, "proxied");
        // An answer of the new side in place of the failed legacy's: nothing to compare.
        let fell_back_to_new = side == Side::Legacy && served_by == Side::New;
        let response = match buffered {
            Some(buffered) if !fell_back_to_new => self.hand_to_replay(
                &snap,
                route,
                (served_by, response),
                inbound,
                buffered,
                early,
            ),
            _ => response,
        };
        response.map(|b| Served::new(b, Some(deadline), in_flight))
    }

    /// Phase 1: the rule the normalised path matches and the side of the request's
    /// user; the headers made fit to forward. A path no rule matches is refused.
    fn admit(
        &self,
        snap: &Snapshot,
        req: Request<Incoming>,
        client: SocketAddr,
        received: Instant,
    ) -> Result<Admitted, Refusal> {
        let (parts, incoming) = req.into_parts();
        let mut headers = parts.headers;
        let request_id = request::clean_headers(&mut headers);
        let path_and_query = request::normalized_target(&parts.uri, snap.config.path_normalization);
        let Some(route) = snap
            .table
            .route(parts.method.as_str(), path_and_query.path(), &headers)
            .cloned()
        else {
            tracing::info!(request_id, method = %parts.method, "no route matches");
            return Err(Refusal {
                status: StatusCode::NOT_FOUND,
                text: "no route\n",
                close: false,
            });
        };
        // Behind the mesh the peer is the local sidecar: the client is the address the
        // outermost trusted hop recorded. (The split is not a security boundary; an
        // untrusted entry is never read.)
        let client_ip = snap.config.client_address.client(&headers, client.ip());
        let key = StickyKey::from_request(&snap.config.sticky_key, &headers, client_ip);
        route.headers().request().apply(&mut headers);
        let side = route.side_for(key.bucket());
        let peer = snap.config.client_address.recorded_peer(client.ip());
        forward::add_forwarded(&mut headers, peer, "http");
        Ok(Admitted {
            route,
            side,
            inbound: Inbound {
                method: parts.method,
                path_and_query,
                headers,
                request_id,
                received,
                trace: None,
            },
            incoming,
        })
    }

    /// Phase 2: the request body, read within `limits.body_read_timeout` of the
    /// request's start. Over the deadline the client gets `408`; a broken body `400`.
    async fn read_body(
        &self,
        snap: &Snapshot,
        incoming: Incoming,
        started: Instant,
    ) -> Result<Read, Refusal> {
        if http_body::Body::is_end_stream(&incoming) {
            return Ok(Read::Buffered(Buffered {
                bytes: Bytes::new(),
                reservation: self.budget.reservation(),
            }));
        }
        let timed = TimedRequest::new(incoming, started + snap.config.limits.body_read_timeout);
        let timed_out = timed.timed_out_flag();
        let limit = snap.config.comparison.max_body_bytes;
        match body::read(timed, limit, self.budget.reservation()).await {
            Ok(RequestBody::Buffered(buffered)) => Ok(Read::Buffered(buffered)),
            Ok(RequestBody::Streaming(stream, cause)) => {
                let cause = match cause {
                    StreamCause::TooLarge => "too_large",
                    StreamCause::OverBudget => "over_budget",
                };
                self.metrics
                    .streamed
                    .get_or_create(&crate::metrics::CauseLabel { cause })
                    .inc();
                Ok(Read::Streaming(stream, timed_out))
            }
            Err(BodyError::Timeout) => {
                self.metrics.count_limited("body_read_timeout");
                Err(Refusal {
                    status: StatusCode::REQUEST_TIMEOUT,
                    text: "request body not received in time\n",
                    close: true,
                })
            }
            Err(BodyError::Client(e)) => {
                tracing::info!(error = %e, "unreadable request body");
                Err(Refusal {
                    status: StatusCode::BAD_REQUEST,
                    text: "unreadable request body\n",
                    close: true,
                })
            }
        }
    }

    /// Phase 4: the client's answer: the upstream's, hop-by-hop headers removed and the
    /// rule's response header changes applied, or the proxy's own when there is none
    /// (`504` after a timeout, `408` when the client's body was late, else `502`).
    fn respond(
        &self,
        route: &Route,
        side: Side,
        inbound: &Inbound,
        result: Attempt,
    ) -> Response<ProxyBody> {
        let response = match result {
            Ok(resp) => {
                let (mut parts, body) = resp.into_parts();
                forward::strip_hop_by_hop(&mut parts.headers);
                route.headers().response().apply(&mut parts.headers);
                Response::from_parts(parts, forward::upstream_body(body))
            }
            Err(e) => {
                tracing::warn!(request_id = %inbound.request_id, route = route.name(), side = side.as_str(), error = %e.chain(), "upstream failed");
                match e.source_kind {
                    ErrorSource::Timeout => {
                        plain(StatusCode::GATEWAY_TIMEOUT, "upstream timed out\n")
                    }
                    ErrorSource::Client => {
                        self.metrics.count_limited("body_read_timeout");
                        closing(plain(
                            StatusCode::REQUEST_TIMEOUT,
                            "request body not received in time\n",
                        ))
                    }
                    ErrorSource::Upstream | ErrorSource::Internal => {
                        plain(StatusCode::BAD_GATEWAY, "upstream unavailable\n")
                    }
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

    /// Phase 5: when the request is drawn for a replay, or is a write whose effect is
    /// compared, and a slot is free, the answer streams to the client through a tee
    /// that keeps a bounded copy, and the replay starts in the background with the
    /// request's buffered body (and its budget). A write whose dry run was sent before
    /// it (`early`, see `replay_first`) is compared with that answer instead.
    fn hand_to_replay(
        self: &Arc<Self>,
        snap: &Snapshot,
        route: Arc<Route>,
        (served_by, response): (Side, Response<ProxyBody>),
        inbound: Inbound,
        buffered: Buffered,
        early: Option<(Early, tokio::sync::OwnedSemaphorePermit)>,
    ) -> Response<ProxyBody> {
        let status = response.status();
        let answered = status != StatusCode::BAD_GATEWAY && status != StatusCode::GATEWAY_TIMEOUT;
        // The primary's answer to compare with the dry run's, or nothing to compare.
        let (early, early_slot) = match early.filter(|_| answered) {
            Some((early, slot)) => (Some(early), Some(slot)),
            None => (None, None),
        };
        let mut target = match &early {
            // Only writes the legacy serves are sent first, to the new side.
            Some(_) => Some(Side::New),
            None => self
                .shadow_target(&route, served_by, &inbound.method)
                .filter(|_| answered),
        };
        let (mut effects, mut kind) = (false, "other");
        if !is_safe(&inbound.method) {
            let write = writes::write_of(inbound.method.as_str(), inbound.path_and_query.path());
            kind = writes::kind(write);
            if early.is_none() && target.is_some() && writes::answer_not_comparable(write).is_some()
            {
                // Its replay would find the state the primary consumed: not replayed.
                self.metrics
                    .count_write(route.name(), kind, "answer", "not_comparable");
                target = None;
            }
            effects = write.is_some()
                && status.is_success()
                && snap.config.comparison.write_effects
                && route.upstream(Side::New).is_some();
        }
        let slots = Slots {
            answer: match early_slot {
                Some(slot) => Some(slot),
                None => target.and_then(|_| self.replay_slot(route.name())),
            },
            effect: effects
                .then(|| self.effect_slot(route.name(), kind))
                .flatten(),
        };
        let (target, effects) = (
            target.filter(|_| slots.answer.is_some()),
            slots.effect.is_some(),
        );
        if target.is_none() && !effects {
            return response;
        }
        let (parts, body) = response.into_parts();
        let (tee, captured) = TeeBody::new(
            body,
            snap.config.comparison.max_body_bytes,
            self.budget.reservation(),
        );
        let job = ReplayJob {
            route,
            primary_side: served_by,
            shadow_side: target,
            kind,
            effects,
            received_at_micros: micros_since_epoch(
                std::time::SystemTime::now() - inbound.received.elapsed(),
            ),
            answered_at_micros: micros_since_epoch(std::time::SystemTime::now()),
            primary_status: parts.status.as_u16(),
            primary_headers: parts.headers.clone(),
            captured,
            inbound,
            body: buffered.bytes,
            reservation: buffered.reservation,
            early,
        };
        spawn_replay(
            Arc::clone(self),
            job,
            slots,
            snap.config.limits.replay_timeout,
        );
        Response::from_parts(parts, tee.boxed())
    }
}

fn micros_since_epoch(t: std::time::SystemTime) -> i64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// A request body as phase 2 leaves it.
enum Read {
    Buffered(Buffered),
    /// A stream, and whether its client missed the read deadline.
    Streaming(ProxyBody, Arc<std::sync::atomic::AtomicBool>),
}
