//! `migration-proxy`: the member API's migration sidecar.

use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use migration_proxy::{Proxy, Settings};

/// Sends each user to the legacy or the new service by the weights of an Istio
/// VirtualService, replays traffic to the other side and compares the answers.
#[derive(Debug, Parser)]
#[command(name = "migration-proxy", version)]
struct Cli {
    /// The VirtualService manifest (YAML), hot-reloaded.
    #[arg(long, env = "PROXY_VIRTUAL_SERVICE")]
    virtual_service: PathBuf,
    /// The proxy config (YAML): upstream addresses, comparison, guard, admin token.
    #[arg(long, env = "PROXY_CONFIG")]
    config: PathBuf,
    /// Listen address for client traffic (default 127.0.0.1:8000, or `listen` in the config).
    #[arg(long, env = "PROXY_LISTEN")]
    listen: Option<std::net::SocketAddr>,
    /// Admin API address (default 127.0.0.1:9901, or `admin_listen` in the config).
    #[arg(long, env = "PROXY_ADMIN")]
    admin: Option<std::net::SocketAddr>,
    /// Milliseconds between checks of the files for changes.
    #[arg(long, env = "PROXY_RELOAD_INTERVAL_MS", default_value_t = 1000)]
    reload_interval_ms: u64,
    /// Seconds in-flight requests get to finish after SIGTERM.
    #[arg(long, env = "PROXY_DRAIN_SECS", default_value_t = 20)]
    drain_secs: u64,
    /// Worker threads serving client traffic (0: one per core).
    #[arg(long, env = "PROXY_WORKERS", default_value_t = 0)]
    workers: usize,
    /// Log format: json or text.
    #[arg(long, env = "PROXY_LOG_FORMAT", default_value = "json")]
    log_format: String,
}

fn main() -> ExitCode {
    let cli: Cli = match process_support::parse_or_exit() {
        Ok(c) => c,
        Err(code) => return code,
    };
    if cli.log_format != "json" && cli.log_format != "text" {
        eprintln!("error: invalid setting --log-format: must be json or text");
        return ExitCode::from(64);
    }
    // Logs, and traces when the OTEL_* environment asks for them.
    let telemetry = match telemetry::init("migration-proxy", &cli.log_format, "info") {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(64);
        }
    };
    let settings = Settings {
        virtual_service: cli.virtual_service,
        config: cli.config,
        listen: cli.listen,
        admin: cli.admin,
        reload_interval: Duration::from_millis(cli.reload_interval_ms.max(50)),
        drain: Duration::from_secs(cli.drain_secs),
        workers: cli.workers,
    };
    // The admin port, reloads and the guard's timer; client traffic has worker threads.
    let runtime = match process_support::single_thread_runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let code = runtime.block_on(async move {
        let bound = match Proxy::build(settings).await {
            Ok(b) => b,
            Err(e) => {
                eprintln!("error: {e:#}");
                return ExitCode::from(64);
            }
        };
        tracing::info!(listen = %bound.addr(), admin = %bound.admin_addr(), "migration proxy listening");
        match bound.run_until(process_support::shutdown_signal()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        }
    });
    drop(runtime);
    telemetry.shutdown();
    code
}
