//! `identity migrate backfill|verify|cutover`: the operator's side of the data
//! migration, with a progress bar (rate and ETA) when the output is a terminal.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use anyhow::Context;
use identity_migration::{Progress, VerifyOptions, backfill, cutover, verify};
use identity_store::{Store, StoreConfig};
use legacy_db::LegacyDb;

use crate::config::{MigrateArgs, MigrateStep};

/// A progress bar on a terminal; a line every ten seconds otherwise.
struct Bar {
    terminal: bool,
    last_line: Duration,
}

impl Progress for Bar {
    fn update(&mut self, copied: u64, total: u64, elapsed: Duration) {
        let rate = copied as f64 / elapsed.as_secs_f64().max(0.001);
        let left = total.saturating_sub(copied) as f64 / rate.max(1.0);
        let fraction = if total == 0 {
            1.0
        } else {
            (copied as f64 / total as f64).min(1.0)
        };
        if self.terminal {
            let filled = (fraction * 30.0) as usize;
            eprint!(
                "\r[{}{}] {:5.1}% {copied}/{total} {:.0}/s ETA {:.0}s   ",
                "#".repeat(filled),
                " ".repeat(30 - filled),
                fraction * 100.0,
                rate,
                left
            );
            let _ = std::io::stderr().flush();
        } else if elapsed.saturating_sub(self.last_line) >= Duration::from_secs(10) {
            self.last_line = elapsed;
            eprintln!("backfill: {copied}/{total} members, {rate:.0}/s, about {left:.0}s left");
        }
    }

    fn finish(&mut self, copied: u64, elapsed: Duration) {
        if self.terminal {
            eprintln!();
        }
        eprintln!(
            "backfill: {copied} members copied in {:.1}s ({:.0}/s)",
            elapsed.as_secs_f64(),
            copied as f64 / elapsed.as_secs_f64().max(0.001)
        );
    }
}

/// Runs one step; `Ok(false)` when verify found deviations.
pub async fn run(args: MigrateArgs) -> anyhow::Result<bool> {
    let legacy_url = args.legacy_database_url()?;
    let store = Store::connect(&args.database_url(), &StoreConfig::default())
        .await
        .context("--database-url")?;
    let legacy = LegacyDb::connect(&legacy_url, 4)
        .await
        .context("--legacy-database-url")?;
    match args.step.clone() {
        MigrateStep::Backfill => {
            let mut bar = Bar {
                terminal: std::io::stderr().is_terminal(),
                last_line: Duration::ZERO,
            };
            let report = backfill(&store, &legacy, &mut bar).await?;
            if report.resumed_after > 0 {
                eprintln!("backfill: resumed after id {}", report.resumed_after);
            }
            Ok(true)
        }
        MigrateStep::Verify => {
            let report = verify(&store, &legacy, 20).await?;
            println!(
                "verify: {} members compared, {} deviating, agreement {:.4}%{}",
                report.compared,
                report.deviating_members,
                report.agreement_percent(),
                if report.settled > 0 {
                    format!(
                        " ({} changed while compared, equal when compared again)",
                        report.settled
                    )
                } else {
                    String::new()
                }
            );
            for d in &report.examples {
                println!("  member {}: {}", d.id, d.fields.join(", "));
            }
            Ok(report.is_clean())
        }
        MigrateStep::Cutover {
            report,
            report_max_age_hours,
            force,
        } => {
            match (&report, force) {
                (Some(path), _) => {
                    let age = Duration::try_from_secs_f64(report_max_age_hours * 3600.0).map_err(
                        |_| anyhow::anyhow!("--report-max-age-hours: a number of hours"),
                    )?;
                    check_report(path, age)?;
                    eprintln!("cutover: the decommission report {} passes", path.display());
                }
                (None, true) => {
                    eprintln!("cutover: forced, without a decommission report");
                }
                (None, false) => anyhow::bail!(
                    "cutover refused: no decommission report (rollout report writes one; \
                     --report FILE, or --force to cut over without one)"
                ),
            }
            let report = cutover(&store, &legacy, &VerifyOptions::default()).await?;
            println!(
                "cutover: done ({} members verified, {} live legacy sessions imported, {} sessions the legacy had ended ended here); sync and write-through end at each replica's next poll; new ids start at {}",
                report.verify.compared,
                report.sessions.imported,
                report.sessions.ended,
                report.next_id
            );
            Ok(true)
        }
    }
}

/// Refuses a decommission report that does not pass, is older than `max_age`, or
/// leaves a route short of 100% (the report `rollout report` writes; its passing rule is
/// the rollout tool's, repeated here only as far as the cutover depends on it).
fn check_report(path: &std::path::Path, max_age: Duration) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("--report {}", path.display()))?;
    let report: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("--report {}: not a decommission report", path.display()))?;
    let refuse = |why: String| {
        anyhow::anyhow!(
            "cutover refused: the decommission report {}: {why}",
            path.display()
        )
    };
    if report["passed"].as_bool() != Some(true) {
        let why: Vec<&str> = report["why_not"]
            .as_array()
            .map(|w| w.iter().filter_map(serde_json::Value::as_str).collect())
            .unwrap_or_default();
        return Err(refuse(format!("does not pass ({})", why.join("; "))));
    }
    let generated = report["generated_at_micros"]
        .as_i64()
        .ok_or_else(|| refuse("has no generated_at_micros".into()))?;
    let now = member_contract::Timestamp::now_from_system().as_micros();
    let age = Duration::from_micros(now.saturating_sub(generated).max(0) as u64);
    if age > max_age {
        return Err(refuse(format!(
            "is {:.1} hours old (at most {:.1}): run rollout report again",
            age.as_secs_f64() / 3600.0,
            max_age.as_secs_f64() / 3600.0
        )));
    }
    let routes = report["routes"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    if routes.is_empty() {
        return Err(refuse("covers no route".into()));
    }
    for r in routes {
        if r["percent"].as_u64() != Some(100) || r["passed"].as_bool() != Some(true) {
            return Err(refuse(format!(
                "route {} is not at 100% on evidence",
                r["route"].as_str().unwrap_or("?")
            )));
        }
    }
    Ok(())
}
