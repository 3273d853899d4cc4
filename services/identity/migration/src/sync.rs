//! The continuous sync: legacy changes (sign-ups, profile and password changes,
//! withdrawals) applied to the identity database within moments. Each poll reads the
//! rows whose `updated_at` is at or after the watermark less a look-back, so that a
//! transaction that committed late, with an earlier `updated_at` than rows already seen,
//! is still caught while it is within the look-back. Each batch of legacy rows is
//! compared with the identity database in one query; a row version (id, `updated_at`)
//! already found equal or applied is remembered while it is within the look-back, so
//! that a window holding many rows (a bulk update on the legacy) costs one comparison
//! per version, not one per poll.
//! The watermark is kept in the identity database, so a restart resumes. Of the
//! replicas of a cluster one syncs at a time (an advisory lock on PostgreSQL); when it
//! stops, another takes over at its next poll.

use std::time::Duration;

use identity_store::{Leadership, Store};
use legacy_db::LegacyDb;
use member_contract::Timestamp;

use futures_util::StreamExt;

use crate::convert::target_for;
use crate::{MigrationError, keys};

fn poisoned() -> MigrationError {
    MigrationError::Refused("the sync's memory of seen rows is unusable".into())
}

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

/// The advisory lock naming the sync (one replica syncs at a time).
pub const SYNC_LEAD_KEY: i64 = 0x1d_e471_5c01;

/// What one poll of [`Syncer::run`] came to, for metrics.
#[derive(Debug)]
pub enum PollOutcome<'a> {
    /// This replica leads and synced.
    Synced(&'a SyncReport),
    /// Another replica leads the sync.
    Standby,
    /// The poll failed (logged; retried at the next).
    Failed,
}

type Observer = Box<dyn Fn(&PollOutcome<'_>) + Send + Sync>;

pub struct Syncer {
    store: Store,
    legacy: LegacyDb,
    observer: Option<Observer>,
    /// Row versions handled within the look-back: id → `updated_at` in µs.
    seen: std::sync::Mutex<std::collections::HashMap<i64, i64>>,
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
            seen: std::sync::Mutex::default(),
            observer: None,
            lookback,
            batch: 1000,
        }
    }

    /// Calls `observer` after each poll of [`Syncer::run`] (metrics).
    pub fn observe(mut self, observer: impl Fn(&PollOutcome<'_>) + Send + Sync + 'static) -> Self {
        self.observer = Some(Box::new(observer));
        self
    }

    fn report(&self, outcome: &PollOutcome<'_>) {
        if let Some(observer) = &self.observer {
            observer(outcome);
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
        let rows = self.legacy.users_changed_since(since);
        let mut batches = std::pin::pin!(rows.chunks(self.batch.max(1) as usize));
        while let Some(batch) = batches.next().await {
            let users = batch.into_iter().collect::<Result<Vec<_>, _>>()?;
            report.scanned += users.len() as u64;
            newest = newest.max(users.iter().map(|u| u.updated_at).max().unwrap_or(newest));
            self.apply_batch(&users, &mut report).await?;
        }
        if let Ok(mut seen) = self.seen.lock() {
            let horizon = since.as_micros();
            seen.retain(|_, updated_at| *updated_at >= horizon);
        }
        if newest > watermark {
            let mut tx = self.store.begin().await?;
            tx.set_migration_value(keys::SYNC_WATERMARK, &newest.to_db_text())
                .await?;
            tx.commit().await?;
        }
        Ok(report)
    }

    /// Compares a batch of legacy rows with the identity database (one query) and
    /// applies those that differ, in one transaction.
    async fn apply_batch(
        &self,
        users: &[legacy_db::LegacyUser],
        report: &mut SyncReport,
    ) -> Result<(), MigrationError> {
        let fresh: Vec<&legacy_db::LegacyUser> = {
            let seen = self.seen.lock().map_err(|_| poisoned())?;
            users
                .iter()
                .filter(|u| seen.get(&u.id) != Some(&u.updated_at.as_micros()))
                .collect()
        };
        if fresh.is_empty() {
            return Ok(());
        }
        let ids: Vec<i64> = fresh.iter().map(|u| u.id).collect();
        let current = self.store.members_with_legacy_digests(&ids).await?;
        let mut tx = None;
        for u in &fresh {
            let now = current.get(&u.id).map(|(m, d)| (m, d.as_deref()));
            let Some(target) = target_for(u, now) else {
                continue;
            };
            if tx.is_none() {
                tx = Some(self.store.begin().await?);
            }
            if let Some(tx) = tx.as_mut() {
                tx.replace_member(&target, &u.password_digest).await?;
            }
            report.applied += 1;
            let lag = Timestamp::now_from_system().as_micros() - u.updated_at.as_micros();
            report.lags.push(Duration::from_micros(lag.max(0) as u64));
        }
        if let Some(tx) = tx {
            tx.commit().await?;
        }
        // Remembered only once committed: a failed batch is compared again.
        let mut seen = self.seen.lock().map_err(|_| poisoned())?;
        for u in &fresh {
            seen.insert(u.id, u.updated_at.as_micros());
        }
        Ok(())
    }

    /// Polls every `interval` until `stop` resolves or the cutover is recorded: then the
    /// legacy's newest sessions are imported and the id sequence raised (best effort),
    /// and `on_cutover` is called (the replica leaves the legacy). Failed polls are
    /// logged and retried.
    pub async fn run(
        &self,
        interval: Duration,
        stop: impl std::future::Future<Output = ()>,
        on_cutover: impl FnOnce(),
    ) {
        tokio::pin!(stop);
        let mut lead: Option<Leadership> = None;
        loop {
            if crate::is_cut_over(&self.store).await.unwrap_or(false) {
                // The cutover imported the sessions and left room above the ids
                // already: this last look is a complement, and a legacy that cannot be
                // reached any more does not keep this replica writing to it.
                match crate::leave_legacy(&self.store, &self.legacy).await {
                    Ok(s) => tracing::info!(
                        imported_sessions = s.imported,
                        ended_sessions = s.ended,
                        "cut over: leaving the legacy database"
                    ),
                    Err(e) => tracing::warn!(
                        error = %e,
                        "cut over: the legacy's newest sessions could not be imported; leaving it anyway"
                    ),
                }
                if let Some(l) = lead.take() {
                    l.release().await;
                }
                on_cutover();
                return;
            } else if self.lead(&mut lead).await {
                match self.sync_once().await {
                    Ok(r) => {
                        if r.applied > 0 {
                            tracing::info!(
                                scanned = r.scanned,
                                applied = r.applied,
                                "legacy changes applied"
                            );
                        }
                        self.report(&PollOutcome::Synced(&r));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "legacy sync failed; retrying");
                        self.report(&PollOutcome::Failed);
                    }
                }
            } else {
                self.report(&PollOutcome::Standby);
            }
            tokio::select! {
                () = tokio::time::sleep(interval) => {},
                () = &mut stop => break,
            }
        }
        if let Some(l) = lead {
            l.release().await;
        }
    }

    /// Whether this replica leads the sync now: keeps the lead while its connection
    /// lives, otherwise tries to take it.
    async fn lead(&self, lead: &mut Option<Leadership>) -> bool {
        if let Some(l) = lead.as_mut() {
            if l.holds().await {
                return true;
            }
            tracing::warn!("lost the lead of the legacy sync; trying to take it again");
            *lead = None;
        }
        match self.store.try_lead(SYNC_LEAD_KEY).await {
            Ok(Some(l)) => {
                tracing::info!("this replica runs the legacy sync");
                *lead = Some(l);
                true
            }
            Ok(None) => false,
            Err(e) => {
                tracing::warn!(error = %e, "cannot take the lead of the legacy sync");
                false
            }
        }
    }
}
