//! `member-load`: load generators for the benchmarks, each printing its figures beside
//! a baseline measured in the same run (ratios, since the machine is shared and noisy).
//!
//! - `argon2`: the raw argon2id hash rate with the service's parameters, all cores;
//! - `login`: log-ins per second through the REST API (the goal: ≥ 0.9 × raw rate);
//! - `backfill`: the backfill against a plain read of the same rows;
//! - `sync-lag`: how long legacy changes take to reach the identity database;
//! - `grpc-reads`, `seed-members`, `tokens`, `sqlite-reads`: reads as other services make
//!   them, over many members and tokens (see `reads`);
//! - `change-lag`: the member change stream's delivery lag beside PostgreSQL's own
//!   `NOTIFY`.

/// The identity service's allocator, so that the load generator takes as little of the
/// shared machine from what it measures as it can (and its own SQLite baseline reads
/// run on the same allocator as the service's).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod backfill;
mod change_lag;
mod reads;
mod stats;
mod sync_lag;

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use identity_passwords::{Hasher, PasswordConfig};

use crate::stats::Recorder;

#[derive(Parser)]
#[command(
    name = "member-load",
    about = "Load generators for the member API benchmarks"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Raw argon2id hashes per second (OWASP parameters), one thread per core.
    Argon2 {
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// Log-ins per second through `POST /api/v1/sessions`.
    Login {
        #[arg(long)]
        base_url: String,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
    },
    /// The backfill of `--members` legacy members (seeded here), against a plain read of
    /// the same rows as the baseline.
    Backfill {
        /// The legacy database to fill (empty or made by a previous run).
        #[arg(long)]
        legacy_url: String,
        /// The identity database (empty).
        #[arg(long)]
        identity_url: String,
        #[arg(long, default_value_t = 1_000_000)]
        members: i64,
    },
    /// The continuous sync's lag: legacy changes at `--rate` per second, each timed
    /// until the identity database shows it, beside changes made there directly.
    SyncLag {
        #[arg(long)]
        legacy_url: String,
        #[arg(long)]
        identity_url: String,
        #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(i64).range(2..))]
        members: i64,
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=3600))]
        seconds: u64,
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        rate: u32,
        /// The sync's poll interval (`identity serve --sync-interval-ms`).
        #[arg(long, default_value_t = 500)]
        interval_ms: u64,
        /// The sync's look-back (`identity serve --sync-lookback-secs`).
        #[arg(long, default_value_t = 30)]
        lookback_secs: u64,
    },
    /// One gRPC read (`get`, `batch` of 100, `verify`, or `health`: the stack alone)
    /// over random members (and tokens), `--connections` HTTP/2 connections with
    /// `--in-flight` calls on each.
    GrpcReads {
        #[arg(long)]
        addr: String,
        #[arg(long, value_enum)]
        method: reads::Method,
        /// Members 1..=N exist (one in twenty withdrawn); 5% more ids are read that do not.
        #[arg(long)]
        members: u64,
        /// A file of access tokens, one per line (for `verify`).
        #[arg(long)]
        tokens: Option<std::path::PathBuf>,
        #[arg(long, default_value_t = 2)]
        connections: usize,
        #[arg(long, default_value_t = 16)]
        in_flight: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// Seeds members 1..=N straight into an empty identity database, each with
    /// `--password`.
    SeedMembers {
        #[arg(long)]
        database_url: String,
        #[arg(long)]
        members: u64,
        #[arg(long)]
        password: String,
    },
    /// Seeds legacy members `seed-{id}@example.com`, `1..=N`, with a bcrypt digest of
    /// `--password` (cost `--bcrypt-cost`), into the legacy database.
    SeedLegacy {
        #[arg(long)]
        database_url: String,
        #[arg(long, value_parser = clap::value_parser!(i64).range(1..=10_000_000))]
        members: i64,
        #[arg(long)]
        password: String,
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(4..=31))]
        bcrypt_cost: u32,
    },
    /// Logs `--count` random seeded members in; prints their access tokens.
    Tokens {
        #[arg(long)]
        base_url: String,
        #[arg(long)]
        members: u64,
        #[arg(long, default_value_t = 1000)]
        count: usize,
        #[arg(long)]
        password: String,
    },
    /// Point reads and reads of 100 rows, as plain queries on a SQLite database.
    SqliteReads {
        #[arg(long)]
        database_url: String,
        #[arg(long)]
        members: u64,
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// `WatchMemberChanges`' delivery lag: members renamed at `--rate` per second
    /// through `--write-addr`, followed on each `--watch-addr`; beside PostgreSQL's own
    /// NOTIFY at the same rate on `--database-url`.
    ChangeLag {
        #[arg(long)]
        write_addr: String,
        #[arg(long, required = true)]
        watch_addr: Vec<String>,
        /// A file of access tokens, one per line: the members renamed.
        #[arg(long)]
        tokens: std::path::PathBuf,
        /// The identity database (PostgreSQL), for the baseline.
        #[arg(long)]
        database_url: String,
        #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        rate: u32,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=1024))]
        writers: u64,
    },
    /// Token refreshes through `POST /api/v1/sessions/refresh`: each of `concurrency`
    /// clients logs in as a seeded member (`seed-N@example.com`, 1 in 20 withdrawn) and
    /// then refreshes with the token the last refresh gave it, as an app does.
    Refreshes {
        #[arg(long)]
        base_url: String,
        #[arg(long)]
        members: u64,
        #[arg(long)]
        password: String,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
    },
    /// An OTLP trace receiver (gRPC) that counts the spans it is sent, until SIGTERM or
    /// SIGINT; prints the count then.
    OtlpSink {
        #[arg(long)]
        listen: std::net::SocketAddr,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,sqlx::query=error".into()),
        )
        .with_writer(std::io::stderr)
        .try_init();
    match Cli::parse().command {
        Cmd::Argon2 { seconds } => argon2(seconds).await,
        Cmd::Backfill {
            legacy_url,
            identity_url,
            members,
        } => backfill::run(&legacy_url, &identity_url, members).await,
        Cmd::SyncLag {
            legacy_url,
            identity_url,
            members,
            seconds,
            rate,
            interval_ms,
            lookback_secs,
        } => {
            sync_lag::run(
                &legacy_url,
                &identity_url,
                &sync_lag::Options {
                    members,
                    seconds,
                    rate,
                    interval: Duration::from_millis(interval_ms),
                    lookback: Duration::from_secs(lookback_secs),
                },
            )
            .await
        }
        Cmd::Login {
            base_url,
            seconds,
            concurrency,
        } => login(&base_url, seconds, concurrency).await,
        Cmd::Refreshes {
            base_url,
            members,
            password,
            seconds,
            concurrency,
        } => refreshes(&base_url, members, &password, seconds, concurrency).await,
        Cmd::OtlpSink { listen } => {
            let sink = test_support::otlp::OtlpReceiver::start_on(listen, false).await;
            eprintln!("otlp sink listening on {}", sink.addr);
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            println!("spans received: {}", sink.count());
            Ok(())
        }
        Cmd::GrpcReads {
            addr,
            method,
            members,
            tokens,
            connections,
            in_flight,
            seconds,
        } => {
            let tokens = match tokens {
                Some(path) => std::fs::read_to_string(path)?
                    .lines()
                    .filter(|l| !l.is_empty())
                    .map(str::to_owned)
                    .collect(),
                None => Vec::new(),
            };
            reads::grpc_reads(
                &addr,
                method,
                members,
                tokens,
                connections,
                in_flight,
                seconds,
            )
            .await
        }
        Cmd::ChangeLag {
            write_addr,
            watch_addr,
            tokens,
            database_url,
            rate,
            seconds,
            writers,
        } => {
            let tokens = std::fs::read_to_string(tokens)?
                .lines()
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect();
            change_lag::run(
                &write_addr,
                &watch_addr,
                tokens,
                &database_url,
                &change_lag::Options {
                    rate,
                    seconds,
                    writers: writers as usize,
                },
            )
            .await
        }
        Cmd::SeedMembers {
            database_url,
            members,
            password,
        } => reads::seed_members(&database_url, members, &password).await,
        Cmd::SeedLegacy {
            database_url,
            members,
            password,
            bcrypt_cost,
        } => backfill::seed_with_password(&database_url, members, &password, bcrypt_cost).await,
        Cmd::Tokens {
            base_url,
            members,
            count,
            password,
        } => reads::tokens(&base_url, members, count, &password).await,
        Cmd::SqliteReads {
            database_url,
            members,
            concurrency,
            seconds,
        } => reads::sqlite_reads(&database_url, members, concurrency, seconds).await,
    }
}

async fn argon2(seconds: u64) -> anyhow::Result<()> {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let hasher = Hasher::new(&PasswordConfig {
        max_concurrent: threads,
        ..PasswordConfig::default()
    })
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for _ in 0..threads {
        let h = hasher.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < deadline {
                h.hash("benchmark-password").await.ok();
                n += 1;
            }
            n
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await?;
    }
    println!(
        "argon2id raw: {:.1} hashes/s ({threads} threads, m=19456 KiB t=2 p=1)",
        total as f64 / seconds as f64
    );
    Ok(())
}

async fn sign_up_and_log_in(
    client: &reqwest::Client,
    base: &str,
    email: &str,
) -> anyhow::Result<serde_json::Value> {
    let user = serde_json::json!({"user": {"email": email, "password": "benchmark-pw", "nickname": "bench"}});
    let r = client
        .post(format!("{base}/api/v1/users"))
        .json(&user)
        .send()
        .await?;
    anyhow::ensure!(
        r.status().as_u16() == 201 || r.status().as_u16() == 422,
        "sign-up: {}",
        r.status()
    );
    let s = client
        .post(format!("{base}/api/v1/sessions"))
        .json(&serde_json::json!({"email": email, "password": "benchmark-pw"}))
        .send()
        .await?;
    anyhow::ensure!(s.status().as_u16() == 201, "log-in: {}", s.status());
    Ok(s.json().await?)
}

async fn refreshes(
    base: &str,
    members: u64,
    password: &str,
    seconds: u64,
    concurrency: usize,
) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let rec = Arc::new(Recorder::default());
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for i in 0..concurrency as u64 {
        // Spread over the members, skipping the withdrawn (every twentieth).
        let id = (i * 7919 % members.max(1)) | 1;
        let (client, base, rec) = (client.clone(), base.to_owned(), Arc::clone(&rec));
        let password = password.to_owned();
        tasks.push(tokio::spawn(async move {
            let r = client
                .post(format!("{base}/api/v1/sessions"))
                .json(&serde_json::json!({"email": format!("seed-{id}@example.com"), "password": password}))
                .send()
                .await?;
            anyhow::ensure!(r.status().as_u16() == 201, "log-in of seed-{id}: {}", r.status());
            let v: serde_json::Value = r.json().await?;
            let mut refresh = v["refresh_token"].as_str().unwrap_or_default().to_owned();
            while Instant::now() < deadline {
                let t = Instant::now();
                let answer = client
                    .post(format!("{base}/api/v1/sessions/refresh"))
                    .json(&serde_json::json!({"refresh_token": refresh}))
                    .send()
                    .await;
                let next = match answer {
                    Ok(r) if r.status().as_u16() == 201 => r
                        .json::<serde_json::Value>()
                        .await
                        .ok()
                        .and_then(|v| v["refresh_token"].as_str().map(str::to_owned)),
                    _ => None,
                };
                rec.record(t.elapsed(), next.is_some());
                match next {
                    Some(token) => refresh = token,
                    None => anyhow::bail!("a refresh of seed-{id} failed: its session is lost"),
                }
            }
            Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    rec.print("refresh (REST)", seconds);
    Ok(())
}

async fn login(base: &str, seconds: u64, concurrency: usize) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let run = std::process::id();
    for i in 0..concurrency {
        sign_up_and_log_in(&client, base, &format!("bench-{run}-{i}@example.com")).await?;
    }
    let rec = Arc::new(Recorder::default());
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for i in 0..concurrency {
        let (client, base, rec) = (client.clone(), base.to_owned(), Arc::clone(&rec));
        let email = format!("bench-{run}-{i}@example.com");
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let t = Instant::now();
                let ok = client
                    .post(format!("{base}/api/v1/sessions"))
                    .json(&serde_json::json!({"email": email, "password": "benchmark-pw"}))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().as_u16() == 201);
                rec.record(t.elapsed(), ok);
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    rec.print("log-in (REST)", seconds);
    Ok(())
}
