//! `fault-rehearsal`: the rollout rehearsed at cluster shape while the faults a cluster
//! normally has are injected, one in each step at a random moment of it. App clients
//! that speak only the contract check every answer; each answer they did not expect is
//! put down to the fault whose window it came in. At the end: every acknowledged write
//! on both sides, `migrate verify`, the cutover, and no member with a session nobody
//! asked for (a log-in or refresh applied twice).
//!
//! Short (CI): `fault-rehearsal` (every fault once, 8 s steps). Long (by hand):
//! `fault-rehearsal --rounds 2 --step-secs 40` (every fault twice, over 10 minutes).

mod cluster;
mod faults;
mod processes;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use local_stack::{EventKind, Traffic, TrafficReport};

use crate::cluster::{Cluster, Options, Placement};
use crate::faults::Fault;

#[derive(Parser)]
#[command(about = "The rollout rehearsed at cluster shape, with faults injected")]
struct Cli {
    /// Times each fault is injected.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=20))]
    rounds: u32,
    /// Seconds each step (one fault) lasts.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(4..=600))]
    step_secs: u64,
    /// Identity replicas and proxy replicas.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(2..=8))]
    replicas: u32,
    /// Where the proxies run: replicas of their own in front of one Rails app, or one
    /// beside each Rails replica.
    #[arg(long, value_enum, default_value_t = Placement::Standalone)]
    placement: Placement,
    /// Synthetic app clients.
    #[arg(long, default_value_t = 6)]
    clients: usize,
    /// Pause between two requests of one client, in milliseconds.
    #[arg(long, default_value_t = 40)]
    pace_ms: u64,
    /// Members the legacy has before the rollout.
    #[arg(long, default_value_t = 200)]
    seed_members: u32,
    /// The random seed of the faults' order, moments and replicas (printed; default:
    /// a new one).
    #[arg(long)]
    seed: Option<u64>,
    /// Where the databases, logs and files go (default: a temporary directory, removed
    /// when the rehearsal passes).
    #[arg(long)]
    work_dir: Option<PathBuf>,
}

/// A small, seeded generator: the same seed, the same rehearsal.
struct Draw(u64);

impl Draw {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// In `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// One fault as injected, and what the clients saw in its window (from it to the next).
struct Injected {
    fault: Fault,
    weight: u32,
    at: Instant,
    recovery: Result<Duration, String>,
    /// From the new side's degradation to every guard's abort.
    guard_abort: Option<Duration>,
    /// Answers the clients did not expect, by kind and what (method, path, status).
    seen: BTreeMap<(EventKind, String), u64>,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("fault-rehearsal: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// The identity service's share at step `k` of `n`: up from shadowing only to everyone.
fn weight_at(k: usize, n: usize) -> u32 {
    const PLAN: [u32; 6] = [0, 1, 5, 25, 50, 100];
    PLAN[(k * PLAN.len() / n.max(1)).min(PLAN.len() - 1)]
}

async fn run(cli: &Cli) -> anyhow::Result<bool> {
    let seed = cli.seed.unwrap_or_else(|| {
        let mut b = [0u8; 8];
        let _ = getrandom::fill(&mut b);
        u64::from_le_bytes(b) | 1
    });
    let mut draw = Draw(seed | 1);
    let temp = match &cli.work_dir {
        Some(_) => None,
        None => Some(tempfile_dir()?),
    };
    let work = cli
        .work_dir
        .clone()
        .or_else(|| temp.clone())
        .unwrap_or_default();
    std::fs::create_dir_all(&work)?;
    println!("fault rehearsal: seed {seed}, work in {}", work.display());

    let replicas = cli.replicas as usize;
    let mut c = Cluster::start(&Options {
        work: work.clone(),
        identities: replicas,
        proxies: replicas,
        seed_members: cli.seed_members,
        placement: cli.placement,
    })
    .await?;
    let proxies = match cli.placement {
        Placement::Standalone => format!("{replicas} proxies in front of it"),
        Placement::Sidecar => format!("{replicas} replicas, each with its proxy beside it"),
    };
    println!(
        "cluster: Rails on PostgreSQL ({proxies}), {replicas} identity replicas on PostgreSQL, HAProxy at {}",
        c.entry
    );

    // Every fault `rounds` times, in a random order; the new side's degradation where
    // it serves a share of users (the second half of the plan), for its guard to judge.
    let mut plan: Vec<Fault> = (0..cli.rounds).flat_map(|_| Fault::ALL).collect();
    for i in (1..plan.len()).rev() {
        plan.swap(i, draw.below(i as u64 + 1) as usize);
    }
    let half = plan.len().div_ceil(2);
    for i in 0..half {
        if plan[i] == Fault::DegradeNewSide {
            let j = (half..plan.len())
                .find(|&j| plan[j] != Fault::DegradeNewSide)
                .unwrap_or(i);
            plan.swap(i, j);
        }
    }

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let traffic = Traffic::start(
        &format!("http://{}", c.entry),
        cli.clients,
        2,
        Duration::from_millis(cli.pace_ms),
        stop_rx,
    );
    let started = Instant::now();
    let step = Duration::from_secs(cli.step_secs);
    // A quiet step first: what the clients see with no fault at all.
    tokio::time::sleep(step).await;
    let quiet_until = Instant::now();
    let mut injected = Vec::new();
    for (k, fault) in plan.iter().enumerate() {
        let weight = weight_at(k, plan.len());
        c.set_weight(weight).await?;
        let step_start = Instant::now();
        // At a random moment of the step's first half.
        let wait = step.mul_f64(0.5 * draw.below(1000) as f64 / 1000.0);
        tokio::time::sleep(wait).await;
        let at = Instant::now();
        let outcome = faults::inject(&mut c, *fault, draw.below(64) as usize)
            .await
            .map_err(|e| format!("{e:#}"));
        let guard_abort = outcome.as_ref().ok().and_then(|o| o.guard_abort);
        let recovery = outcome.map(|o| o.recovery);
        println!(
            "{:>6.1}s  {:>3}%  {:<32} {}",
            at.duration_since(started).as_secs_f64(),
            weight,
            fault.name(),
            match (&recovery, guard_abort) {
                (Ok(d), Some(a)) => format!(
                    "every guard aborted after {:.1} s; whole again after {:.1} s",
                    a.as_secs_f64(),
                    d.as_secs_f64()
                ),
                (Ok(d), None) => format!("whole again after {:.1} s", d.as_secs_f64()),
                (Err(e), _) => format!("NOT RECOVERED: {e}"),
            }
        );
        let failed = recovery.is_err();
        injected.push(Injected {
            fault: *fault,
            weight,
            at,
            recovery,
            guard_abort,
            seen: BTreeMap::new(),
        });
        if failed {
            break;
        }
        let rest = step.saturating_sub(step_start.elapsed());
        tokio::time::sleep(rest.max(Duration::from_secs(2))).await;
    }
    let _ = stop_tx.send(true);
    let report = traffic.await?;
    let ended = Instant::now();

    // Each unexpected answer to the fault whose window it came in.
    let mut quiet: BTreeMap<(EventKind, String), u64> = BTreeMap::new();
    for e in &report.events {
        let owner = injected.iter_mut().rev().find(|i| i.at <= e.at);
        let seen = match owner {
            Some(i) => &mut i.seen,
            None => &mut quiet,
        };
        *seen.entry((e.kind, e.what.clone())).or_default() += 1;
    }

    // What was acknowledged is on both sides, once the sync has had its moment.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let lost = lost_writes(&c, &report).await?;
    let (verified, verify) = c.migrate(&["verify"])?;
    let (cut, cutover) = c.migrate(&["cutover", "--force"])?;
    let left = if cut {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if c.every_identity_says("identity_migrating 0").await {
                break true;
            }
            if Instant::now() > deadline {
                break false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    } else {
        false
    };

    // After the cutover every session is in the identity database, the legacy's imported.
    let (duplicated, live_sessions) = if left {
        sessions_nobody_asked_for(&c, &report).await?
    } else {
        (Vec::new(), 0)
    };

    print_table(&injected, &quiet, quiet_until.duration_since(started));
    println!(
        "\ntraffic: {} requests in {:.0} s, {} acknowledged writes; by status {:?}",
        report.requests,
        ended.duration_since(started).as_secs_f64(),
        report.writes,
        report.by_status
    );
    println!(
        "totals: {} unexpected answers, {} forced log-outs, {} refresh retries refused after a lost answer, {} stale reads, {} sessions back after their log-out, {} acknowledged writes lost, {} duplicated (members with sessions nobody asked for: {} live sessions of {} members, at most {} asked for)",
        report.unexpected,
        report.forced_logouts,
        report.refresh_retries_refused,
        report.stale_reads,
        report.resurrected,
        lost.len(),
        duplicated.len(),
        live_sessions,
        report.sessions_at_most.len(),
        report.sessions_at_most.iter().map(|(_, n)| n).sum::<u64>()
    );
    for l in lost.iter().take(10) {
        println!("  lost: {l}");
    }
    for d in duplicated.iter().take(10) {
        println!("  duplicated: {d}");
    }
    let aborts = c.guard_aborts();
    println!("guard aborts: {}", aborts.len());
    for a in &aborts {
        println!("  {a}");
    }
    println!("verify: {}", verify.lines().last().unwrap_or("").trim());
    println!(
        "cutover: {}",
        if left {
            "done, every replica left the legacy"
        } else {
            "FAILED"
        }
    );
    if !cut {
        println!("{cutover}");
    }

    let mut problems = Vec::new();
    if report.requests < 200 {
        problems.push(format!("too little traffic: {} requests", report.requests));
    }
    if injected.iter().any(|i| i.recovery.is_err()) || injected.len() < plan.len() {
        problems.push("a fault the cluster did not recover from".to_owned());
    }
    if !lost.is_empty() {
        problems.push(format!("{} acknowledged writes lost", lost.len()));
    }
    if !duplicated.is_empty() {
        problems.push(format!(
            "{} members with sessions nobody asked for (a write applied twice)",
            duplicated.len()
        ));
    }
    if report.forced_logouts > 0 {
        problems.push(format!("{} members logged out", report.forced_logouts));
    }
    if report.resurrected > 0 {
        problems.push(format!(
            "{} sessions came back after their log-out",
            report.resurrected
        ));
    }
    if !verified {
        problems.push("verify found deviating members".to_owned());
    }
    if !left {
        problems.push("the cutover did not complete".to_owned());
    }
    for p in &problems {
        println!("PROBLEM: {p}");
    }
    drop(c);
    if problems.is_empty() {
        if let Some(dir) = temp {
            let _ = std::fs::remove_dir_all(dir);
        }
        println!("fault rehearsal passed");
    } else {
        println!("logs kept in {}", work.join("logs").display());
    }
    Ok(problems.is_empty())
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let mut b = [0u8; 6];
    let _ = getrandom::fill(&mut b);
    let name: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(std::env::temp_dir().join(format!("fault-rehearsal-{name}")))
}

/// Each client's last acknowledged nickname, on both sides.
async fn lost_writes(c: &Cluster, report: &TrafficReport) -> anyhow::Result<Vec<String>> {
    let store = identity_store::Store::connect(
        &c.identity_database_url,
        &identity_store::StoreConfig::default(),
    )
    .await?;
    let legacy = legacy_db::LegacyDb::connect(&c.legacy_database_url, 2).await?;
    let mut lost = Vec::new();
    for (id, _, nickname) in &report.members {
        match store.member_by_id(*id).await? {
            Some(m) if &m.nickname == nickname => {}
            Some(_) => lost.push(format!(
                "member {id}: the identity service lost the last write"
            )),
            None => lost.push(format!("member {id}: missing in the identity service")),
        }
        match legacy.user_by_id(legacy.pool(), *id).await? {
            Some(u) if &u.nickname == nickname => {}
            Some(_) => lost.push(format!("member {id}: the legacy lost the last write")),
            None => lost.push(format!("member {id}: missing in the legacy")),
        }
    }
    Ok(lost)
}

/// Members with more live sessions than their client can account for (see
/// `TrafficReport::sessions_at_most`): a log-in or a refresh applied twice; and the live
/// sessions of the clients' members in all.
async fn sessions_nobody_asked_for(
    c: &Cluster,
    report: &TrafficReport,
) -> anyhow::Result<(Vec<String>, u64)> {
    let store = identity_store::Store::connect(
        &c.identity_database_url,
        &identity_store::StoreConfig::default(),
    )
    .await?;
    let (mut found, mut total) = (Vec::new(), 0);
    for (id, at_most) in &report.sessions_at_most {
        let sessions = store.sessions_of_member(*id, i64::MAX).await?;
        let live = sessions.iter().filter(|(_, _, live)| *live).count() as u64;
        total += live;
        if live > *at_most {
            found.push(format!(
                "member {id}: {live} live sessions, at most {at_most} asked for"
            ));
        }
    }
    Ok((found, total))
}

fn kind_name(k: EventKind) -> &'static str {
    match k {
        EventKind::Unexpected => "error",
        EventKind::ForcedLogout => "forced log-out",
        EventKind::StaleRead => "stale read",
        EventKind::Resurrected => "session back",
        EventKind::RefreshRetryRefused => "refresh retry refused",
    }
}

fn print_table(
    injected: &[Injected],
    quiet: &BTreeMap<(EventKind, String), u64>,
    quiet_for: Duration,
) {
    println!(
        "\n| fault | share | recovery s | guard abort s | errors | forced log-outs | stale reads | what the clients saw |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    let row = |cells: [String; 4], seen: &BTreeMap<(EventKind, String), u64>| {
        let count = |k: EventKind| -> u64 {
            seen.iter()
                .filter(|((kind, _), _)| *kind == k)
                .map(|(_, n)| n)
                .sum()
        };
        let what: Vec<String> = seen
            .iter()
            .map(|((k, w), n)| format!("{n}x {} {w}", kind_name(*k)))
            .collect();
        println!(
            "| {} | {} | {} | {} | {} |",
            cells.join(" | "),
            count(EventKind::Unexpected),
            count(EventKind::ForcedLogout),
            count(EventKind::StaleRead),
            if what.is_empty() {
                "-".to_owned()
            } else {
                what.join("; ")
            }
        );
    };
    row(
        [
            format!("(none: the first {:.0} s)", quiet_for.as_secs_f64()),
            "0%".into(),
            "-".into(),
            "-".into(),
        ],
        quiet,
    );
    let mut sorted: Vec<&Injected> = injected.iter().collect();
    sorted.sort_by_key(|i| (i.fault, i.at));
    for i in sorted {
        row(
            [
                i.fault.name().to_owned(),
                format!("{}%", i.weight),
                match &i.recovery {
                    Ok(d) => format!("{:.1}", d.as_secs_f64()),
                    Err(_) => "never".into(),
                },
                i.guard_abort
                    .map_or("-".into(), |a| format!("{:.1}", a.as_secs_f64())),
            ],
            &i.seen,
        );
    }
}
