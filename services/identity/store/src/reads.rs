//! The reads every call of other services makes, on a pool of their own that speaks
//! PostgreSQL's or SQLite's own driver (the Any driver copies every column's description
//! into every row: measured on a read of 100 members, a tenth of the service's CPU went
//! to those copies), batched (see `point_reads`):
//! - a member by id (`GetMember`, and every member the flows look at);
//! - a session with its member and the legacy digest recorded for it (every
//!   authenticated call, `VerifyAccessToken`);
//! - the active members among a list of ids (`BatchGetMembers`, `GET /users?ids=`).

use std::collections::HashMap;
use std::sync::Arc;

use crate::rows::{MemberRow, SessionRow, member_columns, session_columns};
use crate::{Backend, StoreConfig, StoreError};
use point_reads::{Batcher, Fetch, ReadPool, keys_table, rows_of};

/// How long a batch of point reads may take: a connection that hangs (a database gone
/// silent) fails its batch and frees the lane instead of stopping every read behind it.
const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// A session, its member, and the legacy digest recorded for the member.
pub(crate) type SessionView = (SessionRow, MemberRow, Option<String>);

/// The readers' connections.
async fn connect(
    url: &str,
    backend: Backend,
    config: &StoreConfig,
) -> Result<ReadPool, StoreError> {
    // The batchers keep one query each in flight; `BatchGetMembers` calls have the rest.
    let connections = config.max_connections.clamp(2, 8);
    Ok(ReadPool::connect(url, backend.engine(), connections, config.acquire_timeout).await?)
}

async fn members(
    pool: &ReadPool,
    sql: String,
    param: String,
) -> Result<Vec<MemberRow>, StoreError> {
    Ok(rows_of!(pool, sql, param, |row| MemberRow::from_row(row)))
}

async fn sessions(
    pool: &ReadPool,
    sql: String,
    param: String,
) -> Result<Vec<SessionView>, StoreError> {
    Ok(rows_of!(pool, sql, param, |row| Ok::<_, sqlx::Error>((
        SessionRow::from_row(row)?,
        MemberRow::from_row(row)?,
        sqlx::Row::try_get::<Option<String>, _>(row, "legacy_digest")?,
    ))))
}

pub(crate) struct Reads {
    pool: ReadPool,
    backend: Backend,
    pub(crate) members: Batcher<i64, MemberRow, StoreError>,
    pub(crate) sessions: Batcher<String, SessionView, StoreError>,
}

impl Reads {
    /// Connects the readers' pool and starts the batchers, each with one query in
    /// flight at a time: what arrives meanwhile is the next batch. Measured with 32
    /// calls in flight on PostgreSQL (GetMember, VerifyAccessToken per second): 1 lane
    /// 47.7k and 38.0k, 2 lanes 38.4k and 33.4k, 4 lanes 33.1k and 20.9k, 8 lanes 22.1k
    /// and 15.9k; fewer, larger batches win.
    pub(crate) async fn start(
        url: &str,
        backend: Backend,
        config: &StoreConfig,
    ) -> Result<Self, StoreError> {
        let pool = connect(url, backend, config).await?;
        let lanes = 1;
        let members_pool = pool.clone();
        let members: Fetch<i64, MemberRow, StoreError> = Arc::new(move |ids: Vec<i64>| {
            let pool = members_pool.clone();
            Box::pin(async move {
                let (keys, param) = keys_table(backend.engine(), "bigint", &ids);
                let sql = format!(
                    "SELECT {} FROM {keys} JOIN members m ON m.id = k.value",
                    member_columns!()
                );
                Ok(members(&pool, sql, param)
                    .await?
                    .into_iter()
                    .map(|m| (m.id, m))
                    .collect::<HashMap<_, _>>())
            })
        });
        let sessions_pool = pool.clone();
        let sessions: Fetch<String, SessionView, StoreError> = Arc::new(move |ids: Vec<String>| {
            let pool = sessions_pool.clone();
            Box::pin(async move {
                let (keys, param) = keys_table(backend.engine(), "text", &ids);
                let sql = format!(
                    "SELECT {}, {}, d.digest AS legacy_digest FROM {keys} \
                     JOIN sessions s ON s.id = k.value JOIN members m ON m.id = s.member_id \
                     LEFT JOIN legacy_digests d ON d.member_id = m.id",
                    session_columns!(),
                    member_columns!()
                );
                Ok(sessions(&pool, sql, param)
                    .await?
                    .into_iter()
                    .map(|view| (view.0.id.clone(), view))
                    .collect::<HashMap<_, _>>())
            })
        });
        Ok(Self {
            members: Batcher::start(lanes, READ_TIMEOUT, StoreError::connection_lost, members),
            sessions: Batcher::start(lanes, READ_TIMEOUT, StoreError::connection_lost, sessions),
            pool,
            backend,
        })
    }

    /// The active members among `ids` (sorted, each once), ordered by id: one query,
    /// one index look-up per id.
    pub(crate) async fn active_members(&self, ids: &[i64]) -> Result<Vec<MemberRow>, StoreError> {
        let (keys, param) = keys_table(self.backend.engine(), "bigint", ids);
        let sql = format!(
            "SELECT {} FROM {keys} JOIN members m ON m.id = k.value WHERE m.deleted_at IS NULL ORDER BY m.id",
            member_columns!()
        );
        members(&self.pool, sql, param).await
    }
}
