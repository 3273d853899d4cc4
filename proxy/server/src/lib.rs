//! The migration proxy: sends each user of the member API to the legacy or to the new
//! identity service by a sticky weight read from an Istio VirtualService, replays
//! requests to the other side and compares the answers, and guards the rollout by itself.
//!
//! `Proxy::build` loads and validates both files and binds both listeners (port 0
//! allowed); `Proxy::run_until` serves until shutdown, then drains.

mod admin;
mod attempts;
mod body;
mod dashboard;
mod effects;
pub mod forward;
mod handler;
mod history;
mod judge;
mod limits;
mod metrics;
mod replay;
mod request;
mod serve;
mod state;
mod tee;
mod trace;
mod verify;
mod writes;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::Context;
use history::{ShareCause, ShareHistory};
use limits::BodyBudget;
use rollout_guard::Guard;
use shadow_compare::{Comparator, NoiseModel, Samples};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

pub use metrics::Metrics;
pub use state::{Live, LoadError};

/// What the command line gives.
#[derive(Debug, Clone)]
pub struct Settings {
    pub virtual_service: PathBuf,
    pub config: PathBuf,
    pub listen: Option<SocketAddr>,
    pub admin: Option<SocketAddr>,
    /// How often the files are checked for changes.
    pub reload_interval: Duration,
    /// How long in-flight requests may take to finish after a shutdown signal.
    pub drain: Duration,
    /// Worker threads serving client traffic (0: one per core).
    pub workers: usize,
}

impl Settings {
    /// The worker threads to start: as configured, else one per core.
    fn worker_count(&self) -> usize {
        if self.workers > 0 {
            self.workers
        } else {
            std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
        }
    }
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8000";

/// Replays in flight at once; beyond, a replay is skipped and counted. The connection
/// pool keeps at least this many idle connections per upstream, so replays reuse them.
pub(crate) const MAX_REPLAYS: usize = 256;

/// Write-effect questions in flight at once (each may wait out the sync's lag); beyond,
/// a write's effect is not compared, and counted. Apart from the replays' slots, so that
/// waiting questions never crowd out the comparison of answers.
pub(crate) const MAX_EFFECT_CHECKS: usize = 256;
pub const DEFAULT_ADMIN: &str = "127.0.0.1:9901";

/// The running proxy's shared state.
pub struct Proxy {
    live: Live,
    upstreams: forward::Upstreams,
    metrics: Metrics,
    guard: Guard,
    noise: NoiseModel,
    /// Bytes of bodies held in memory by the whole proxy (`limits.max_buffered_body_bytes`).
    budget: Arc<BodyBudget>,
    samples: Samples,
    /// Each route's share changes, for the dashboard's chart.
    history: ShareHistory,
    shadow_permits: Arc<Semaphore>,
    effect_permits: Arc<Semaphore>,
    /// Client connections open now, across the workers (`limits.max_connections`).
    clients: Arc<serve::Tracker>,
    draining: AtomicBool,
    /// When the proxy started, and when (ms after it) the guard judges the routes next.
    started: std::time::Instant,
    evaluation_due_ms: std::sync::atomic::AtomicU64,
    /// Routes an operator aborted through the admin API (until resumed).
    manual_aborts: std::sync::Mutex<std::collections::BTreeSet<String>>,
    /// The rollout report the autopilot last published (`PUT /admin/report`), shown on
    /// the dashboard; `None` until one is.
    report: std::sync::Mutex<Option<std::sync::Arc<str>>>,
}

/// A built proxy with its listeners bound.
pub struct Bound {
    pub proxy: Arc<Proxy>,
    listener: TcpListener,
    admin: TcpListener,
    settings: Settings,
}

impl Proxy {
    /// Loads and validates the files, binds both listeners.
    pub async fn build(settings: Settings) -> anyhow::Result<Bound> {
        let live = Live::load(&settings.virtual_service, &settings.config)?;
        let snap = live.snapshot();
        let noise = snap.comparator.noise_model();
        let guard = Guard::new(snap.config.guard.clone()).context("guard settings")?;
        let mut settings = settings;
        settings.workers = settings.worker_count();
        let upstreams = forward::Upstreams::new(
            snap.config.timeouts.connect,
            MAX_REPLAYS + MAX_EFFECT_CHECKS + 64,
            settings.workers,
        );
        let listen = settings
            .listen
            .or(snap.config.listen)
            .unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("default address"));
        let admin_addr = settings
            .admin
            .or(snap.config.admin_listen)
            .unwrap_or_else(|| DEFAULT_ADMIN.parse().expect("default address"));
        let listener = TcpListener::bind(listen)
            .await
            .with_context(|| format!("--listen {listen}"))?;
        let admin = TcpListener::bind(admin_addr)
            .await
            .with_context(|| format!("--admin {admin_addr}"))?;
        let proxy = Arc::new(Proxy {
            live,
            upstreams,
            metrics: Metrics::new(),
            guard,
            noise,
            budget: BodyBudget::new(snap.config.limits.max_buffered_body_bytes),
            samples: Samples::new(50, 256),
            history: ShareHistory::new(128),
            shadow_permits: Arc::new(Semaphore::new(MAX_REPLAYS)),
            effect_permits: Arc::new(Semaphore::new(MAX_EFFECT_CHECKS)),
            clients: Arc::new(serve::Tracker::default()),
            draining: AtomicBool::new(false),
            manual_aborts: std::sync::Mutex::new(std::collections::BTreeSet::new()),
            report: std::sync::Mutex::new(None),
            started: std::time::Instant::now(),
            evaluation_due_ms: std::sync::atomic::AtomicU64::new(0),
        });
        proxy.publish_route_gauges(ShareCause::Start);
        proxy.publish_limits();
        Ok(Bound {
            proxy,
            listener,
            admin,
            settings,
        })
    }

    pub(crate) fn comparator(&self) -> Arc<Comparator> {
        Arc::clone(&self.live.snapshot().comparator)
    }

    /// Re-reads the files when they changed. Every part of both (routing, comparison,
    /// guard, limits) is validated before any is applied: a refusal keeps them all.
    pub fn reload(&self) -> Result<bool, LoadError> {
        let result = self.live.reload_if_changed();
        match &result {
            Ok(true) => {
                let snap = self.live.snapshot();
                // Validated with the config already (`ProxyConfig::validate`).
                match self
                    .guard
                    .reconfigure(snap.config.guard.clone(), std::time::Instant::now())
                {
                    Ok(true) => tracing::info!("guard thresholds reloaded"),
                    Ok(false) => {}
                    Err(e) => {
                        tracing::error!(error = %e, "guard settings refused after validation")
                    }
                }
                self.budget
                    .set_limit(snap.config.limits.max_buffered_body_bytes);
                self.publish_limits();
                self.metrics
                    .reloads
                    .get_or_create(&metrics::ReloadLabels { result: "applied" })
                    .inc();
                tracing::info!(routes = snap.table.routes().len(), "routing reloaded");
                self.publish_route_gauges(ShareCause::Reload);
            }
            Ok(false) => {}
            Err(e) => {
                self.metrics
                    .reloads
                    .get_or_create(&metrics::ReloadLabels { result: "rejected" })
                    .inc();
                tracing::error!(error = %e, "reload refused; the previous routing stays in force");
            }
        }
        result
    }

    /// Sets the gauges of what is in use now (before the metrics are rendered).
    pub(crate) fn publish_usage(&self) {
        self.metrics
            .buffered_body_bytes
            .set(self.budget.in_use() as i64);
        self.metrics
            .open_connections
            .set(self.clients.open() as i64);
    }

    /// Sets the gauges of the body budget.
    pub(crate) fn publish_limits(&self) {
        self.metrics
            .buffered_body_limit_bytes
            .set(self.budget.limit() as i64);
    }

    /// Whether the route is aborted, by the guard or by an operator.
    pub(crate) fn is_aborted(&self, route: &str) -> bool {
        self.guard.state(route).is_aborted()
            || self
                .manual_aborts
                .lock()
                .map(|m| m.contains(route))
                .unwrap_or(false)
    }

    /// Sets the gauges of every route's share and guard state, and notes in the share
    /// history the routes whose share `cause` changed.
    pub(crate) fn publish_route_gauges(&self, cause: ShareCause) {
        let snap = self.live.snapshot();
        let now = std::time::Instant::now();
        self.history
            .retain(|name| snap.table.routes().iter().any(|r| r.name() == name));
        for route in snap.table.routes() {
            self.history
                .record(route.name(), route.new_share_basis_points(), cause, now);
            let label = metrics::RouteLabel {
                route: route.name().to_owned(),
            };
            self.metrics
                .new_share
                .get_or_create(&label)
                .set(i64::from(route.new_share_basis_points()));
            let aborted = self.is_aborted(route.name());
            self.metrics
                .guard_aborted
                .get_or_create(&label)
                .set(i64::from(aborted));
            // Every abort counter from 0, so that the first abort is an increase.
            for reason in rollout_guard::AbortReason::METRICS {
                drop(
                    self.metrics
                        .guard_aborts
                        .get_or_create(&metrics::AbortLabels {
                            route: route.name().to_owned(),
                            reason,
                        }),
                );
            }
        }
    }
}

impl Bound {
    pub fn addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("bound listener")
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin.local_addr().expect("bound listener")
    }

    /// Serves until `shutdown` resolves, then drains.
    pub async fn run_until(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        serve::run(
            self.proxy,
            self.listener,
            self.admin,
            self.settings,
            shutdown,
        )
        .await
    }
}
