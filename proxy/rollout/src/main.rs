//! `rollout`: status, set-weight, step, abort, resume and promote for the member API's
//! migration; `auto`, the autopilot that takes routes along the plan on evidence; and
//! `report`, the decommission report. Weights are changed in the VirtualService manifest (the source of truth)
//! and the proxy is told to reload; abort and resume also act at once through the admin
//! API. Every command acts on every replica given (`--admin`, comma-separated): each
//! proxy replica keeps its own guard, overrides and figures, so an abort must reach them
//! all, and a step is refused if any replica finds it unsafe or cannot be asked.
//! Exit codes: 0 done, 1 refused as unsafe (use --force), 2 bad usage or manifest,
//! 3 a replica's admin API could not be reached; `auto`: 4 a route was aborted, 5 it
//! stopped without deciding (a route's evidence stayed short past --max-pause, or its
//! weight was changed in the manifest outside the autopilot); `report`: 6 the report does
//! not pass.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use rollout::fleet::{Failure, Fleet, first_failure};
use rollout::{autopilot, journal, plan, report, status};

#[derive(Parser)]
#[command(
    name = "rollout",
    version,
    about = "Roll the member API out from the legacy to the identity service"
)]
struct Cli {
    /// The proxy's admin API, one URL per replica, comma-separated.
    #[arg(
        long,
        env = "ROLLOUT_ADMIN_URL",
        default_value = "http://127.0.0.1:9901",
        value_delimiter = ',',
        global = true
    )]
    admin: Vec<String>,
    /// The admin bearer token.
    #[arg(
        long,
        env = "ROLLOUT_ADMIN_TOKEN",
        hide_env_values = true,
        global = true
    )]
    token: Option<String>,
    /// The VirtualService manifest the proxy reads.
    #[arg(
        long,
        env = "ROLLOUT_VIRTUAL_SERVICE",
        default_value = "istio/virtualservice-member-api.yaml",
        global = true
    )]
    virtual_service: PathBuf,
    /// The legacy destination's host in the manifest.
    #[arg(
        long,
        default_value = "legacy-api.members.svc.cluster.local",
        global = true
    )]
    legacy_host: String,
    /// The identity service's host in the manifest.
    #[arg(
        long,
        default_value = "identity.members.svc.cluster.local",
        global = true
    )]
    new_host: String,
    /// The plan of weights, in percent.
    #[arg(long, default_value = "1,5,10,25,50,100", global = true)]
    plan: String,
    /// Highest error rate of the new side (0-1) at which a step is allowed.
    #[arg(long, default_value_t = 0.01, global = true)]
    max_error_rate: f64,
    /// Highest mismatch rate (0-1) at which a step is allowed.
    #[arg(long, default_value_t = 0.01, global = true)]
    max_mismatch_rate: f64,
    /// Take the step even when it is unsafe or skips the plan.
    #[arg(long, global = true)]
    force: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// A table of every route: weights, rates, mismatches, guard state.
    Status,
    /// Set ROUTE's identity weight to N percent in the manifest.
    SetWeight { route: String, percent: u32 },
    /// Move ROUTE to the plan's next step.
    Step { route: String },
    /// ROUTE's identity weight to 0 now (admin API) and in the manifest.
    Abort { route: String },
    /// Re-arm the guard of ROUTE; the manifest's weight applies again.
    Resume { route: String },
    /// ROUTE to 100% (only from the plan's last step before it, unless --force).
    Promote { route: String },
    /// The autopilot: each ROUTE along the plan on evidence, to 100%, or aborted.
    Auto(AutoArgs),
    /// The decommission report of the journal, with the final data verify.
    Report(ReportArgs),
}

#[derive(clap::Args)]
struct AutoArgs {
    /// The routes to roll out (all of them at once: each judged on its own).
    #[arg(required = true)]
    routes: Vec<String>,
    /// Least time at each step, in seconds.
    #[arg(long, default_value_t = 600.0)]
    bake: f64,
    /// Seconds between two readings of the evidence.
    #[arg(long, default_value_t = 10.0)]
    interval: f64,
    /// Agreement each step must reach, in percent.
    #[arg(long, default_value_t = 99.999)]
    target: f64,
    /// Reads and write effects compared that a step needs before it may advance.
    #[arg(long, default_value_t = 1000)]
    min_comparisons: u64,
    /// Requests a side needs in a step before its errors and latency are judged.
    #[arg(long, default_value_t = 100)]
    min_requests: u64,
    /// Highest ratio of the new side's p99 latency to the legacy's.
    #[arg(long, default_value_t = 2.0)]
    max_p99_ratio: f64,
    /// New-side p99, in ms, under which latency is never a breach.
    #[arg(long, default_value_t = 50.0)]
    p99_floor_ms: f64,
    /// Seconds a baked step may wait for evidence before the autopilot gives up
    /// (the route stays where it is); without it, it waits.
    #[arg(long)]
    max_pause: Option<f64>,
    /// Skip the data verify of the members each step wrote.
    #[arg(long)]
    no_verify: bool,
    /// The journal: every decision appended, one JSON line each.
    #[arg(long, env = "ROLLOUT_JOURNAL", default_value = "rollout-journal.jsonl")]
    journal: PathBuf,
}

#[derive(clap::Args)]
struct ReportArgs {
    /// The autopilot's journal.
    #[arg(long, env = "ROLLOUT_JOURNAL", default_value = "rollout-journal.jsonl")]
    journal: PathBuf,
    /// Where the report is written, as JSON (what `identity migrate cutover --report`
    /// reads).
    #[arg(long, default_value = "rollout-report.json")]
    out: PathBuf,
    /// Skip the final data verify (the report then does not pass).
    #[arg(long)]
    no_verify: bool,
}

/// What every command works with: the command line and the fleet of replicas.
struct Ctx {
    cli: Cli,
    fleet: Fleet,
}

impl std::ops::Deref for Ctx {
    type Target = Cli;

    fn deref(&self) -> &Cli {
        &self.cli
    }
}

impl Ctx {
    fn new(cli: Cli) -> Result<Self, Failure> {
        let fleet = Fleet::new(
            &cli.admin,
            cli.token.clone(),
            cli.virtual_service.clone(),
            cli.legacy_host.clone(),
            cli.new_host.clone(),
        )?;
        Ok(Self { cli, fleet })
    }
}

async fn check_safe(
    cx: &Ctx,
    route: &str,
    current: u32,
    target: u32,
    steps: &[u32],
) -> Result<(), Failure> {
    if target <= current || cx.force {
        return Ok(());
    }
    if plan::skips(steps, current, target) {
        return Err(Failure::Refused(format!(
            "{current}% → {target}% skips the plan ({}); the next step is {}%",
            cx.plan,
            plan::next(steps, current).unwrap_or(100)
        )));
    }
    // Every replica judges on its own traffic: one that cannot be asked, or finds the
    // step unsafe, stops it.
    for replica in cx.fleet.replicas() {
        let r = cx.fleet.route_status(replica, route).await?;
        if let Some(reason) = status::unsafe_reason(&r, cx.max_error_rate, cx.max_mismatch_rate) {
            return Err(Failure::Refused(format!(
                "{}{reason}",
                cx.fleet.label(replica)
            )));
        }
    }
    Ok(())
}

async fn apply(cx: &Ctx, route: &str, percent: u32) -> Result<(), Failure> {
    for line in cx.fleet.apply(route, percent).await? {
        println!("{line}");
    }
    Ok(())
}

async fn auto(cx: &Ctx, args: &AutoArgs, steps: Vec<u32>) -> Result<(), Failure> {
    let seconds = |name: &str, v: f64| {
        if v.is_finite() && v >= 0.0 {
            Ok(std::time::Duration::from_secs_f64(v))
        } else {
            Err(Failure::Usage(format!("--{name}: a number of seconds")))
        }
    };
    let settings = autopilot::Settings {
        plan: steps,
        bake: seconds("bake", args.bake)?,
        interval: seconds("interval", args.interval)?,
        target: args.target / 100.0,
        min_comparisons: args.min_comparisons,
        min_requests: args.min_requests,
        max_error_rate: cx.max_error_rate,
        max_p99_ratio: args.max_p99_ratio,
        p99_floor_ms: args.p99_floor_ms,
        verify: !args.no_verify,
        max_pause: args
            .max_pause
            .map(|v| seconds("max-pause", v))
            .transpose()?,
    };
    let mut journal = journal::Journal::open(args.journal.clone())?;
    let mut show = |d: &autopilot::Decision| println!("{}", autopilot::line(d));
    match autopilot::run(&cx.fleet, &args.routes, &settings, &mut journal, &mut show).await? {
        autopilot::Outcome::Complete => {
            println!(
                "every route at 100%; the decommission report: rollout report --journal {}",
                args.journal.display()
            );
            Ok(())
        }
        autopilot::Outcome::Aborted { route, reason } => {
            Err(Failure::Aborted(format!("{route} aborted: {reason}")))
        }
        autopilot::Outcome::GaveUp { route, reason } => Err(Failure::GaveUp(format!(
            "{route} stays where it is: {reason}"
        ))),
    }
}

async fn decommission_report(cx: &Ctx, args: &ReportArgs) -> Result<(), Failure> {
    let journal = journal::Journal::open(args.journal.clone())?;
    let expected = cx.fleet.two_sided_routes()?;
    let final_verify = if args.no_verify {
        None
    } else {
        match report::final_verify(&cx.fleet, journal.decisions()).await {
            Ok(v) => v,
            Err(why) => {
                eprintln!("final data verify not made: {why}");
                None
            }
        }
    };
    let mut report = report::build(journal.decisions(), final_verify, &expected);
    // Where the routes are now, on every replica and in the manifest: an abort after
    // the autopilot finished (an operator's, a guard's) undoes what the journal says.
    let mut live = Vec::new();
    for replica in cx.fleet.replicas() {
        live.push((replica.clone(), cx.fleet.routes(replica).await));
    }
    let mut manifest = Vec::new();
    for route in &expected {
        manifest.push((route.clone(), cx.fleet.current(route)?));
    }
    report::require_live(&mut report, &manifest, &live);
    let json = serde_json::to_string_pretty(&report)
        .map_err(|e| Failure::Usage(format!("report: {e}")))?;
    rollout::manifest::write(&args.out, &format!("{json}\n"))
        .map_err(|e| Failure::Usage(format!("{}: {e}", args.out.display())))?;
    print!("{}", report::text(&report));
    println!("written to {}", args.out.display());
    if let Ok(value) = serde_json::to_value(&report) {
        let _ = cx
            .fleet
            .on_every_replica(reqwest::Method::PUT, "/admin/report", Some(&value))
            .await;
    }
    if report.passed {
        Ok(())
    } else {
        Err(Failure::NotPassed("the report does not pass".into()))
    }
}

async fn run(cx: &Ctx) -> Result<(), Failure> {
    let steps = plan::parse(&cx.plan).map_err(Failure::Usage)?;
    let fleet = &cx.fleet;
    match &cx.command {
        Command::Status => {
            let answers = fleet
                .on_every_replica(reqwest::Method::GET, "/admin/status", None)
                .await;
            let mut unreachable = Vec::new();
            for (replica, answer) in answers {
                if fleet.several() {
                    println!("replica {replica}");
                }
                match answer {
                    Ok(body) => print!("{}", status::table(&status::parse(&body))),
                    Err(Failure::Unreachable(e)) => {
                        println!("  not reachable: {e}");
                        unreachable.push(e);
                    }
                    Err(other) => return Err(other),
                }
            }
            if !unreachable.is_empty() {
                return Err(Failure::Unreachable(unreachable.join("; ")));
            }
        }
        Command::SetWeight { route, percent } => {
            if *percent > 100 {
                return Err(Failure::Usage(
                    "the weight is a percentage: 0 to 100".into(),
                ));
            }
            let now = fleet.current(route)?;
            check_safe(cx, route, now, *percent, &steps).await?;
            apply(cx, route, *percent).await?;
        }
        Command::Step { route } => {
            let now = fleet.current(route)?;
            let Some(next) = plan::next(&steps, now) else {
                println!("{route} is at {now}%: the plan is complete");
                return Ok(());
            };
            check_safe(cx, route, now, next, &steps).await?;
            apply(cx, route, next).await?;
        }
        Command::Promote { route } => {
            let now = fleet.current(route)?;
            check_safe(cx, route, now, 100, &steps).await?;
            apply(cx, route, 100).await?;
        }
        Command::Abort { route } => {
            let (lines, result) = fleet.abort(route).await;
            for line in lines {
                println!("{line}");
            }
            result?;
        }
        Command::Resume { route } => {
            let path = format!("/admin/routes/{route}/resume");
            first_failure(
                fleet
                    .on_every_replica(reqwest::Method::POST, &path, None)
                    .await,
            )?;
            for replica in fleet.replicas() {
                let r = fleet.route_status(replica, route).await?;
                println!(
                    "{}proxy: {route} resumed at the manifest's weight, {:.1}% identity",
                    fleet.label(replica),
                    r.share
                );
            }
        }
        Command::Auto(args) => auto(cx, args, steps).await?,
        Command::Report(args) => decommission_report(cx, args).await?,
    }
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let result = match Ctx::new(Cli::parse()) {
        Ok(cx) => run(&cx).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Refused(why)) => {
            eprintln!("refused: {why} (--force to override)");
            ExitCode::from(1)
        }
        Err(Failure::Usage(why)) => {
            eprintln!("error: {why}");
            ExitCode::from(2)
        }
        Err(Failure::Unreachable(why)) => {
            eprintln!("error: {why}");
            ExitCode::from(3)
        }
        Err(Failure::Aborted(why)) => {
            eprintln!("aborted: {why}");
            ExitCode::from(4)
        }
        Err(Failure::GaveUp(why)) => {
            eprintln!("stopped: {why}");
            ExitCode::from(5)
        }
        Err(Failure::NotPassed(why)) => {
            eprintln!("{why}");
            ExitCode::from(6)
        }
    }
}
