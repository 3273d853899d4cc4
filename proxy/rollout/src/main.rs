//! `rollout`: status, set-weight, step, abort, resume and promote for the member API's
//! migration. Weights are changed in the VirtualService manifest (the source of truth)
//! and the proxy is told to reload; abort and resume also act at once through the admin
//! API. Every command acts on every replica given (`--admin`, comma-separated): each
//! proxy replica keeps its own guard, overrides and figures, so an abort must reach them
//! all, and a step is refused if any replica finds it unsafe or cannot be asked.
//! Exit codes: 0 done, 1 refused as unsafe (use --force), 2 bad usage or manifest,
//! 3 a replica's admin API could not be reached.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use rollout::{manifest, plan, status};

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
}

enum Failure {
    Refused(String),
    Usage(String),
    Unreachable(String),
}

/// How long one admin call may take: a replica that hangs must not hang an abort.
const ADMIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// What every command works with: the command line, the replicas' admin URLs (each
/// once) and one HTTP client for all the calls.
struct Ctx {
    cli: Cli,
    replicas: Vec<String>,
    http: reqwest::Client,
}

impl std::ops::Deref for Ctx {
    type Target = Cli;

    fn deref(&self) -> &Cli {
        &self.cli
    }
}

impl Ctx {
    fn new(cli: Cli) -> Result<Self, Failure> {
        let mut replicas: Vec<String> = Vec::new();
        for url in cli.admin.iter().map(|u| u.trim()).filter(|u| !u.is_empty()) {
            if !replicas.iter().any(|r| r == url) {
                replicas.push(url.to_owned());
            }
        }
        if replicas.is_empty() {
            return Err(Failure::Usage("--admin: no admin URL given".into()));
        }
        let http = reqwest::Client::builder()
            .timeout(ADMIN_TIMEOUT)
            .build()
            .map_err(|e| Failure::Usage(format!("HTTP client: {e}")))?;
        Ok(Self {
            cli,
            replicas,
            http,
        })
    }

    /// Whether more than one replica is given.
    fn several(&self) -> bool {
        self.replicas.len() > 1
    }

    /// What to put before a line about `replica`: nothing when there is only one.
    fn label(&self, replica: &str) -> String {
        if self.several() {
            format!("[{replica}] ")
        } else {
            String::new()
        }
    }
}

/// One call to one replica's admin API.
async fn admin(
    cli: &Ctx,
    replica: &str,
    method: reqwest::Method,
    path: &str,
) -> Result<serde_json::Value, Failure> {
    let mut req = cli
        .http
        .request(method, format!("{}{path}", replica.trim_end_matches('/')));
    if let Some(t) = &cli.token {
        req = req.bearer_auth(t);
    }
    let resp = req
        .send()
        .await
        .map_err(|e| Failure::Unreachable(format!("admin API at {replica}: {e}")))?;
    let code = resp.status();
    let body: serde_json::Value = resp.json().await.unwrap_or(serde_json::Value::Null);
    if code.as_u16() == 401 || code.as_u16() == 403 {
        return Err(Failure::Usage(format!(
            "admin API at {replica} refused the token ({code}): set ROLLOUT_ADMIN_TOKEN"
        )));
    }
    if !code.is_success() {
        return Err(Failure::Usage(format!(
            "admin API at {replica} answered {code}: {}",
            body["error"].as_str().unwrap_or("")
        )));
    }
    Ok(body)
}

/// The same call to every replica, each one tried whatever the others answered.
async fn on_every_replica(
    cli: &Ctx,
    method: reqwest::Method,
    path: &str,
) -> Vec<(String, Result<serde_json::Value, Failure>)> {
    let mut out = Vec::new();
    for replica in &cli.replicas {
        let result = admin(cli, replica, method.clone(), path).await;
        out.push((replica.clone(), result));
    }
    out
}

/// The first failure among the replicas' answers, reported after all were tried.
fn first_failure(
    answers: Vec<(String, Result<serde_json::Value, Failure>)>,
) -> Result<(), Failure> {
    for (_, answer) in answers {
        answer?;
    }
    Ok(())
}

async fn route_status(
    cli: &Ctx,
    replica: &str,
    route: &str,
) -> Result<status::RouteStatus, Failure> {
    let all = status::parse(&admin(cli, replica, reqwest::Method::GET, "/admin/status").await?);
    all.into_iter()
        .find(|r| r.name == route)
        .ok_or_else(|| Failure::Usage(format!("the proxy at {replica} has no route `{route}`")))
}

fn read_manifest(cli: &Cli) -> Result<String, Failure> {
    std::fs::read_to_string(&cli.virtual_service)
        .map_err(|e| Failure::Usage(format!("{}: {e}", cli.virtual_service.display())))
}

/// Sets `route`'s identity weight to `percent` in the manifest file.
fn write_weight(cli: &Cli, route: &str, percent: u32) -> Result<(), Failure> {
    let text = read_manifest(cli)?;
    let edited = manifest::set_weights(&text, route, &cli.legacy_host, &cli.new_host, percent)
        .map_err(|e| Failure::Usage(e.to_string()))?;
    manifest::write(&cli.virtual_service, &edited).map_err(|e| Failure::Usage(e.to_string()))
}

/// Writes the new weight into the manifest and asks every replica to reload it.
async fn apply(cli: &Ctx, route: &str, percent: u32) -> Result<(), Failure> {
    write_weight(cli, route, percent)?;
    println!(
        "{}: {route} → {percent}% identity, {}% legacy",
        cli.virtual_service.display(),
        100 - percent
    );
    for replica in &cli.replicas {
        match admin(cli, replica, reqwest::Method::POST, "/admin/reload").await {
            Ok(_) => {
                let r = route_status(cli, replica, route).await?;
                println!(
                    "{}proxy: {route} serves {:.1}% of users from the identity service ({})",
                    cli.label(replica),
                    r.share,
                    r.state
                );
            }
            Err(Failure::Unreachable(e)) => println!(
                "{}proxy not reachable ({e}); it applies the manifest when it reloads it",
                cli.label(replica)
            ),
            Err(other) => return Err(other),
        }
    }
    Ok(())
}

async fn check_safe(
    cli: &Ctx,
    route: &str,
    current: u32,
    target: u32,
    steps: &[u32],
) -> Result<(), Failure> {
    if target <= current || cli.force {
        return Ok(());
    }
    if plan::skips(steps, current, target) {
        return Err(Failure::Refused(format!(
            "{current}% → {target}% skips the plan ({}); the next step is {}%",
            cli.plan,
            plan::next(steps, current).unwrap_or(100)
        )));
    }
    // Every replica judges on its own traffic: one that cannot be asked, or finds the
    // step unsafe, stops it.
    for replica in &cli.replicas {
        let r = route_status(cli, replica, route).await?;
        if let Some(reason) = status::unsafe_reason(&r, cli.max_error_rate, cli.max_mismatch_rate) {
            return Err(Failure::Refused(format!("{}{reason}", cli.label(replica))));
        }
    }
    Ok(())
}

async fn run(cli: &Ctx) -> Result<(), Failure> {
    let steps = plan::parse(&cli.plan).map_err(Failure::Usage)?;
    let current = |route: &str| -> Result<u32, Failure> {
        let text = read_manifest(cli)?;
        let (legacy, new) = manifest::weights(&text, route, &cli.legacy_host, &cli.new_host)
            .map_err(|e| Failure::Usage(e.to_string()))?;
        Ok((new * 100).checked_div(legacy + new).unwrap_or(0))
    };
    match &cli.command {
        Command::Status => {
            let answers = on_every_replica(cli, reqwest::Method::GET, "/admin/status").await;
            let mut unreachable = Vec::new();
            for (replica, answer) in answers {
                if cli.several() {
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
            let now = current(route)?;
            check_safe(cli, route, now, *percent, &steps).await?;
            apply(cli, route, *percent).await?;
        }
        Command::Step { route } => {
            let now = current(route)?;
            let Some(next) = plan::next(&steps, now) else {
                println!("{route} is at {now}%: the plan is complete");
                return Ok(());
            };
            check_safe(cli, route, now, next, &steps).await?;
            apply(cli, route, next).await?;
        }
        Command::Promote { route } => {
            let now = current(route)?;
            check_safe(cli, route, now, 100, &steps).await?;
            apply(cli, route, 100).await?;
        }
        Command::Abort { route } => {
            // Every replica at once, the manifest even if some cannot be reached.
            let path = format!("/admin/routes/{route}/abort");
            let mut answers = on_every_replica(cli, reqwest::Method::POST, &path).await;
            // A refused token or an unknown route changes nothing; only a replica that
            // cannot be reached does not stop the others and the manifest.
            if let Some(i) = answers
                .iter()
                .position(|(_, a)| matches!(a, Err(f) if !matches!(f, Failure::Unreachable(_))))
            {
                answers.swap_remove(i).1?;
            }
            for (replica, answer) in &answers {
                if answer.is_ok() {
                    println!(
                        "{}proxy: {route} aborted: every user on the legacy",
                        cli.label(replica)
                    );
                }
            }
            write_weight(cli, route, 0)?;
            println!(
                "{}: {route} → 0% identity (commit it)",
                cli.virtual_service.display()
            );
            // The proxies take the manifest's 0% too, so that a resume does not bring
            // the old weight back.
            let reloads = on_every_replica(cli, reqwest::Method::POST, "/admin/reload").await;
            let missed = |failure| match failure {
                Failure::Unreachable(e) => Failure::Unreachable(format!(
                    "{e} (that replica takes the manifest's 0% when it reloads it)"
                )),
                other => other,
            };
            first_failure(answers).map_err(missed)?;
            first_failure(reloads).map_err(missed)?;
        }
        Command::Resume { route } => {
            let path = format!("/admin/routes/{route}/resume");
            first_failure(on_every_replica(cli, reqwest::Method::POST, &path).await)?;
            for replica in &cli.replicas {
                let r = route_status(cli, replica, route).await?;
                println!(
                    "{}proxy: {route} resumed at the manifest's weight, {:.1}% identity",
                    cli.label(replica),
                    r.share
                );
            }
        }
    }
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let result = match Ctx::new(Cli::parse()) {
        Ok(ctx) => run(&ctx).await,
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
    }
}
