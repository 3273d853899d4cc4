//! Sessions across the cutover, one truth on both sides:
//! - the legacy's live sessions are imported into the identity service, so that an app
//!   still holding a legacy token (issued before it was routed to the new side, and not
//!   refreshed since) keeps its session when the legacy database is left. Only hashes of
//!   the tokens are kept; the legacy access token works until it expires or is
//!   refreshed, its refresh token is rotated into ours;
//! - every session of ours whose row the legacy no longer has was ended there (a
//!   log-out, a refresh, a password change or a withdrawal on the legacy): it is ended
//!   here too, so that it does not come back once the legacy is no longer asked.

use identity_store::{IMPORTED_LEGACY_JTI, SessionRow, Store};
use identity_tokens::hash_refresh_token;
use legacy_db::LegacyDb;
use member_contract::Timestamp;

use crate::MigrationError;

const BATCH: i64 = 1000;

/// Ids per look-up of the legacy's session rows (an `IN` list).
const LINK_BATCH: i64 = 500;

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionImport {
    /// Sessions of ours ended because the legacy ended them.
    pub ended: u64,
    /// Live legacy sessions read.
    pub scanned: u64,
    /// Newly imported.
    pub imported: u64,
    /// Already here: written through by the identity service, or imported before.
    pub known: u64,
    /// Of a member the identity service does not hold (verify reports those).
    pub orphaned: u64,
}

/// Imports every legacy session that can still be refreshed and that the identity
/// service does not know yet. Idempotent: the cutover runs it, and each replica once
/// more when it leaves the legacy database.
pub async fn import_legacy_sessions(
    store: &Store,
    legacy: &LegacyDb,
) -> Result<SessionImport, MigrationError> {
    let now = Timestamp::now_from_system();
    let mut report = SessionImport::default();
    let mut after = 0;
    loop {
        let batch = legacy
            .refreshable_sessions_after(legacy.pool(), after, now, BATCH)
            .await?;
        let Some(last) = batch.last() else { break };
        after = last.id;
        let mut tx = store.begin().await?;
        for ls in &batch {
            report.scanned += 1;
            // The identity service's own sessions carry its JWT as the legacy token and
            // are linked already.
            if ls.token.contains('.') {
                report.known += 1;
                continue;
            }
            if tx.member_by_id(ls.user_id).await?.is_none() {
                report.orphaned += 1;
                continue;
            }
            let row = SessionRow {
                id: format!("legacy-{}", ls.id),
                member_id: ls.user_id,
                access_jti: IMPORTED_LEGACY_JTI.to_owned(),
                created_at: ls.created_at.as_micros(),
                access_expires_at: ls.expires_at.as_micros(),
                refresh_expires_at: ls.refresh_expires_at.as_micros(),
                ended_at: None,
                legacy_session_id: Some(ls.id),
            };
            let inserted = tx
                .import_legacy_session(
                    &row,
                    &hash_refresh_token(&ls.token),
                    &hash_refresh_token(&ls.refresh_token),
                )
                .await?;
            if inserted {
                report.imported += 1;
            } else {
                report.known += 1;
            }
        }
        tx.commit().await?;
        if (batch.len() as i64) < BATCH {
            break;
        }
    }
    Ok(report)
}

/// Ends every live session of ours whose legacy row is gone (ended on the legacy), and
/// returns how many. Each candidate is checked again under its row's lock: a refresh
/// running at the same moment replaces the legacy row before it commits ours, and is
/// seen, not raced.
pub async fn end_sessions_ended_on_legacy(
    store: &Store,
    legacy: &LegacyDb,
) -> Result<u64, MigrationError> {
    let mut ended = 0;
    let mut after = String::new();
    loop {
        let batch = store.linked_live_sessions_after(&after, LINK_BATCH).await?;
        let Some((last, _)) = batch.last() else { break };
        after = last.clone();
        let gone = gone_on_legacy(legacy, &batch).await?;
        if !gone.is_empty() {
            let mut tx = store.begin().await?;
            let locked = tx.lock_linked_sessions(&gone).await?;
            let now = Timestamp::now_from_system().as_micros();
            for id in gone_on_legacy(legacy, &locked).await? {
                tx.end_session(&id, "ended on the legacy", now).await?;
                ended += 1;
            }
            tx.commit().await?;
        }
        if (batch.len() as i64) < LINK_BATCH {
            break;
        }
    }
    Ok(ended)
}

/// The sessions of `linked` (id, legacy row) whose legacy row is gone.
async fn gone_on_legacy(
    legacy: &LegacyDb,
    linked: &[(String, i64)],
) -> Result<Vec<String>, MigrationError> {
    let ids: Vec<i64> = linked.iter().map(|(_, lid)| *lid).collect();
    let existing = legacy.existing_session_ids(legacy.pool(), &ids).await?;
    Ok(linked
        .iter()
        .filter(|(_, lid)| !existing.contains(lid))
        .map(|(id, _)| id.clone())
        .collect())
}
