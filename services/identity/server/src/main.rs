//! `identity`: the identity service's command line.

use std::process::ExitCode;

use identity::config::{Cli, Command};

/// mimalloc, not the C library's malloc: a request's buffers are allocated on one
/// runtime thread and freed on another, which glibc's arenas serialise on a lock (about
/// a tenth of the service's CPU time in a profile of GetMember under load).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Logs when `RUST_LOG` is not set: sqlx's own lines only when they warn.
const LOG_FILTER: &str = "info,sqlx=warn";

fn main() -> ExitCode {
    let cli: Cli = match process_support::parse_or_exit() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    match cli.command {
        Command::Migrate(args) => {
            let telemetry = match telemetry::init("identity-migrate", "text", LOG_FILTER) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(process_support::EXIT_CONFIG);
                }
            };
            let runtime = match process_support::runtime() {
                Ok(rt) => rt,
                Err(code) => return code,
            };
            let code = match runtime.block_on(identity::migrate::run(args)) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::FAILURE,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::from(process_support::EXIT_CONFIG)
                }
            };
            drop(runtime);
            telemetry.shutdown();
            code
        }
        Command::Serve(args) => {
            if let Err(e) = args.validate() {
                eprintln!("error: {e}");
                return ExitCode::from(process_support::EXIT_CONFIG);
            }
            let telemetry = match telemetry::init("identity", &args.log_format, LOG_FILTER) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(process_support::EXIT_CONFIG);
                }
            };
            let runtime = match process_support::runtime() {
                Ok(rt) => rt,
                Err(code) => return code,
            };
            let code = match runtime.block_on(identity::serve(*args)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::from(process_support::EXIT_CONFIG)
                }
            };
            drop(runtime);
            telemetry.shutdown();
            code
        }
    }
}
