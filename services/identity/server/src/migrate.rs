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
    match args.step {
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
        MigrateStep::Cutover => {
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
