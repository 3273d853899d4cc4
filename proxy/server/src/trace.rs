//! Traces through the proxy, when the `OTEL_*` environment turns them on (the
//! `telemetry` crate): a client's request is a server span continued from the trace
//! context its headers carry; each try sent to a side is a client span whose context the
//! upstream receives, in place of the client's trace headers; a replay, or a write-effect
//! question, to the other side is the first span of a trace of its own, linked to the
//! request's (it is not part of the client's request: its time must not count there).
//! With traces off nothing here is created and the headers go on as they came.
//!
//! Spans carry the route, the side, the status: never a path, a header or a body.

use http::{HeaderMap, Method};
use opentelemetry::trace::{Link, SpanContext, SpanKind, Status, TraceContextExt, Tracer as _};
use opentelemetry::{Context, KeyValue};
use proxy_routing::Side;

/// The server span of one client request; ended when dropped (when the answer's head
/// leaves).
pub struct RequestSpan(Context);

impl RequestSpan {
    /// Starts the span of a request with `headers`, when traces are on.
    pub fn start(method: &Method, headers: &HeaderMap) -> Option<Self> {
        let tracer = telemetry::tracer()?;
        let parent = telemetry::propagation()?.extract(headers);
        let span = tracer
            .span_builder(method.as_str().to_owned())
            .with_kind(SpanKind::Server)
            .start_with_context(tracer, &parent);
        Some(Self(parent.with_span(span)))
    }

    /// The context the request's tries and replays are made in.
    pub fn context(&self) -> Context {
        self.0.clone()
    }

    /// The rule the request matched, and the side it was sent to.
    pub fn routed(&self, method: &Method, route: &str, side: Side) {
        let span = self.0.span();
        span.update_name(format!("{method} {route}"));
        span.set_attribute(KeyValue::new("proxy.route", route.to_owned()));
        span.set_attribute(KeyValue::new("proxy.side", side.as_str()));
    }

    /// The status the client is answered with, and the side that answered.
    pub fn answered(&self, status: u16, side: Side) {
        let span = self.0.span();
        span.set_attribute(KeyValue::new(
            "http.response.status_code",
            i64::from(status),
        ));
        span.set_attribute(KeyValue::new("proxy.served_by", side.as_str()));
        if status >= 500 {
            span.set_status(Status::error(""));
        }
    }
}

impl Drop for RequestSpan {
    fn drop(&mut self) {
        self.0.span().end();
    }
}

/// A span of one request the proxy sends, its context written into the request's
/// headers; ended when dropped.
pub struct OutgoingSpan(Context);

impl OutgoingSpan {
    /// A try of the client's request (`parent`: the request's context).
    pub fn child(
        parent: &Context,
        name: String,
        side: Side,
        headers: &mut HeaderMap,
    ) -> Option<Self> {
        Self::start(parent.clone(), None, name, side, headers)
    }

    /// A request of the proxy's own about the client's (a replay, a question): a new
    /// trace, linked to the request's span.
    pub fn linked(to: &Context, name: String, side: Side, headers: &mut HeaderMap) -> Option<Self> {
        let link = to.span().span_context().clone();
        Self::start(Context::new(), Some(link), name, side, headers)
    }

    fn start(
        parent: Context,
        link: Option<SpanContext>,
        name: String,
        side: Side,
        headers: &mut HeaderMap,
    ) -> Option<Self> {
        let tracer = telemetry::tracer()?;
        let mut builder = tracer
            .span_builder(name)
            .with_kind(SpanKind::Client)
            .with_attributes([KeyValue::new("proxy.side", side.as_str())]);
        if let Some(link) = link.filter(SpanContext::is_valid) {
            builder = builder.with_links(vec![Link::with_context(link)]);
        }
        let cx = parent.with_span(builder.start_with_context(tracer, &parent));
        telemetry::propagation()?.inject(&cx, headers);
        Some(Self(cx))
    }

    /// The upstream's status (`None`: no answer).
    pub fn answered(&self, status: Option<u16>) {
        let span = self.0.span();
        match status {
            Some(status) => {
                span.set_attribute(KeyValue::new(
                    "http.response.status_code",
                    i64::from(status),
                ));
                if status >= 500 {
                    span.set_status(Status::error(""));
                }
            }
            None => span.set_status(Status::error("no answer")),
        }
    }
}

impl Drop for OutgoingSpan {
    fn drop(&mut self) {
        self.0.span().end();
    }
}
