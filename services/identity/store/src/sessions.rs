//! Session queries: a session per log-in, the current access token's `jti`, refresh
//! tokens by hash with their rotation time, and ending sessions.

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::rows::{MemberRow, RefreshRow, SessionRow, member_columns, session_columns};
use crate::session_cache::LiveSession;
use crate::{Store, StoreError, Tx};

const SESSION_WITH_MEMBER: &str = concat!(
    "SELECT ",
    session_columns!(),
    ", ",
    member_columns!(),
    " FROM sessions s JOIN members m ON m.id = s.member_id WHERE s.id = $1"
);

const REFRESH_WITH_SESSION: &str = concat!(
    "SELECT r.token_hash, r.rotated_at, ",
    session_columns!(),
    " FROM refresh_tokens r JOIN sessions s ON s.id = r.session_id WHERE r.token_hash = $1"
);

const IMPORTED_WITH_MEMBER: &str = concat!(
    "SELECT ",
    session_columns!(),
    ", ",
    member_columns!(),
    " FROM sessions s JOIN members m ON m.id = s.member_id WHERE s.legacy_access_hash = $1"
);

/// The `access_jti` of a session imported from the legacy at cutover, as long as its
/// legacy access token is the current one (a refresh replaces it with a JWT's `jti`).
pub const IMPORTED_LEGACY_JTI: &str = "legacy";

/// A row of a query joining `sessions s` and `members m`.
fn session_and_member(row: &AnyRow) -> Result<(SessionRow, MemberRow), sqlx::Error> {
    Ok((SessionRow::from_row(row)?, MemberRow::from_row(row)?))
}

/// The session and member `sql` finds by its one parameter, on a pool or a transaction.
async fn one_session_and_member<'c, E: sqlx::Executor<'c, Database = sqlx::Any>>(
    ex: E,
    sql: &'static str,
    key: &str,
) -> Result<Option<(SessionRow, MemberRow)>, StoreError> {
    let row = sqlx::query(sql)
        .bind(key)
        .fetch_all(ex)
        .await?
        .into_iter()
        .next();
    Ok(row.as_ref().map(session_and_member).transpose()?)
}

impl Store {
    /// The session imported at cutover whose legacy access token hashes to `hash`, and
    /// its member, whatever their state.
    #[tracing::instrument(target = "traced", name = "identity db imported_legacy_session", skip_all, fields(otel.kind = "client", db.namespace = "identity"))]
    pub async fn imported_legacy_session(
        &self,
        access_hash: &str,
    ) -> Result<Option<(SessionRow, MemberRow)>, StoreError> {
        self.read(|pool| one_session_and_member(pool, IMPORTED_WITH_MEMBER, access_hash))
            .await
    }

    /// Live sessions linked to a legacy row, after `after` in id order, at most
    /// `limit`: the sessions a log-out, refresh or password change on the legacy may
    /// have ended.
    #[tracing::instrument(target = "traced", name = "identity db linked_live_sessions_after", skip_all, fields(otel.kind = "client", db.namespace = "identity"))]
    pub async fn linked_live_sessions_after(
        &self,
        after: &str,
        limit: i64,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        self.read(|pool| {
            sqlx::query_as(
                "SELECT id, legacy_session_id FROM sessions WHERE id > $1 AND ended_at IS NULL \
             AND legacy_session_id IS NOT NULL ORDER BY id LIMIT $2",
            )
            .bind(after)
            .bind(limit)
            .fetch_all(pool)
        })
        .await
    }

    /// Every session of a member created up to `created_by` (micros): its id, its
    /// legacy row (while migrating) and whether it is live here (not ended; expiry
    /// aside).
    #[tracing::instrument(target = "traced", name = "identity db sessions_of_member", skip_all, fields(otel.kind = "client", db.namespace = "identity"))]
    pub async fn sessions_of_member(
        &self,
        member_id: i64,
        created_by: i64,
    ) -> Result<Vec<(String, Option<i64>, bool)>, StoreError> {
        let rows: Vec<(String, Option<i64>, Option<i64>)> = self
            .read(|pool| {
                sqlx::query_as(
                    "SELECT id, legacy_session_id, ended_at FROM sessions \
             WHERE member_id = $1 AND created_at <= $2 ORDER BY id",
                )
                .bind(member_id)
                .bind(created_by)
                .fetch_all(pool)
            })
            .await?;
        Ok(rows
            .into_iter()
            .map(|(id, legacy, ended)| (id, legacy, ended.is_none()))
            .collect())
    }

    /// A session, its member and the legacy digest last recorded for the member (while
    /// migrating: to tell the legacy's row apart from ours in one query); read in a
    /// batch with the reads beside it.
    #[tracing::instrument(target = "traced", name = "identity db session_with_member_and_legacy_digest", skip_all, fields(otel.kind = "client", db.namespace = "identity"))]
    pub async fn session_with_member_and_legacy_digest(
        &self,
        session_id: &str,
    ) -> Result<Option<(SessionRow, MemberRow, Option<String>)>, StoreError> {
        Ok(self.reads.sessions.get(session_id.to_owned()).await?)
    }

    /// A session if it is live (not ended, its member not withdrawn), as introspection
    /// reads it: from the session cache when it may serve (see `session_cache`).
    #[tracing::instrument(target = "traced", name = "identity db live_session", skip_all, fields(otel.kind = "client", db.namespace = "identity"))]
    pub async fn live_session(&self, session_id: &str) -> Result<Option<LiveSession>, StoreError> {
        if let Some(live) = self.signals.sessions.get(session_id) {
            return Ok(Some(live));
        }
        Ok(self
            .session_read_for_cache(session_id)
            .await?
            .and_then(|(s, m, _)| LiveSession::of(&s, &m)))
    }

    /// A live session from the session cache only (nothing read): `None` when the
    /// cache does not hold it or may not serve.
    pub fn cached_live_session(&self, session_id: &str) -> Option<LiveSession> {
        self.signals.sessions.get(session_id)
    }

    /// [`Store::session_with_member_and_legacy_digest`], whose session, if live, the
    /// session cache keeps for the reads after it (unless an end was heard meanwhile).
    #[tracing::instrument(target = "traced", name = "identity db session_read_for_cache", skip_all, fields(otel.kind = "client", db.namespace = "identity"))]
    pub async fn session_read_for_cache(
        &self,
        session_id: &str,
    ) -> Result<Option<(SessionRow, MemberRow, Option<String>)>, StoreError> {
        let cache = &self.signals.sessions;
        self.listen();
        let generation = cache.generation();
        let found = self.reads.sessions.get(session_id.to_owned()).await?;
        if let (Some((s, m, _)), Some(generation)) = (&found, generation)
            && let Some(live) = LiveSession::of(s, m)
        {
            cache.keep(generation, session_id, live);
        }
        Ok(found)
    }

    /// A session and its member, whatever their state (the caller decides).
    #[tracing::instrument(target = "traced", name = "identity db session_with_member", skip_all, fields(otel.kind = "client", db.namespace = "identity"))]
    pub async fn session_with_member(
        &self,
        session_id: &str,
    ) -> Result<Option<(SessionRow, MemberRow)>, StoreError> {
        Ok(self
            .session_with_member_and_legacy_digest(session_id)
            .await?
            .map(|(s, m, _)| (s, m)))
    }
}

impl Tx {
    #[tracing::instrument(target = "traced", name = "identity db session_with_member", skip_all, fields(otel.kind = "client", db.namespace = "identity"))]
    pub async fn session_with_member(
        &mut self,
        session_id: &str,
    ) -> Result<Option<(SessionRow, MemberRow)>, StoreError> {
        one_session_and_member(self.conn(), SESSION_WITH_MEMBER, session_id).await
    }

    /// A refresh token by its hash, with its session.
    #[tracing::instrument(target = "traced", name = "identity db refresh_token", skip_all, fields(otel.kind = "client", db.namespace = "identity"))]
    pub async fn refresh_token(
        &mut self,
        token_hash: &str,
    ) -> Result<Option<RefreshRow>, StoreError> {
        let row = sqlx::query(REFRESH_WITH_SESSION)
            .bind(token_hash)
            .fetch_all(self.conn())
            .await?
            .into_iter()
            .next();
        match row {
            Some(r) => Ok(Some(RefreshRow {
                token_hash: r.try_get("token_hash")?,
                rotated_at: r.try_get("rotated_at")?,
                session: SessionRow::from_row(&r)?,
            })),
            None => Ok(None),
        }
    }

    /// A new session with its first refresh token.
    #[tracing::instrument(target = "traced", name = "identity db insert_session", skip_all, fields(otel.kind = "client", db.namespace = "identity"))]
    pub async fn insert_session(
        &mut self,
        s: &SessionRow,
        refresh_hash: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO sessions (id, member_id, access_jti, created_at, access_expires_at, refresh_expires_at, legacy_session_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&s.id)
        .bind(s.member_id)
        .bind(&s.access_jti)
        .bind(s.created_at)
        .bind(s.access_expires_at)
        .bind(s.refresh_expires_at)
        .bind(s.legacy_session_id)
        .execute(self.conn())
        .await?;
        self.insert_refresh(refresh_hash, &s.id, s.created_at).await
    }

    async fn insert_refresh(
        &mut self,
        hash: &str,
        session_id: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO refresh_tokens (token_hash, session_id, issued_at) VALUES ($1, $2, $3)",
        )
        .bind(hash)
        .bind(session_id)
        .bind(now)
        .execute(self.conn())
        .await?;
        Ok(())
    }

    /// Rotates a refresh token: marks the old one used (only if it still is unused, so
    /// that of two racing refreshes one wins), records the new one and the new access
    /// token's `jti`. Returns false when the old token was rotated meanwhile.
    #[tracing::instrument(target = "traced", name = "identity db rotate_refresh", skip_all, fields(otel.kind = "client", db.namespace = "identity"))]
    pub async fn rotate_refresh(
        &mut self,
        old_hash: &str,
        new_hash: &str,
        session_id: &str,
        new_jti: &str,
        access_expires_at: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE refresh_tokens SET rotated_at = $1 WHERE token_hash = $2 AND rotated_at IS NULL")
            .bind(now)
            .bind(old_hash)
            .execute(self.conn())
            .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        sqlx::query("UPDATE sessions SET access_jti = $1, access_expires_at = $2 WHERE id = $3 AND ended_at IS NULL")
            .bind(new_jti)
            .bind(access_expires_at)
            .bind(session_id)
            .execute(self.conn())
            .await?;
        // The previous access token is over.
        self.ends.note(session_id);
        self.insert_refresh(new_hash, session_id, now).await?;
        Ok(true)
    }

    /// Imports a live legacy session (at cutover): its access token is then accepted by
    /// hash as long as `access_jti` is [`IMPORTED_LEGACY_JTI`], its refresh token like
    /// ours. Returns false when the legacy session is already known here (imported
    /// before, or one of ours written through).
    #[tracing::instrument(target = "traced", name = "identity db import_legacy_session", skip_all, fields(otel.kind = "client", db.namespace = "identity"))]
    pub async fn import_legacy_session(
        &mut self,
        s: &SessionRow,
        access_hash: &str,
        refresh_hash: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO sessions (id, member_id, access_jti, created_at, access_expires_at, refresh_expires_at, legacy_session_id, legacy_access_hash) \
             SELECT $1, $2, $3, $4, $5, $6, $7, $8 \
             WHERE NOT EXISTS (SELECT 1 FROM sessions WHERE id = $1 OR legacy_session_id = $7 OR legacy_access_hash = $8)",
        )
        .bind(&s.id)
        .bind(s.member_id)
        .bind(&s.access_jti)
        .bind(s.created_at)
        .bind(s.access_expires_at)
        .bind(s.refresh_expires_at)
        .bind(s.legacy_session_id)
        .bind(access_hash)
        .execute(self.conn())
        .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        self.insert_refresh(refresh_hash, &s.id, s.created_at)
            .await?;
        Ok(true)
    }

    /// Ends the imported session of a legacy access token (log-out; idempotent).
    #[tracing::instrument(target = "traced", name = "identity db end_imported_legacy_session", skip_all, fields(otel.kind = "client", db.namespace = "identity"))]
    pub async fn end_imported_legacy_session(
        &mut self,
        access_hash: &str,
        reason: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let ended: Vec<String> = sqlx::query_scalar(
            "UPDATE sessions SET ended_at = $1, end_reason = $2 WHERE legacy_access_hash = $3 AND access_jti = $4 AND ended_at IS NULL RETURNING id",
        )
        .bind(now)
        .bind(reason)
        .bind(access_hash)
        .bind(IMPORTED_LEGACY_JTI)
        .fetch_all(self.conn())
        .await?;
        for id in &ended {
            self.ends.note(id);
        }
        Ok(())
    }

    /// Records the session's row in the legacy's `sessions` table.
    #[tracing::instrument(target = "traced", name = "identity db set_legacy_session", skip_all, fields(otel.kind = "client", db.namespace = "identity"))]
    pub async fn set_legacy_session(
        &mut self,
        session_id: &str,
        legacy_session_id: Option<i64>,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE sessions SET legacy_session_id = $1 WHERE id = $2")
            .bind(legacy_session_id)
            .bind(session_id)
            .execute(self.conn())
            .await?;
        Ok(())
    }

    /// Of `ids`, the sessions still live and linked to a legacy row, with that row's
    /// id, locked against a concurrent refresh until the transaction ends (so that a
    /// refresh that replaced the link is seen, not raced).
    #[tracing::instrument(target = "traced", name = "identity db lock_linked_sessions", skip_all, fields(otel.kind = "client", db.namespace = "identity"))]
    pub async fn lock_linked_sessions(
        &mut self,
        ids: &[String],
    ) -> Result<Vec<(String, i64)>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let list: Vec<String> = (1..=ids.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT id, legacy_session_id FROM sessions WHERE id IN ({}) AND ended_at IS NULL AND legacy_session_id IS NOT NULL{}",
            list.join(","),
            self.for_update()
        );
        let mut q = sqlx::query_as(sqlx::AssertSqlSafe(sql));
        for id in ids {
            q = q.bind(id);
        }
        Ok(q.fetch_all(self.conn()).await?)
    }

    /// Ends one session (idempotent).
    #[tracing::instrument(target = "traced", name = "identity db end_session", skip_all, fields(otel.kind = "client", db.namespace = "identity"))]
    pub async fn end_session(
        &mut self,
        session_id: &str,
        reason: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE sessions SET ended_at = $1, end_reason = $2 WHERE id = $3 AND ended_at IS NULL",
        )
        .bind(now)
        .bind(reason)
        .bind(session_id)
        .execute(self.conn())
        .await?;
        if done.rows_affected() > 0 {
            self.ends.note(session_id);
        }
        Ok(())
    }

    /// Ends every session of a member but `except`. Returns how many were ended.
    #[tracing::instrument(target = "traced", name = "identity db end_member_sessions", skip_all, fields(otel.kind = "client", db.namespace = "identity"))]
    pub async fn end_member_sessions(
        &mut self,
        member_id: i64,
        except: Option<&str>,
        reason: &str,
        now: i64,
    ) -> Result<u64, StoreError> {
        let ended: Vec<String> = sqlx::query_scalar(
            "UPDATE sessions SET ended_at = $1, end_reason = $2 WHERE member_id = $3 AND id <> $4 AND ended_at IS NULL RETURNING id",
        )
        .bind(now)
        .bind(reason)
        .bind(member_id)
        .bind(except.unwrap_or(""))
        .fetch_all(self.conn())
        .await?;
        for id in &ended {
            self.ends.note(id);
        }
        Ok(ended.len() as u64)
    }
}
