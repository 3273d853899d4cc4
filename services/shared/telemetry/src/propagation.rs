//! A trace context read from a request's headers and written into the next hop's: W3C
//! `traceparent`/`tracestate` (with `baggage` when asked), and B3, single (`b3`) or
//! multiple (`x-b3-*`) headers, the format of Zipkin-style tracing in Istio.
//!
//! Reading tries B3 first and W3C last, so that a request carrying both is continued
//! from its W3C parent. Writing first removes every trace header of the hop before
//! (what the next hop reads must name this hop's span, not a stale parent), then writes
//! each configured format.

use http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::Context;
use opentelemetry::propagation::text_map_propagator::FieldIter;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};

/// One propagation format (`OTEL_PROPAGATORS`' names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `tracecontext`: W3C `traceparent` and `tracestate`.
    TraceContext,
    /// `baggage`: W3C `baggage`.
    Baggage,
    /// `b3`: B3's single header.
    B3Single,
    /// `b3multi`: B3's `x-b3-*` headers.
    B3Multi,
}

/// Every header a trace context of the formats here is carried in.
const TRACE_HEADERS: [&str; 8] = [
    "traceparent",
    "tracestate",
    "b3",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-flags",
];

/// The configured formats, for reading and writing headers.
#[derive(Debug)]
pub struct Propagation {
    /// In reading order (W3C last).
    read: Vec<Box<dyn TextMapPropagator + Send + Sync>>,
    write: Vec<Box<dyn TextMapPropagator + Send + Sync>>,
}

fn propagator(format: Format) -> Box<dyn TextMapPropagator + Send + Sync> {
    match format {
        Format::TraceContext => Box::new(TraceContextPropagator::new()),
        Format::Baggage => Box::new(BaggagePropagator::new()),
        Format::B3Single => Box::new(B3::new(false)),
        Format::B3Multi => Box::new(B3::new(true)),
    }
}

impl Propagation {
    pub fn new(formats: &[Format]) -> Self {
        // Either B3 format reads both B3 encodings.
        let reads_b3 = formats
            .iter()
            .any(|f| matches!(f, Format::B3Single | Format::B3Multi));
        let mut read: Vec<Box<dyn TextMapPropagator + Send + Sync>> = Vec::new();
        if reads_b3 {
            read.push(propagator(Format::B3Multi));
        }
        for format in [Format::Baggage, Format::TraceContext] {
            if formats.contains(&format) {
                read.push(propagator(format));
            }
        }
        Self {
            read,
            write: formats.iter().map(|f| propagator(*f)).collect(),
        }
    }

    /// The trace context `headers` carry (an empty context when none or a malformed
    /// one: a new trace starts).
    pub fn extract(&self, headers: &HeaderMap) -> Context {
        let carrier = HeaderCarrier(headers);
        self.read.iter().fold(Context::new(), |cx, p| {
            p.extract_with_context(&cx, &carrier)
        })
    }

    /// Writes `cx`'s span into `headers`, replacing any trace header already there.
    pub fn inject(&self, cx: &Context, headers: &mut HeaderMap) {
        for name in TRACE_HEADERS {
            headers.remove(name);
        }
        let mut carrier = HeaderWriter(headers);
        for p in &self.write {
            p.inject_context(cx, &mut carrier);
        }
    }
}

/// Reads a trace context from an `http::HeaderMap`.
struct HeaderCarrier<'a>(&'a HeaderMap);

impl Extractor for HeaderCarrier<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

/// Writes a trace context into an `http::HeaderMap` (values that are no header value
/// are left out).
struct HeaderWriter<'a>(&'a mut HeaderMap);

impl Injector for HeaderWriter<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

/// B3 (openzipkin/b3-propagation): reads the single header or, without it, the
/// multiple ones; writes the encoding it was made for. 64-bit trace ids are read
/// left-padded to 128 bits. A debug flag counts as sampled.
#[derive(Debug)]
struct B3 {
    multi: bool,
    fields: Vec<String>,
}

impl B3 {
    fn new(multi: bool) -> Self {
        let fields = if multi {
            vec![
                "x-b3-traceid".into(),
                "x-b3-spanid".into(),
                "x-b3-sampled".into(),
            ]
        } else {
            vec!["b3".into()]
        };
        Self { multi, fields }
    }
}

fn b3_trace_id(hex: &str) -> Option<TraceId> {
    if !matches!(hex.len(), 16 | 32) || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    TraceId::from_hex(hex)
        .ok()
        .filter(|id| *id != TraceId::INVALID)
}

fn b3_span_id(hex: &str) -> Option<SpanId> {
    if hex.len() != 16 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    SpanId::from_hex(hex)
        .ok()
        .filter(|id| *id != SpanId::INVALID)
}

/// `Some(sampled)` for a sampling state B3 defines; the state is optional (`None` when
/// absent, deferred to the receiver: sampled here).
fn b3_sampled(value: Option<&str>) -> Result<bool, ()> {
    match value.map(str::trim) {
        None | Some("") => Ok(true),
        Some("1" | "d" | "true") => Ok(true),
        Some("0" | "false") => Ok(false),
        Some(_) => Err(()),
    }
}

fn b3_context(trace: &str, span: &str, sampled: Option<&str>) -> Option<SpanContext> {
    let trace_id = b3_trace_id(trace.trim())?;
    let span_id = b3_span_id(span.trim())?;
    let sampled = b3_sampled(sampled).ok()?;
    let flags = if sampled {
        TraceFlags::SAMPLED
    } else {
        TraceFlags::default()
    };
    Some(SpanContext::new(
        trace_id,
        span_id,
        flags,
        true,
        TraceState::default(),
    ))
}

impl TextMapPropagator for B3 {
    fn inject_context(&self, cx: &Context, injector: &mut dyn Injector) {
        let span = cx.span();
        let sc = span.span_context();
        if !sc.is_valid() {
            return;
        }
        let sampled = if sc.is_sampled() { "1" } else { "0" };
        if self.multi {
            injector.set("x-b3-traceid", format!("{:032x}", sc.trace_id()));
            injector.set("x-b3-spanid", format!("{:016x}", sc.span_id()));
            injector.set("x-b3-sampled", sampled.to_owned());
        } else {
            injector.set(
                "b3",
                format!("{:032x}-{:016x}-{sampled}", sc.trace_id(), sc.span_id()),
            );
        }
    }

    fn extract_with_context(&self, cx: &Context, extractor: &dyn Extractor) -> Context {
        let found = match extractor.get("b3") {
            Some(single) => {
                let mut parts = single.split('-');
                match (parts.next(), parts.next()) {
                    (Some(trace), Some(span)) => b3_context(trace, span, parts.next()),
                    // `b3: 0` (sampling only): no parent to continue.
                    _ => None,
                }
            }
            None => match (extractor.get("x-b3-traceid"), extractor.get("x-b3-spanid")) {
                (Some(trace), Some(span)) => {
                    let debug = extractor.get("x-b3-flags").map(str::trim) == Some("1");
                    let sampled = if debug {
                        Some("1")
                    } else {
                        extractor.get("x-b3-sampled")
                    };
                    b3_context(trace, span, sampled)
                }
                _ => None,
            },
        };
        match found {
            Some(sc) => cx.with_remote_span_context(sc),
            None => cx.clone(),
        }
    }

    fn fields(&self) -> FieldIter<'_> {
        FieldIter::new(&self.fields)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const SPAN: &str = "00f067aa0ba902b7";

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    HeaderName::from_static(k),
                    HeaderValue::from_str(v).unwrap(),
                )
            })
            .collect()
    }

    fn parent(p: &Propagation, h: &HeaderMap) -> Option<(String, String, bool)> {
        let cx = p.extract(h);
        let span = cx.span();
        let sc = span.span_context();
        sc.is_valid().then(|| {
            (
                format!("{:032x}", sc.trace_id()),
                format!("{:016x}", sc.span_id()),
                sc.is_sampled(),
            )
        })
    }

    #[test]
    fn every_format_is_read_and_w3c_wins_over_b3() {
        let p = Propagation::new(&[Format::TraceContext, Format::B3Multi]);
        let want = Some((TRACE.to_owned(), SPAN.to_owned(), true));
        let w3c = format!("00-{TRACE}-{SPAN}-01");
        let single = format!("{TRACE}-{SPAN}-1");
        assert_eq!(parent(&p, &headers(&[("traceparent", &w3c)])), want);
        assert_eq!(parent(&p, &headers(&[("b3", &single)])), want);
        assert_eq!(
            parent(
                &p,
                &headers(&[
                    ("x-b3-traceid", TRACE),
                    ("x-b3-spanid", SPAN),
                    ("x-b3-sampled", "1")
                ])
            ),
            want
        );
        let other_b3 = format!("{}-{SPAN}-1", "1".repeat(32));
        assert_eq!(
            parent(&p, &headers(&[("traceparent", &w3c), ("b3", &other_b3)])),
            want
        );
        // A 64-bit B3 trace id, left-padded; not sampled.
        assert_eq!(
            parent(
                &p,
                &headers(&[("b3", &format!("a3ce929d0e0e4736-{SPAN}-0"))])
            ),
            Some((
                format!("{:0>32}", "a3ce929d0e0e4736"),
                SPAN.to_owned(),
                false
            ))
        );
    }

    #[test]
    fn malformed_contexts_start_a_new_trace() {
        let p = Propagation::new(&[Format::TraceContext, Format::B3Multi]);
        for h in [
            headers(&[("traceparent", "00-zz-00f067aa0ba902b7-01")]),
            headers(&[("traceparent", &format!("00-{}-{SPAN}-01", "0".repeat(32)))]),
            headers(&[("b3", "0")]),
            headers(&[("b3", &format!("{TRACE}-{SPAN}-maybe"))]),
            headers(&[("b3", &format!("{TRACE}x-{SPAN}"))]),
            headers(&[("x-b3-traceid", TRACE)]),
            headers(&[("x-b3-traceid", TRACE), ("x-b3-spanid", "short")]),
        ] {
            assert_eq!(parent(&p, &h), None, "{h:?}");
        }
    }

    #[test]
    fn writing_replaces_every_trace_header_of_the_hop_before() {
        let p = Propagation::new(&[Format::TraceContext, Format::B3Multi]);
        let incoming = headers(&[
            ("traceparent", &format!("00-{TRACE}-{SPAN}-01")),
            ("b3", &format!("{TRACE}-{SPAN}-1")),
            ("x-b3-parentspanid", SPAN),
            ("x-request-id", "r1"),
        ]);
        let cx = p.extract(&incoming);
        let next = SpanContext::new(
            TraceId::from_hex(TRACE).unwrap(),
            SpanId::from_hex("1111111111111111").unwrap(),
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        );
        let mut out = incoming.clone();
        p.inject(&cx.with_remote_span_context(next), &mut out);
        assert_eq!(
            out["traceparent"],
            format!("00-{TRACE}-1111111111111111-01").as_str()
        );
        assert_eq!(out["x-b3-traceid"], TRACE);
        assert_eq!(out["x-b3-spanid"], "1111111111111111");
        assert_eq!(out["x-b3-sampled"], "1");
        assert!(!out.contains_key("b3"));
        assert!(!out.contains_key("x-b3-parentspanid"));
        assert_eq!(out["x-request-id"], "r1");
    }
}
