//! The identity service's process: configuration, start-up (`Application::build` binds
//! the listeners and exposes their addresses), serving REST and gRPC, and graceful
//! shutdown on SIGTERM and SIGINT.

pub mod config;
mod grpc_threads;
pub mod migrate;
mod traces;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use identity_core::{CoreConfig, Identity, SystemClock, ThrottleConfig};
use identity_passwords::{Hasher, PasswordConfig};
use identity_rest::{AppState, Metrics, RestLimits};
use identity_store::{Store, StoreConfig};
use identity_tokens::{KeySet, SigningKeyFile, TokenConfig, Tokens};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::ServeArgs;

/// A built service: listeners bound, ready to serve.
pub struct Application {
    http: TcpListener,
    grpc: TcpListener,
    state: AppState,
    identity: Identity,
    grace: Duration,
    /// How long the member change log keeps a change.
    change_retention: Duration,
    /// Change streams open at once.
    max_change_followers: usize,
    /// Threads serving gRPC.
    grpc_threads: usize,
    /// The sync of legacy changes, while migrating.
    syncer: Option<(identity_migration::Syncer, Duration)>,
}

impl Application {
    /// Connects to the database (migrating it), loads keys, binds both listeners.
    pub async fn build(args: &ServeArgs) -> anyhow::Result<Self> {
        let store_config = StoreConfig {
            max_connections: args.db_max_connections,
            ..StoreConfig::default()
        };
        let store = Store::connect(&args.database_url(), &store_config)
            .await
            .context("cannot open the database (--database-url)")?;
        let signing = match &args.jwt_signing_key {
            Some(path) => SigningKeyFile::Path(path.clone()),
            None => SigningKeyFile::DevelopmentIn(args.data_dir.clone()),
        };
        let keys =
            KeySet::load(&signing, &args.jwt_verification_keys).context("--jwt-signing-key")?;
        let tokens = Tokens::new(
            keys,
            TokenConfig {
                issuer: args.jwt_issuer.clone(),
                audience: args.jwt_audience.clone(),
                access_ttl_secs: 3600,
            },
        );
        let mut password_config = PasswordConfig {
            memory_kib: args.argon2_memory_kib,
            iterations: args.argon2_iterations,
            parallelism: args.argon2_parallelism,
            queue_wait: Duration::from_millis(args.hash_queue_wait_ms),
            ..PasswordConfig::default()
        };
        if let Some(n) = args.hash_concurrency {
            password_config.max_concurrent = n;
        }
        let hasher = Hasher::new(&password_config).context("--argon2-* settings")?;
        let core_config = CoreConfig {
            refresh_reuse_grace_secs: args.refresh_reuse_grace_secs,
            throttle: ThrottleConfig {
                per_account: args.throttle_per_account,
                per_account_client: args.throttle_per_account_client,
                per_client: args.throttle_per_client,
                ..ThrottleConfig::default()
            },
            ..CoreConfig::default()
        };
        // Other replicas' commits heard from the start (PostgreSQL).
        store.listen();
        let identity = Identity::new(store, hasher, tokens, Arc::new(SystemClock), core_config);
        let http = TcpListener::bind(args.http_addr)
            .await
            .with_context(|| format!("--http-addr {}", args.http_addr))?;
        let grpc = TcpListener::bind(args.grpc_addr)
            .await
            .with_context(|| format!("--grpc-addr {}", args.grpc_addr))?;
        let state = AppState {
            identity: identity.clone(),
            metrics: Arc::new(Metrics::new()),
            trust_forwarded_for: args.trust_forwarded_for,
            trusted_proxy_hops: args.trusted_proxy_hops,
            max_body_bytes: args.max_body_bytes,
        };
        let syncer = match &args.legacy_database_url {
            Some(url) => {
                use secrecy::ExposeSecret;
                let legacy = legacy_db::LegacyDb::connect(
                    url.expose_secret(),
                    args.legacy_db_max_connections,
                )
                .await
                .context("cannot open the legacy database (--legacy-database-url)")?;
                if identity_migration::is_cut_over(identity.store()).await? {
                    tracing::info!(
                        "the migration was cut over: the legacy database is not synced any more"
                    );
                    None
                } else {
                    identity.attach_legacy(identity_core::LegacyLink {
                        db: legacy.clone(),
                        bcrypt_cost: args.legacy_bcrypt_cost,
                    });
                    state.metrics.set_migrating(true);
                    let metrics = Arc::clone(&state.metrics);
                    let syncer = identity_migration::Syncer::new(
                        identity.store().clone(),
                        legacy,
                        Duration::from_secs(args.sync_lookback_secs),
                    )
                    .observe(move |poll| match poll {
                        identity_migration::PollOutcome::Synced(r) => {
                            metrics.observe_sync_poll("synced", &r.lags)
                        }
                        identity_migration::PollOutcome::Standby => {
                            metrics.observe_sync_poll("standby", &[])
                        }
                        identity_migration::PollOutcome::Failed => {
                            metrics.observe_sync_poll("failed", &[])
                        }
                    });
                    Some((syncer, Duration::from_millis(args.sync_interval_ms)))
                }
            }
            None => None,
        };
        Ok(Self {
            http,
            grpc,
            state,
            identity,
            grace: args.shutdown_grace(),
            change_retention: args.change_retention(),
            max_change_followers: args.max_change_followers,
            grpc_threads: args.grpc_threads(),
            syncer,
        })
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http
            .local_addr()
            .expect("bound listener has an address")
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc
            .local_addr()
            .expect("bound listener has an address")
    }

    /// Serves until `shutdown` resolves, then stops accepting and drains in-flight
    /// requests for at most the grace period.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let stop_rx_for_grpc = stop_rx.clone();
        let metrics = Arc::clone(&self.state.metrics);
        let observer: identity_grpc::Observer = Arc::new(move |method, code, elapsed| {
            metrics.observe_grpc(method, identity_grpc::code_name(code), elapsed)
        });
        let grpc_service = identity_grpc::GrpcService::new(
            self.identity.clone(),
            observer,
            &identity_grpc::GrpcSettings {
                trust_forwarded_for: self.state.trust_forwarded_for,
                trusted_proxy_hops: self.state.trusted_proxy_hops,
                max_change_followers: self.max_change_followers,
            },
            stop_rx.clone(),
        );
        let (health_reporter, health_service) = tonic_health::server::health_reporter();
        health_reporter
            .set_serving::<identity_proto::identity::v1::identity_service_server::IdentityServiceServer<identity_grpc::GrpcService>>()
            .await;
        let (reflection_v1, reflection_v1alpha) =
            identity_grpc::reflection_services().context("gRPC reflection")?;

        let limits = RestLimits::default();
        let request_timeout = limits.request_timeout;
        let serve: grpc_threads::Serve = Arc::new(move |incoming| {
            let mut stop = stop_rx_for_grpc.clone();
            Box::pin(
                tonic::transport::Server::builder()
                    // A call without a deadline of its own (`grpc-timeout`) gets the REST
                    // surface's: none holds a database connection or a lock forever; the
                    // shorter of the two applies.
                    .timeout(request_timeout)
                    .layer(telemetry::server::TraceLayer::new(traces::grpc))
                    .add_service(health_service.clone())
                    .add_service(reflection_v1.clone())
                    .add_service(reflection_v1alpha.clone())
                    .add_service(identity_grpc::identity_service(grpc_service.clone()))
                    .serve_with_incoming_shutdown(incoming, async move {
                        let _ = stop.wait_for(|s| *s).await;
                    }),
            )
        });
        let mut grpc = grpc_threads::start(self.grpc, self.grpc_threads, serve, stop_rx.clone())
            .context("cannot start the gRPC threads")?;
        let router = identity_rest::router(self.state.clone(), &limits)
            .layer(telemetry::server::TraceLayer::new(traces::rest))
            .into_make_service_with_connect_info::<SocketAddr>();
        let mut http_stop = stop_rx.clone();
        let http = tokio::spawn(async move {
            axum::serve(
                axum::serve::ListenerExt::tap_io(self.http, |tcp| {
                    let _ = tcp.set_nodelay(true);
                }),
                router,
            )
            .with_graceful_shutdown(async move {
                let _ = http_stop.wait_for(|s| *s).await;
            })
            .await
        });
        let sync = self.syncer.map(|(syncer, interval)| {
            let mut stop = stop_rx.clone();
            let identity = self.identity.clone();
            let metrics = Arc::clone(&self.state.metrics);
            tokio::spawn(async move {
                tracing::info!(
                    interval_ms = interval.as_millis() as u64,
                    "migrating: syncing legacy changes, writing through"
                );
                let stopped = async move {
                    let _ = stop.wait_for(|s| *s).await;
                };
                syncer
                    .run(interval, stopped, move || {
                        tracing::info!("cutover: write-through and sync end");
                        identity.detach_legacy();
                        metrics.set_migrating(false);
                    })
                    .await;
            })
        });
        let pruning = tokio::spawn(prune_changes(
            self.identity.clone(),
            self.change_retention,
            stop_rx.clone(),
        ));
        tracing::info!("serving");
        shutdown.await;
        tracing::info!(
            grace_secs = self.grace.as_secs(),
            "shutting down: draining in-flight requests"
        );
        health_reporter
            .set_not_serving::<identity_proto::identity::v1::identity_service_server::IdentityServiceServer<identity_grpc::GrpcService>>()
            .await;
        let _ = stop_tx.send(true);
        let drained = tokio::time::timeout(self.grace, async {
            let _ = http.await;
            grpc.stopped().await;
        })
        .await;
        if drained.is_err() {
            tracing::warn!("grace period over: closing remaining connections");
        }
        if let Some(sync) = sync {
            let _ = sync.await;
        }
        let _ = pruning.await;
        self.identity.store().close().await;
        grpc.end().await;
        Ok(())
    }
}

/// Drops the changes older than the retention from the log, each minute, until the
/// server stops (every replica does; the deletes are the same).
async fn prune_changes(identity: Identity, retention: Duration, mut stop: watch::Receiver<bool>) {
    loop {
        // A database that hangs holds one prune, not the task.
        match tokio::time::timeout(Duration::from_secs(60), identity.prune_changes(retention)).await
        {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::info!(pruned = n, "member change log pruned"),
            Ok(Err(e)) => tracing::warn!(error = %e.chain(), "cannot prune the member change log"),
            Err(_) => tracing::warn!("the member change log's pruning did not finish within 60 s"),
        }
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            () = tokio::time::sleep(Duration::from_secs(60)) => {}
        }
    }
}

pub use process_support::shutdown_signal;

/// `identity serve`.
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let app = Application::build(&args).await?;
    tracing::info!(http = %app.http_addr(), grpc = %app.grpc_addr(), "listening");
    app.run_until(shutdown_signal()).await
}
