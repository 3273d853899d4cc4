//! `legacy-sim`: the legacy simulator's command line (see the library for what it is).

use clap::Parser;
use legacy_sim::{handlers, seed};

use std::net::SocketAddr;
use std::process::ExitCode;

/// Command line.
#[derive(Debug, Parser)]
#[command(
    name = "legacy-sim",
    version,
    about = "Simulator of the legacy Rails member API"
)]
struct Cli {
    /// Listen address.
    #[arg(long, env = "LEGACY_SIM_ADDR", default_value = "127.0.0.1:3000")]
    addr: SocketAddr,
    /// The legacy database: `sqlite://FILE`, `sqlite3:FILE` or `postgres://...`.
    #[arg(
        long,
        env = "LEGACY_DATABASE_URL",
        default_value = "sqlite://./data/legacy.sqlite3?mode=rwc",
        hide_env_values = true
    )]
    database_url: String,
    /// bcrypt cost of new digests (the legacy uses 12).
    #[arg(long, env = "BCRYPT_COST", default_value_t = 12, value_parser = clap::value_parser!(u32).range(4..=31))]
    bcrypt_cost: u32,
    /// Members to create on start when the database has none (`member-N@example.com`,
    /// password `password-N`), for demos.
    #[arg(long, default_value_t = 0)]
    seed_members: u32,
}

fn main() -> ExitCode {
    let cli: Cli = match process_support::parse_or_exit() {
        Ok(c) => c,
        Err(code) => return code,
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let runtime = match process_support::runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(64)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    use anyhow::Context;
    if let Some(path) = cli
        .database_url
        .strip_prefix("sqlite://")
        .and_then(|p| p.split('?').next())
        && let Some(parent) = std::path::Path::new(path)
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
    {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("--database-url: cannot create {}", parent.display()))?;
    }
    let state = legacy_sim::connect(&cli.database_url, cli.bcrypt_cost)
        .await
        .context("--database-url")?;
    if cli.seed_members > 0 {
        seed::seed(&state, cli.seed_members)
            .await
            .context("seeding members")?;
    }
    let listener = tokio::net::TcpListener::bind(cli.addr)
        .await
        .with_context(|| format!("--addr {}", cli.addr))?;
    eprintln!("legacy-sim listening on http://{}", listener.local_addr()?);
    axum::serve(listener, handlers::router(state))
        .with_graceful_shutdown(async {
            process_support::shutdown_signal().await;
        })
        .await?;
    Ok(())
}
