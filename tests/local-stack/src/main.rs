//! `local-stack`: the whole migration on embedded defaults. The legacy simulator seeded
//! with members, the identity service migrating from it, the migration proxy in front
//! at 1% with shadowing, and a steady stream of synthetic clients. Ctrl-C stops it all.
//!
//! With `--legacy-database-url` the legacy is one already running at `--legacy-addr`
//! (the Rails app of `tests/legacy-rails`); with `--rehearse` the stack is driven through
//! a whole rollout and cutover under traffic, and the exit status says whether it lost
//! anything.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use local_stack::rehearsal::{RehearsalOptions, rehearse};
use local_stack::stack::LegacySource;
use local_stack::{Stack, StackOptions, Traffic};

#[derive(Parser)]
#[command(
    name = "local-stack",
    about = "The whole member migration, locally, on SQLite"
)]
struct Cli {
    /// Where the databases and generated files go.
    #[arg(long, default_value = "./data/local-stack")]
    data_dir: PathBuf,
    /// Members the legacy starts with.
    #[arg(long, default_value_t = 1000)]
    seed_members: u32,
    /// The identity service's share of users at start, in percent.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(0..=100))]
    percent: u32,
    /// Synthetic clients.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Pause between two requests of one client, in milliseconds.
    #[arg(long, default_value_t = 300)]
    pace_ms: u64,
    /// bcrypt cost of the legacy's digests (the legacy uses 12).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(4..=31))]
    bcrypt_cost: u32,
    /// The legacy simulator's address (port 0: any free port; the bound one is printed);
    /// with --legacy-database-url, the address of the legacy already running there.
    #[arg(long, default_value = "127.0.0.1:3000")]
    legacy_addr: SocketAddr,
    /// The database of a legacy already running at --legacy-addr (the Rails app):
    /// `postgres://...` or `sqlite3:FILE`. Seeded with --seed-members when it has none.
    #[arg(long, env = "LOCAL_STACK_LEGACY_DATABASE_URL", hide_env_values = true)]
    legacy_database_url: Option<String>,
    /// The identity service's database (default: SQLite in --data-dir).
    #[arg(
        long,
        env = "LOCAL_STACK_IDENTITY_DATABASE_URL",
        hide_env_values = true
    )]
    identity_database_url: Option<String>,
    /// Drive the stack through a whole rollout and cutover under traffic, then exit:
    /// 0 when nothing was lost, 1 otherwise.
    #[arg(long)]
    rehearse: bool,
    /// With --rehearse: seconds each step runs.
    #[arg(long, default_value_t = 3.0)]
    phase_secs: f64,
    /// Fast password hashing (argon2id with small memory; for tests).
    #[arg(long)]
    fast_hashing: bool,
    /// The identity service's REST address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    identity_http_addr: SocketAddr,
    /// The identity service's gRPC address.
    #[arg(long, default_value = "127.0.0.1:50051")]
    identity_grpc_addr: SocketAddr,
    /// The migration proxy's address.
    #[arg(long, default_value = "127.0.0.1:8000")]
    proxy_addr: SocketAddr,
    /// The proxy's admin API address (also serves the dashboard).
    #[arg(long, default_value = "127.0.0.1:9901")]
    admin_addr: SocketAddr,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .try_init();
    let cli = Cli::parse();
    if !(0.1..=3600.0).contains(&cli.phase_secs) {
        eprintln!("local-stack: --phase-secs must be between 0.1 and 3600");
        std::process::exit(64);
    }
    let options = StackOptions {
        data_dir: cli.data_dir,
        legacy: match cli.legacy_database_url {
            Some(database_url) => LegacySource::External {
                addr: cli.legacy_addr,
                database_url,
            },
            None => LegacySource::Simulator(cli.legacy_addr),
        },
        identity_database_url: cli.identity_database_url,
        identity_http: cli.identity_http_addr,
        identity_grpc: cli.identity_grpc_addr,
        proxy_addr: cli.proxy_addr,
        admin_addr: cli.admin_addr,
        seed_members: cli.seed_members,
        bcrypt_cost: cli.bcrypt_cost,
        new_percent: if cli.rehearse { 0 } else { cli.percent },
        fast_hashing: cli.fast_hashing,
    };
    let stack = Stack::start(&options).await?;
    if cli.rehearse {
        let report = rehearse(
            &stack,
            &RehearsalOptions {
                phase: Duration::from_secs_f64(cli.phase_secs),
                clients: cli.clients,
                pace: Duration::from_millis(cli.pace_ms),
                ..RehearsalOptions::default()
            },
        )
        .await;
        stack.stop().await;
        let report = report?;
        print!("{}", report.summary());
        let problems = report.problems();
        if problems.is_empty() {
            println!("rehearsal passed: nothing lost");
            return Ok(());
        }
        for p in &problems {
            eprintln!("rehearsal failed: {p}");
        }
        std::process::exit(1);
    }
    println!("legacy simulator   http://{}", stack.legacy);
    println!(
        "identity service   http://{} (gRPC {})",
        stack.identity, stack.identity_grpc
    );
    println!(
        "migration proxy    http://{}  ({}% to identity, every legacy answer shadowed)",
        stack.proxy, cli.percent
    );
    println!(
        "admin API          http://{}/admin/status  (Authorization: Bearer {})",
        stack.admin,
        local_stack::stack::ADMIN_TOKEN
    );
    println!("metrics            http://{}/metrics", stack.admin);
    println!("dashboard          http://{}/dashboard", stack.admin);
    println!(
        "VirtualService     {} (edit it: the proxy reloads it)",
        stack.virtual_service.display()
    );
    println!(
        "{} synthetic clients are running; Ctrl-C stops everything.",
        cli.clients
    );
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let traffic = Traffic::start(
        &format!("http://{}", stack.proxy),
        cli.clients,
        0,
        Duration::from_millis(cli.pace_ms),
        stop_rx,
    );
    tokio::signal::ctrl_c().await?;
    let _ = stop_tx.send(true);
    let report = traffic.await?;
    println!(
        "\nclients: {} requests, {} writes, {} unexpected answers, {} forced log-outs, {} stale reads",
        report.requests,
        report.writes,
        report.unexpected,
        report.forced_logouts,
        report.stale_reads
    );
    stack.stop().await;
    Ok(())
}
