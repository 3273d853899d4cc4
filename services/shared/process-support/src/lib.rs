//! What every binary of the project does the same way at its edges: read the command
//! line (help and version exit 0, anything invalid exits 64 with one line that names the
//! setting), start the runtime, and wait for SIGTERM or SIGINT.

use std::process::ExitCode;

/// `EX_CONFIG`-style exit code for unusable configuration (as linkerd does).
pub const EXIT_CONFIG: u8 = 64;

/// The parsed command line, or the exit code after clap printed help, the version or
/// the one-line error.
pub fn parse_or_exit<T: clap::Parser>() -> Result<T, ExitCode> {
    match T::try_parse() {
        Ok(cli) => Ok(cli),
        Err(e)
            if matches!(
                e.kind(),
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
            ) =>
        {
            let _ = e.print();
            Err(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!(
                "{}",
                e.to_string().lines().next().unwrap_or("invalid arguments")
            );
            Err(ExitCode::from(EXIT_CONFIG))
        }
    }
}

/// A multi-threaded runtime, or the exit code after saying why there is none.
pub fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    built(tokio::runtime::Builder::new_multi_thread().enable_all())
}

/// A runtime on the calling thread alone (for a process whose heavy work runs on
/// threads of its own), or the exit code after saying why there is none.
pub fn single_thread_runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    built(tokio::runtime::Builder::new_current_thread().enable_all())
}

fn built(builder: &mut tokio::runtime::Builder) -> Result<tokio::runtime::Runtime, ExitCode> {
    builder.build().map_err(|e| {
        eprintln!("error: cannot start the runtime: {e}");
        ExitCode::FAILURE
    })
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
