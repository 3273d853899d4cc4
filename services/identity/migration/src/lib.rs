//! Moving the members from the legacy database into the identity service's own: the
//! backfill (idempotent and resumable), the continuous sync of legacy changes, the
//! field-by-field verification and the cutover. The legacy database stays the system of
//! record until cutover: where the two disagree, the legacy's row wins.

mod backfill;
mod convert;
mod sync;
mod verify;

pub use backfill::{BackfillReport, Progress, backfill};
pub use convert::legacy_to_member;
pub use sync::{SyncReport, Syncer};
pub use verify::{Deviation, VerifyReport, verify};

use identity_store::{Store, StoreError};
use legacy_db::{LegacyDb, LegacyError};

/// Keys of `migration_state`.
pub mod keys {
    /// The id up to which the backfill has copied (its checkpoint).
    pub const BACKFILL_LAST_ID: &str = "backfill.last_id";
    /// Set when the backfill has copied every member once.
    pub const BACKFILL_DONE: &str = "backfill.done";
    /// The sync's watermark: legacy changes before it (less the look-back) are applied.
    pub const SYNC_WATERMARK: &str = "sync.watermark";
    /// Set at cutover: no more sync or write-through.
    pub const CUTOVER_AT: &str = "cutover.at";
}

#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    #[error("identity database: {0}")]
    Store(#[from] StoreError),
    #[error("legacy database: {0}")]
    Legacy(#[from] LegacyError),
    #[error("{0}")]
    Refused(String),
}

/// Whether the cutover happened (the identity service then stands alone).
pub async fn is_cut_over(store: &Store) -> Result<bool, MigrationError> {
    Ok(store.migration_value(keys::CUTOVER_AT).await?.is_some())
}

/// Ends the migration: refuses unless `verify` finds no deviation, then records the
/// cutover and moves the id sequence above the legacy's highest id.
pub async fn cutover(store: &Store, legacy: &LegacyDb) -> Result<VerifyReport, MigrationError> {
    let report = verify(store, legacy, 10).await?;
    if !report.is_clean() {
        return Err(MigrationError::Refused(format!(
            "cutover refused: verify found {} deviating member(s) of {} (run `identity migrate verify`)",
            report.deviating_members, report.compared
        )));
    }
    let (_, legacy_max) = legacy.user_stats(legacy.pool()).await?;
    store
        .bump_member_sequence(legacy_max.max(store.max_member_id().await?))
        .await?;
    let mut tx = store.begin().await?;
    tx.set_migration_value(
        keys::CUTOVER_AT,
        &member_contract::Timestamp::now_from_system().to_db_text(),
    )
    .await?;
    tx.commit().await?;
    Ok(report)
}
