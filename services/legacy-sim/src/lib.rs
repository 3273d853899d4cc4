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
