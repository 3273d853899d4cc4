//! The OTLP exporter driven on a runtime of its own. The SDK's batch processor exports
//! from a plain thread of its own, with no Tokio runtime there, while the gRPC client
//! needs one for its connection: each export is run on a one-thread runtime kept for
//! the exporter (never on the service's workers, which serve requests).

use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use tokio::runtime::Handle;

#[derive(Debug)]
pub(crate) struct OnRuntime<E> {
    pub(crate) inner: E,
    pub(crate) runtime: Handle,
}

impl<E: SpanExporter> SpanExporter for OnRuntime<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        // The batch processor's own thread, outside any runtime: blocking it is its
        // design (one export at a time).
        self.runtime.block_on(self.inner.export(batch))
    }

    fn shutdown_with_timeout(&self, timeout: std::time::Duration) -> OTelSdkResult {
        let _entered = self.runtime.enter();
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        let _entered = self.runtime.enter();
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}
