//! A server's span per request (a tower layer, for axum and tonic alike): continued
//! from the trace context in the request's headers, named by `name` (a route's
//! template, never a path with an id in it), with the answer's status. With traces off
//! the request goes straight through.

use std::borrow::Cow;
use std::task::{Context, Poll};

use futures_util::future::{Either, FutureExt};
use tower::{Layer, Service};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::SPANS;

/// The name of a request's span (its `otel.name` is the route's).
pub const REQUEST_SPAN: &str = "request";

/// Names a request's span from its method and path.
pub type Namer = fn(&http::Method, &str) -> Cow<'static, str>;

#[derive(Clone, Copy)]
pub struct TraceLayer {
    name: Namer,
}

impl TraceLayer {
    pub fn new(name: Namer) -> Self {
        Self { name }
    }
}

impl<S> Layer<S> for TraceLayer {
    type Service = Traced<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Traced {
            inner,
            name: self.name,
        }
    }
}

#[derive(Clone)]
pub struct Traced<S> {
    inner: S,
    name: Namer,
}

type Boxed<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl<S, B, R> Service<http::Request<B>> for Traced<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Either<S::Future, Boxed<Result<S::Response, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let Some(propagation) = crate::propagation() else {
            return Either::Left(self.inner.call(req));
        };
        let name = (self.name)(req.method(), req.uri().path());
        let request_id = req
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .filter(|v| v.len() <= 128)
            .unwrap_or("")
            .to_owned();
        let span = tracing::info_span!(
            target: SPANS,
            REQUEST_SPAN,
            otel.name = %name,
            otel.kind = "server",
            http.request.method = %req.method(),
            request_id = %request_id,
            http.response.status_code = tracing::field::Empty,
            rpc.grpc.status_code = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        );
        let _ = span.set_parent(propagation.extract(req.headers()));
        let answered = span.clone();
        let fut = self.inner.call(req).instrument(span).map(move |result| {
            if let Ok(response) = &result {
                let status = response.status().as_u16();
                answered.record("http.response.status_code", status);
                // A gRPC failure answered at once carries its status in the headers.
                let grpc = response
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u16>().ok());
                if let Some(code) = grpc {
                    answered.record("rpc.grpc.status_code", code);
                }
                if status >= 500 || grpc.is_some_and(|c| c != 0) {
                    answered.record("otel.status_code", "ERROR");
                }
            }
            result
        });
        Either::Right(Box::pin(fut))
    }
}
