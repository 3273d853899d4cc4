//! What the binaries report about themselves beyond their metrics: logs (JSON lines or
//! text on stderr, `RUST_LOG` to filter) and, when the standard `OTEL_*` environment asks
//! for them, traces exported over OTLP (see `settings`), with the trace context read from
//! and written into requests' headers (see `propagation`).
//!
//! Spans meant for traces use the target [`SPANS`]: logs never show them, and with
//! traces off no layer wants them, so they cost a check of a static per call site.
//! Nothing personal or secret goes into a span: route names, statuses, request ids.

mod export;
pub mod propagation;
pub mod server;
mod settings;

use std::sync::OnceLock;
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SdkTracerProvider, Tracer};
use tracing_subscriber::filter::{DynFilterFn, EnvFilter};
use tracing_subscriber::layer::Layered;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

pub use opentelemetry;
pub use settings::{DEFAULT_PROPAGATORS, SettingError, Settings};
pub use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::propagation::Propagation;

/// The target of every span meant for traces (a request's, and those made while it
/// runs: a span made outside any request is not exported).
pub const SPANS: &str = "traced";

/// Why telemetry could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error(transparent)]
    Setting(#[from] SettingError),
    #[error("the OTLP exporter: {0}")]
    Exporter(String),
}

struct Tracing {
    tracer: Tracer,
    propagation: Propagation,
}

static TRACING: OnceLock<Tracing> = OnceLock::new();

/// The tracer, when traces are exported.
pub fn tracer() -> Option<&'static Tracer> {
    TRACING.get().map(|t| &t.tracer)
}

/// The trace-context formats, when traces are exported (with traces off a request's
/// trace headers go on as they came).
pub fn propagation() -> Option<&'static Propagation> {
    TRACING.get().map(|t| &t.propagation)
}

/// Whether traces are exported.
pub fn enabled() -> bool {
    TRACING.get().is_some()
}

/// Flushes the spans not yet exported when the process ends ([`Telemetry::shutdown`],
/// or on drop).
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Telemetry {
    /// Whether traces are exported.
    pub fn traces_on(&self) -> bool {
        self.provider.is_some()
    }

    /// Exports what is left (for at most a few seconds) and stops the exporter.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(e) = provider.shutdown_with_timeout(Duration::from_secs(5))
        {
            eprintln!("traces not all exported at exit: {e}");
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts logging (`log_format` `json` or `text`; `RUST_LOG`, else `default_filter`)
/// and, when the environment asks, traces for `service` (its `service.name` unless
/// `OTEL_SERVICE_NAME` or `OTEL_RESOURCE_ATTRIBUTES` names one). Call once, before the
/// service's runtime starts.
pub fn init(
    service: &'static str,
    log_format: &str,
    default_filter: &str,
) -> Result<Telemetry, TelemetryError> {
    let settings = Settings::from_vars(|name| std::env::var(name).ok())?;
    // One filter for the whole process, none of the logs' own: a per-layer filter that
    // refuses a crate's `enabled!` check (sqlx makes one) that no event follows loses
    // the next event of a call site it had cached as always wanted (the identity
    // service's "listening" line was lost so). What `RUST_LOG` says, and the trace
    // spans when they are exported; JSON logs never print an event's spans (text logs,
    // for a terminal, show them as its context: route names and ids, nothing secret).
    let spans = if settings.export { "trace" } else { "off" };
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(default_filter))
        .add_directive(
            format!("{SPANS}={spans}")
                .parse()
                .map_err(|e| TelemetryError::Exporter(format!("log filter: {e}")))?,
        );
    let logs: Box<dyn Layer<Layered<EnvFilter, Registry>> + Send + Sync> = if log_format == "json" {
        tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_writer(std::io::stderr)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .boxed()
    };
    if !settings.export {
        let _ = tracing_subscriber::registry()
            .with(filter)
            .with(logs)
            .try_init();
        return Ok(Telemetry {
            provider: None,
            runtime: None,
        });
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("otlp-export")
        .enable_all()
        .build()
        .map_err(|e| TelemetryError::Exporter(format!("its runtime: {e}")))?;
    let exporter = {
        let _entered = runtime.enter();
        opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .build()
            .map_err(|e| TelemetryError::Exporter(e.to_string()))?
    };
    let mut resource = Resource::builder();
    let named = std::env::var("OTEL_SERVICE_NAME").is_ok_and(|v| !v.trim().is_empty())
        || std::env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|v| v.contains("service.name="));
    if !named {
        resource = resource.with_service_name(service);
    }
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(export::OnRuntime {
            inner: exporter,
            runtime: runtime.handle().clone(),
        })
        .with_resource(resource.build())
        .build();
    let tracer = provider.tracer(service);
    // Only a request starts a trace: the spans of work outside any request (the sync's
    // database calls, every few hundred milliseconds) would each be a trace of their own.
    let traces = tracing_opentelemetry::layer()
        .with_tracer(tracer.clone())
        .with_filter(DynFilterFn::new(|meta, cx| {
            meta.target() == SPANS
                && (meta.name() == server::REQUEST_SPAN || cx.lookup_current().is_some())
        }));
    let _ = TRACING.set(Tracing {
        tracer,
        propagation: Propagation::new(&settings.propagators),
    });
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(logs)
        .with(traces)
        .try_init();
    Ok(Telemetry {
        provider: Some(provider),
        runtime: Some(runtime),
    })
}
