//! A small Rust stand-in for the legacy Rails member API, on the legacy's own schema
//! (SQLite or PostgreSQL), with bcrypt digests and base58 tokens. It serves the local
//! demo and the fast tests where Ruby is absent; the real Rails app in
//! `tests/legacy-rails` stays the oracle both are held to.

pub mod handlers;
pub mod seed;

pub use handlers::{SimState, router};

/// Connects to the legacy database (creating the schema if needed) and builds the state.
pub async fn connect(database_url: &str, bcrypt_cost: u32) -> anyhow::Result<SimState> {
    let db = legacy_db::LegacyDb::connect(database_url, 8).await?;
    db.ensure_schema().await?;
    let hasher = identity_passwords::Hasher::new(&identity_passwords::PasswordConfig::default())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(SimState {
        db,
        hasher,
        bcrypt_cost,
    })
}

/// A simulator serving in a task of its own.
pub struct Running {
    pub addr: std::net::SocketAddr,
    /// Sending (or dropping) it stops the server after its in-flight requests.
    pub stop: tokio::sync::oneshot::Sender<()>,
    pub task: tokio::task::JoinHandle<()>,
}

/// Serves `state` on `addr` (port 0: any free port) until stopped: the local stack and
/// the tests' legacy.
pub async fn spawn(state: SimState, addr: std::net::SocketAddr) -> std::io::Result<Running> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, router(state))
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await;
        if let Err(e) = served {
            tracing::warn!(error = %e, "the legacy simulator stopped");
        }
    });
    Ok(Running { addr, stop, task })
}
