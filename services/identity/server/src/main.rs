//! `identity`: the identity service's command line.

use std::process::ExitCode;

use identity::config::{Cli, Command};

fn main() -> ExitCode {
    let cli: Cli = match process_support::parse_or_exit() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    match cli.command {
        Command::Migrate(args) => {
            identity::telemetry::init("text");
            let runtime = match process_support::runtime() {
                Ok(rt) => rt,
                Err(code) => return code,
            };
            match runtime.block_on(identity::migrate::run(args)) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::FAILURE,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::from(process_support::EXIT_CONFIG)
                }
            }
        }
        Command::Serve(args) => {
            if let Err(e) = args.validate() {
                eprintln!("error: {e}");
                return ExitCode::from(process_support::EXIT_CONFIG);
            }
            identity::telemetry::init(&args.log_format);
            let runtime = match process_support::runtime() {
                Ok(rt) => rt,
                Err(code) => return code,
            };
            match runtime.block_on(identity::serve(*args)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::from(process_support::EXIT_CONFIG)
                }
            }
        }
    }
}
