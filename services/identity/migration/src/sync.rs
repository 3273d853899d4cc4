//! The continuous sync: legacy changes (sign-ups, profile and password changes,
//! withdrawals) applied to the identity database within moments. Each poll reads the
//! rows whose `updated_at` is at or after the watermark less a look-back, so that a
//! transaction that committed late, with an earlier `updated_at` than rows already seen,
//! is still caught while it is within the look-back; rows already equal are skipped.
//! The watermark is kept in the identity database, so a restart resumes.

use std::time::Duration;

use identity_store::Store;
use legacy_db::LegacyDb;
use member_contract::Timestamp;

use crate::{MigrationError, apply_legacy_user, keys};

/// What one poll did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Legacy rows read (within the look-back).
    pub scanned: u64,
    /// Rows that differed and were applied.
    pub applied: u64,
    /// For each applied row: how long after its legacy `updated_at` it was applied.
    pub lags: Vec<Duration>,
}

pub struct Syncer {
    store: Store,
    legacy: LegacyDb,
    /// How far before the watermark each poll reads again (longer than the legacy's
    /// longest write transaction).
    pub lookback: Duration,
    pub batch: i64,
}

impl Syncer {
    pub fn new(store: Store, legacy: LegacyDb, lookback: Duration) -> Self {
        Self {
            store,
            legacy,
            lookback,
            batch: 1000,
        }
    }

    /// One poll.
    pub async fn sync_once(&self) -> Result<SyncReport, MigrationError> {
        let watermark = self
            .store
            .migration_value(keys::SYNC_WATERMARK)
            .await?
            .and_then(|v| Timestamp::parse_db_text(&v))
            .unwrap_or(Timestamp::from_micros(0));
        let since =
            Timestamp::from_micros(watermark.as_micros() - self.lookback.as_micros() as i64);
        let mut report = SyncReport::default();
        let mut newest = watermark;
        let mut after = None;
        loop {
            let users = self
                .legacy
                .users_changed_since(self.legacy.pool(), since, after, self.batch)
                .await?;
            let Some(last) = users.last() else { break };
            after = Some((last.updated_at, last.id));
            let mut tx = self.store.begin().await?;
            for u in &users {
                report.scanned += 1;
                newest = newest.max(u.updated_at);
                if !apply_legacy_user(&mut tx, u).await?.1 {
                    continue;
                }
                report.applied += 1;
                let lag = Timestamp::now_from_system().as_micros() - u.updated_at.as_micros();
                report.lags.push(Duration::from_micros(lag.max(0) as u64));
            }
            tx.commit().await?;
            if (users.len() as i64) < self.batch {
                break;
            }
        }
        if newest > watermark {
            let mut tx = self.store.begin().await?;
            tx.set_migration_value(keys::SYNC_WATERMARK, &newest.to_db_text())
                .await?;
            tx.commit().await?;
        }
        Ok(report)
    }

    /// Polls every `interval` until `stop` resolves or the cutover is recorded: then the
    /// legacy's newest sessions are imported, the id sequence raised, and `on_cutover`
    /// called (the replica leaves the legacy). Failures are logged and retried.
    pub async fn run(
        &self,
        interval: Duration,
        stop: impl std::future::Future<Output = ()>,
        on_cutover: impl FnOnce(),
    ) {
        tokio::pin!(stop);
        loop {
            if crate::is_cut_over(&self.store).await.unwrap_or(false) {
                match crate::leave_legacy(&self.store, &self.legacy).await {
                    Ok(s) => {
                        tracing::info!(
                            imported_sessions = s.imported,
                            "cut over: leaving the legacy database"
                        );
                        on_cutover();
                        return;
                    }
                    Err(e) => tracing::warn!(error = %e, "leaving the legacy failed; retrying"),
                }
            } else {
                match self.sync_once().await {
                    Ok(r) if r.applied > 0 => tracing::info!(
                        scanned = r.scanned,
                        applied = r.applied,
                        "legacy changes applied"
                    ),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "legacy sync failed; retrying"),
                }
            }
            tokio::select! {
                () = tokio::time::sleep(interval) => {},
                () = &mut stop => break,
            }
        }
    }
}
