//! Structured logs: JSON lines by default, `RUST_LOG` to filter. Log fields are chosen at
//! each call site; request bodies, tokens and passwords are never logged.

use tracing_subscriber::EnvFilter;

pub fn init(format: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if format == "json" {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}
