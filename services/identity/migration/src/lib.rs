//! Moving the members from the legacy database into the identity service's own: the
//! backfill (idempotent and resumable), the continuous sync of legacy changes, the
//! field-by-field verification and the cutover. The legacy database stays the system of
//! record until cutover: where the two disagree, the legacy's row wins.

mod backfill;
mod convert;
mod effects;
mod sessions;
mod sync;
mod verify;

pub use backfill::{BackfillReport, Progress, backfill};
pub use convert::{apply_legacy_user, legacy_to_member, target_for};
pub use effects::{Current, Effects, Expected, Written, write_effects};
pub use sessions::{SessionImport, end_sessions_ended_on_legacy, import_legacy_sessions};
pub use sync::{PollOutcome, SYNC_LEAD_KEY, SyncReport, Syncer};
pub use verify::{
    Deviation, MAX_CHANGED, VerifyOptions, VerifyReport, verify, verify_changed_since, verify_with,
};

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

/// Room left above the legacy's highest id at cutover: replicas that have not left the
/// legacy yet (they do within one sync interval) may still take ids from the legacy's
/// sequence for sign-ups; the identity service's own ids start above those.
pub const CUTOVER_ID_MARGIN: i64 = 10_000;

/// What the cutover did.
#[derive(Debug, Clone)]
pub struct CutoverReport {
    pub verify: VerifyReport,
    pub sessions: SessionImport,
    /// The first id the identity service allocates from now on.
    pub next_id: i64,
}

/// Ends the migration: refuses unless `verify` finds no deviation, imports the legacy's
/// live sessions (their tokens keep working), ends ours that the legacy ended (they
/// must not come back when the legacy is no longer asked), moves the id sequence above
/// the legacy's highest id and records the cutover. Replicas leave the legacy database at their
/// next sync poll.
pub async fn cutover(
    store: &Store,
    legacy: &LegacyDb,
    verify_options: &VerifyOptions,
) -> Result<CutoverReport, MigrationError> {
    if is_cut_over(store).await? {
        return Err(MigrationError::Refused(
            "the migration was cut over already".into(),
        ));
    }
    let report = verify_with(store, legacy, verify_options).await?;
    if !report.is_clean() {
        return Err(MigrationError::Refused(format!(
            "cutover refused: verify found {} deviating member(s) of {} (run `identity migrate verify`)",
            report.deviating_members, report.compared
        )));
    }
    let sessions = sessions_as_the_legacy_has_them(store, legacy).await?;
    let next_id = highest_member_id(store, legacy).await? + CUTOVER_ID_MARGIN + 1;
    store.bump_member_sequence(next_id - 1).await?;
    let mut tx = store.begin().await?;
    tx.set_migration_value(
        keys::CUTOVER_AT,
        &member_contract::Timestamp::now_from_system().to_db_text(),
    )
    .await?;
    tx.commit().await?;
    Ok(CutoverReport {
        verify: report,
        sessions,
        next_id,
    })
}

/// What a replica does when it sees the cutover, before it leaves the legacy database:
/// imports the sessions the legacy created since the cutover's import, ends ours that
/// the legacy ended since, and moves the id sequence above every id taken meanwhile.
pub async fn leave_legacy(
    store: &Store,
    legacy: &LegacyDb,
) -> Result<SessionImport, MigrationError> {
    let sessions = sessions_as_the_legacy_has_them(store, legacy).await?;
    store
        .bump_member_sequence(highest_member_id(store, legacy).await?)
        .await?;
    Ok(sessions)
}

/// The legacy's live sessions imported, and ours that it ended, ended.
async fn sessions_as_the_legacy_has_them(
    store: &Store,
    legacy: &LegacyDb,
) -> Result<SessionImport, MigrationError> {
    let mut report = import_legacy_sessions(store, legacy).await?;
    report.ended = end_sessions_ended_on_legacy(store, legacy).await?;
    Ok(report)
}

/// The highest member id either side holds.
async fn highest_member_id(store: &Store, legacy: &LegacyDb) -> Result<i64, MigrationError> {
    let (_, legacy_max) = legacy.user_stats(legacy.pool()).await?;
    Ok(legacy_max.max(store.max_member_id().await?))
}
