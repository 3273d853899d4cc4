//! `parity`: run the scenarios against a target, or compare two transcripts.
//!
//! ```text
//! parity run --base-url http://127.0.0.1:3000 --out legacy.json
//! parity compare --left legacy.json --right identity.json --right-kind identity
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use parity::{RightKind, RunOptions, Transcript};

#[derive(Parser)]
#[command(about = "Parity suite of the legacy member API")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the scenarios against a target and write its transcript.
    Run {
        /// Base URL of the target (paths start with /api/v1).
        #[arg(long)]
        base_url: String,
        /// Directory of the scenario files.
        #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios"))]
        scenarios: PathBuf,
        /// Run only the scenario of this name.
        #[arg(long)]
        only: Option<String>,
        /// Where to write the transcript (JSON).
        #[arg(long)]
        out: PathBuf,
        /// Seed of the random per-run values (emails, phone numbers); random if absent.
        #[arg(long)]
        seed: Option<u64>,
        /// Time limit of one request, in milliseconds.
        #[arg(long, default_value_t = 30_000)]
        timeout_ms: u64,
    },
    /// Compare two transcripts; exits 1 on any divergence.
    Compare {
        /// The reference transcript (normally a legacy's).
        #[arg(long)]
        left: PathBuf,
        /// The transcript to check.
        #[arg(long)]
        right: PathBuf,
        /// What the right transcript was recorded against.
        #[arg(long, value_enum, default_value_t = Kind::Legacy)]
        right_kind: Kind,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Kind {
    Legacy,
    Identity,
}

fn main() -> ExitCode {
    match real_main() {
        Ok(code) => code,
        Err(error) => {
            eprintln!("parity: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn real_main() -> anyhow::Result<ExitCode> {
    match Cli::parse().command {
        Command::Run {
            base_url,
            scenarios,
            only,
            out,
            seed,
            timeout_ms,
        } => {
            let loaded = parity::load_dir(&scenarios)?;
            let options = RunOptions {
                base_url,
                only,
                seed,
                timeout: Duration::from_millis(timeout_ms),
            };
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            let transcript =
                runtime.block_on(parity::run(&loaded, &options, |line| eprintln!("{line}")))?;
            transcript.write(&out)?;
            let failed: Vec<String> = transcript
                .scenarios
                .iter()
                .flat_map(|s| s.steps.iter().map(move |step| (s, step)))
                .flat_map(|(s, step)| {
                    step.failed_checks().map(move |c| {
                        format!(
                            "  {} step {} {}: {} — {}",
                            s.name,
                            step.label(),
                            step.title(),
                            c.what,
                            c.detail.as_deref().unwrap_or("")
                        )
                    })
                })
                .collect();
            let steps: usize = transcript.scenarios.iter().map(|s| s.steps.len()).sum();
            eprintln!(
                "wrote {}: {} scenarios, {steps} requests, {} failed checks",
                out.display(),
                transcript.scenarios.len(),
                failed.len()
            );
            for line in failed {
                eprintln!("{line}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Compare {
            left,
            right,
            right_kind,
        } => {
            let left = Transcript::read(&left)?;
            let right = Transcript::read(&right)?;
            let kind = match right_kind {
                Kind::Legacy => RightKind::Legacy,
                Kind::Identity => RightKind::Identity,
            };
            let report = parity::compare(&left, &right, kind);
            print!("{}", report.text);
            println!("{}", report.summary);
            Ok(if report.summary.divergent == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}
