//! The backfill: every legacy member copied in id order, in batches, each batch and its
//! checkpoint committed together, so a backfill killed at any point and run again ends
//! with no duplicate and no gap. Changes made on the legacy meanwhile are the sync's
//! business: the backfill records where the sync must start.

use std::time::{Duration, Instant};

use identity_store::Store;
use legacy_db::LegacyDb;
use member_contract::Timestamp;

use crate::{MigrationError, keys, legacy_to_member};

/// Members read from the legacy per batch.
const BATCH: i64 = 5000;

/// Told after every batch: members copied so far, of how many.
pub trait Progress {
    fn update(&mut self, copied: u64, total: u64, elapsed: Duration);
    fn finish(&mut self, _copied: u64, _elapsed: Duration) {}
}

impl Progress for () {
    fn update(&mut self, _: u64, _: u64, _: Duration) {}
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackfillReport {
    /// Members copied by this run.
    pub copied: u64,
    /// Where this run started (a previous run's checkpoint).
    pub resumed_after: i64,
    pub elapsed: Duration,
}

pub async fn backfill(
    store: &Store,
    legacy: &LegacyDb,
    progress: &mut (dyn Progress + Send),
) -> Result<BackfillReport, MigrationError> {
    let started = Instant::now();
    let resumed_after: i64 = store
        .migration_value(keys::BACKFILL_LAST_ID)
        .await?
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    // The sync starts from the moment the backfill first started (less its look-back).
    if store.migration_value(keys::SYNC_WATERMARK).await?.is_none() {
        let mut tx = store.begin().await?;
        tx.set_migration_value(
            keys::SYNC_WATERMARK,
            &Timestamp::now_from_system().to_db_text(),
        )
        .await?;
        tx.commit().await?;
    }
    let (total, _) = legacy.user_stats(legacy.pool()).await?;
    let mut last = resumed_after;
    let mut copied = 0u64;
    let already = if resumed_after > 0 {
        legacy
            .count_users_upto(legacy.pool(), resumed_after)
            .await?
            .max(0) as u64
    } else {
        0
    };
    loop {
        let users = legacy.users_after(legacy.pool(), last, BATCH).await?;
        let Some(tail) = users.last() else { break };
        let next_last = tail.id;
        let members: Vec<_> = users.iter().map(legacy_to_member).collect();
        let mut tx = store.begin().await?;
        tx.upsert_members(&members).await?;
        tx.set_migration_value(keys::BACKFILL_LAST_ID, &next_last.to_string())
            .await?;
        tx.commit().await?;
        copied += members.len() as u64;
        last = next_last;
        progress.update(already + copied, total.max(0) as u64, started.elapsed());
    }
    let mut tx = store.begin().await?;
    tx.set_migration_value(
        keys::BACKFILL_DONE,
        &Timestamp::now_from_system().to_db_text(),
    )
    .await?;
    tx.commit().await?;
    store.bump_member_sequence(last).await?;
    progress.finish(copied, started.elapsed());
    Ok(BackfillReport {
        copied,
        resumed_after,
        elapsed: started.elapsed(),
    })
}
