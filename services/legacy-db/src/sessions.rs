//! The `sessions` table: opaque 24-character base58 tokens (`has_secure_token`), stored
//! in clear; a rotated or logged-out session is deleted.

use member_contract::Timestamp;
use sqlx::any::AnyRow;
use sqlx::{Any, AssertSqlSafe, Executor, Row};

use crate::{LegacyDb, LegacyError, parse_ts};

/// `has_secure_token`'s length.
pub const TOKEN_LENGTH: usize = 24;

const BASE58: &[u8] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

/// A random base58 token, as `SecureRandom.base58(24)` makes one (uniform characters).
pub fn random_token() -> Result<String, LegacyError> {
    let mut out = String::with_capacity(TOKEN_LENGTH);
    let mut buf = [0u8; 64];
    while out.len() < TOKEN_LENGTH {
        getrandom_fill(&mut buf)?;
        for b in buf {
            // 232 = 4 × 58: rejection keeps the choice uniform.
            if b < 232 && out.len() < TOKEN_LENGTH {
                out.push(BASE58[(b % 58) as usize] as char);
            }
        }
    }
    Ok(out)
}

fn getrandom_fill(buf: &mut [u8]) -> Result<(), LegacyError> {
    getrandom::fill(buf).map_err(|e| LegacyError::Config(format!("no randomness: {e}")))
}

/// A row of `sessions`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacySession {
    pub id: i64,
    pub user_id: i64,
    pub token: String,
    pub refresh_token: String,
    pub expires_at: Timestamp,
    pub refresh_expires_at: Timestamp,
    pub created_at: Timestamp,
}

impl LegacySession {
    fn from_row(row: &AnyRow) -> Result<Self, LegacyError> {
        Ok(Self {
            id: row.try_get("id")?,
            user_id: row.try_get("user_id")?,
            token: row.try_get("token")?,
            refresh_token: row.try_get("refresh_token")?,
            expires_at: parse_ts(
                &row.try_get::<String, _>("expires_at")?,
                "sessions.expires_at",
            )?,
            refresh_expires_at: parse_ts(
                &row.try_get::<String, _>("refresh_expires_at")?,
                "sessions.refresh_expires_at",
            )?,
            created_at: parse_ts(
                &row.try_get::<String, _>("created_at")?,
                "sessions.created_at",
            )?,
        })
    }
}

impl LegacyDb {
    fn session_columns(&self) -> String {
        format!(
            "id, user_id, token, refresh_token, {} AS expires_at, {} AS refresh_expires_at, {} AS created_at",
            self.ts("expires_at"),
            self.ts("refresh_expires_at"),
            self.ts("created_at")
        )
    }

    /// `Session.unexpired.find_by(token:)`.
    #[tracing::instrument(target = "traced", name = "legacy db live_session_by_token", skip_all, fields(otel.kind = "client", db.namespace = "legacy"))]
    pub async fn live_session_by_token<'c, E: Executor<'c, Database = Any>>(
        &self,
        ex: E,
        token: &str,
        now: Timestamp,
    ) -> Result<Option<LegacySession>, LegacyError> {
        let sql = format!(
            "SELECT {} FROM sessions WHERE token = $1 AND expires_at > {}",
            self.session_columns(),
            self.ts_param(2)
        );
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(token)
            .bind(now.to_db_text())
            .fetch_all(ex)
            .await?
            .into_iter()
            .next();
        row.as_ref().map(LegacySession::from_row).transpose()
    }

    /// `Session.refreshable.find_by(refresh_token:)`.
    #[tracing::instrument(target = "traced", name = "legacy db refreshable_session", skip_all, fields(otel.kind = "client", db.namespace = "legacy"))]
    pub async fn refreshable_session<'c, E: Executor<'c, Database = Any>>(
        &self,
        ex: E,
        refresh_token: &str,
        now: Timestamp,
    ) -> Result<Option<LegacySession>, LegacyError> {
        let sql = format!(
            "SELECT {} FROM sessions WHERE refresh_token = $1 AND refresh_expires_at > {}",
            self.session_columns(),
            self.ts_param(2)
        );
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(refresh_token)
            .bind(now.to_db_text())
            .fetch_all(ex)
            .await?
            .into_iter()
            .next();
        row.as_ref().map(LegacySession::from_row).transpose()
    }

    /// Sessions that can still be refreshed, by id after `after_id`, at most `limit`
    /// (the cutover imports them).
    #[tracing::instrument(target = "traced", name = "legacy db refreshable_sessions_after", skip_all, fields(otel.kind = "client", db.namespace = "legacy"))]
    pub async fn refreshable_sessions_after<'c, E: Executor<'c, Database = Any>>(
        &self,
        ex: E,
        after_id: i64,
        now: Timestamp,
        limit: i64,
    ) -> Result<Vec<LegacySession>, LegacyError> {
        let sql = format!(
            "SELECT {} FROM sessions WHERE id > $1 AND refresh_expires_at > {} ORDER BY id LIMIT $3",
            self.session_columns(),
            self.ts_param(2)
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(after_id)
            .bind(now.to_db_text())
            .bind(limit)
            .fetch_all(ex)
            .await?;
        rows.iter().map(LegacySession::from_row).collect()
    }

    /// Inserts a session row as given (its tokens chosen by the caller).
    #[tracing::instrument(target = "traced", name = "legacy db insert_session", skip_all, fields(otel.kind = "client", db.namespace = "legacy"))]
    pub async fn insert_session<'c, E: Executor<'c, Database = Any>>(
        &self,
        ex: E,
        s: &LegacySession,
    ) -> Result<i64, LegacyError> {
        let sql = format!(
            "INSERT INTO sessions (user_id, token, refresh_token, expires_at, refresh_expires_at, created_at, updated_at) \
             VALUES ($1, $2, $3, {}, {}, {}, {}) RETURNING id",
            self.ts_param(4),
            self.ts_param(5),
            self.ts_param(6),
            self.ts_param(7)
        );
        let created = s.created_at.to_db_text();
        sqlx::query_scalar::<_, i64>(AssertSqlSafe(sql))
            .bind(s.user_id)
            .bind(&s.token)
            .bind(&s.refresh_token)
            .bind(s.expires_at.to_db_text())
            .bind(s.refresh_expires_at.to_db_text())
            .bind(&created)
            .bind(&created)
            .fetch_one(ex)
            .await
            .map_err(LegacyError::from_write)
    }

    /// `user.sessions.create!`: fresh tokens, 1 hour and 30 days.
    #[tracing::instrument(target = "traced", name = "legacy db create_session", skip_all, fields(otel.kind = "client", db.namespace = "legacy"))]
    pub async fn create_session(
        &self,
        conn: &mut sqlx::AnyConnection,
        user_id: i64,
        now: Timestamp,
    ) -> Result<LegacySession, LegacyError> {
        let mut s = LegacySession {
            id: 0,
            user_id,
            token: random_token()?,
            refresh_token: random_token()?,
            expires_at: now.plus_secs(3600),
            refresh_expires_at: now.plus_secs(30 * 86_400),
            created_at: now,
        };
        s.id = self.insert_session(&mut *conn, &s).await?;
        Ok(s)
    }

    /// Deletes one session; the number of rows deleted (0 when another request won).
    /// Of `ids`, the sessions rows that still exist (not logged out, rotated or ended
    /// by a password change or a withdrawal).
    #[tracing::instrument(target = "traced", name = "legacy db existing_session_ids", skip_all, fields(otel.kind = "client", db.namespace = "legacy"))]
    pub async fn existing_session_ids<'c, E: Executor<'c, Database = Any>>(
        &self,
        ex: E,
        ids: &[i64],
    ) -> Result<std::collections::HashSet<i64>, LegacyError> {
        if ids.is_empty() {
            return Ok(std::collections::HashSet::new());
        }
        let list: Vec<String> = (1..=ids.len()).map(|i| format!("${i}")).collect();
        let sql = format!("SELECT id FROM sessions WHERE id IN ({})", list.join(","));
        let mut q = sqlx::query_scalar(AssertSqlSafe(sql));
        for id in ids {
            q = q.bind(*id);
        }
        Ok(q.fetch_all(ex).await?.into_iter().collect())
    }

    /// Every session row of a user created up to `created_by` (expired ones included:
    /// Rails ends a session by deleting its row, and only that).
    #[tracing::instrument(target = "traced", name = "legacy db session_ids_of_user", skip_all, fields(otel.kind = "client", db.namespace = "legacy"))]
    pub async fn session_ids_of_user<'c, E: Executor<'c, Database = Any>>(
        &self,
        ex: E,
        user_id: i64,
        created_by: Timestamp,
    ) -> Result<std::collections::HashSet<i64>, LegacyError> {
        let sql = format!(
            "SELECT id FROM sessions WHERE user_id = $1 AND created_at <= {}",
            self.ts_param(2)
        );
        Ok(sqlx::query_scalar(AssertSqlSafe(sql))
            .bind(user_id)
            .bind(created_by.to_db_text())
            .fetch_all(ex)
            .await?
            .into_iter()
            .collect())
    }

    /// Whether a session row exists.
    #[tracing::instrument(target = "traced", name = "legacy db session_exists", skip_all, fields(otel.kind = "client", db.namespace = "legacy"))]
    pub async fn session_exists<'c, E: Executor<'c, Database = Any>>(
        &self,
        ex: E,
        id: i64,
    ) -> Result<bool, LegacyError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sessions WHERE id = $1")
            .bind(id)
            .fetch_one(ex)
            .await?;
        Ok(n > 0)
    }

    #[tracing::instrument(target = "traced", name = "legacy db delete_session", skip_all, fields(otel.kind = "client", db.namespace = "legacy"))]
    pub async fn delete_session<'c, E: Executor<'c, Database = Any>>(
        &self,
        ex: E,
        id: i64,
    ) -> Result<u64, LegacyError> {
        Ok(sqlx::query("DELETE FROM sessions WHERE id = $1")
            .bind(id)
            .execute(ex)
            .await?
            .rows_affected())
    }

    /// `Session.where(token:).delete_all` (log-out; expired or not).
    #[tracing::instrument(target = "traced", name = "legacy db delete_sessions_by_token", skip_all, fields(otel.kind = "client", db.namespace = "legacy"))]
    pub async fn delete_sessions_by_token<'c, E: Executor<'c, Database = Any>>(
        &self,
        ex: E,
        token: &str,
    ) -> Result<u64, LegacyError> {
        Ok(sqlx::query("DELETE FROM sessions WHERE token = $1")
            .bind(token)
            .execute(ex)
            .await?
            .rows_affected())
    }

    /// Deletes the sessions of a refresh token.
    #[tracing::instrument(target = "traced", name = "legacy db delete_sessions_by_refresh_token", skip_all, fields(otel.kind = "client", db.namespace = "legacy"))]
    pub async fn delete_sessions_by_refresh_token<'c, E: Executor<'c, Database = Any>>(
        &self,
        ex: E,
        refresh_token: &str,
    ) -> Result<u64, LegacyError> {
        Ok(sqlx::query("DELETE FROM sessions WHERE refresh_token = $1")
            .bind(refresh_token)
            .execute(ex)
            .await?
            .rows_affected())
    }

    /// Every session of a user but `except`.
    #[tracing::instrument(target = "traced", name = "legacy db delete_user_sessions", skip_all, fields(otel.kind = "client", db.namespace = "legacy"))]
    pub async fn delete_user_sessions<'c, E: Executor<'c, Database = Any>>(
        &self,
        ex: E,
        user_id: i64,
        except: Option<i64>,
    ) -> Result<u64, LegacyError> {
        Ok(
            sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND id <> $2")
                .bind(user_id)
                .bind(except.unwrap_or(0))
                .execute(ex)
                .await?
                .rows_affected(),
        )
    }
}
