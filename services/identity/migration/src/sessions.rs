//! Sessions across the cutover: the legacy's live sessions are imported into the
//! identity service, so that an app still holding a legacy token (issued before it was
//! routed to the new side, and not refreshed since) keeps its session when the legacy
//! database is left. Only hashes of the tokens are kept; the legacy access token works
//! until it expires or is refreshed, its refresh token is rotated into ours.

use identity_store::{IMPORTED_LEGACY_JTI, SessionRow, Store};
use identity_tokens::hash_refresh_token;
use legacy_db::LegacyDb;
use member_contract::Timestamp;

use crate::MigrationError;

const BATCH: i64 = 1000;

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionImport {
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
