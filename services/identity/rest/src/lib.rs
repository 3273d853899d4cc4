//! The identity service's REST surface: the legacy member API exactly as app clients know
//! it (`legacy-member-api.md`, through the shared contract crate), plus the operational
//! endpoints: JWKS, health, readiness, Prometheus metrics and the OpenAPI document; and
//! the migration proxy's questions after a write (`effects`) and after a rollout step
//! (`verify`).

mod contract;
mod effects;
mod metrics;
mod ops;
mod respond;
mod verify;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use identity_core::Identity;

pub use metrics::Metrics;

/// The OpenAPI document of this surface.
pub const OPENAPI_JSON: &str = include_str!("../openapi.json");

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub identity: Identity,
    pub metrics: Arc<Metrics>,
    /// Take the client address from the last `X-Forwarded-For` entry (set when a proxy
    /// that appends it, such as the migration proxy or the mesh, is in front).
    pub trust_forwarded_for: bool,
    /// How many proxies in front append to `X-Forwarded-For` (see
    /// `identity_core::forwarded_client`).
    pub trusted_proxy_hops: usize,
    /// Largest request body accepted (413 beyond).
    pub max_body_bytes: usize,
}

/// Limits of the REST surface.
#[derive(Debug, Clone)]
pub struct RestLimits {
    /// Longest time a request may take before it is answered 503.
    pub request_timeout: Duration,
}

impl Default for RestLimits {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(15),
        }
    }
}

/// The whole REST router (a plain function, so tests can serve it in-process).
pub fn router(state: AppState, limits: &RestLimits) -> Router {
    use tower::ServiceBuilder;
    use tower_http::catch_panic::CatchPanicLayer;
    use tower_http::timeout::TimeoutLayer;

    Router::new()
        .route("/.well-known/jwks.json", get(ops::jwks))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(ops::openapi))
        .route("/internal/write-effects", post(effects::handle))
        .route("/internal/verify", post(verify::handle))
        .fallback(contract::handle)
        .with_state(state)
        .layer(
            ServiceBuilder::new()
                // Outermost: a bug in a handler becomes a 500 with an empty body (as the
                // legacy answers) instead of a dropped connection.
                .layer(CatchPanicLayer::custom(respond::panic_response))
                // Then the deadline: a request stuck on the database or on hashing is
                // answered instead of holding the client. (Bodies are bounded by the
                // handler itself, which reads them with `AppState::max_body_bytes`.)
                .layer(TimeoutLayer::with_status_code(
                    http::StatusCode::SERVICE_UNAVAILABLE,
                    limits.request_timeout,
                )),
        )
}
