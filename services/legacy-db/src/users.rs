//! The `users` table: look-ups and writes as the legacy's model makes them.

use std::collections::HashMap;
use std::sync::Arc;

use member_contract::Timestamp;
use point_reads::{Batcher, Decodes, Fetch, ReadPool, keys_table, rows_of};
use sqlx::{Any, AssertSqlSafe, ColumnIndex, Executor, Row};

use crate::{Backend, LegacyDb, LegacyError, parse_ts, ts_of};

/// A row of `users`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyUser {
    pub id: i64,
    pub email: String,
    pub password_digest: String,
    pub nickname: String,
    pub phone_number: Option<String>,
    pub profile_image_url: Option<String>,
    pub deleted_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A user to insert; `id` from the sequence unless given.
#[derive(Debug, Clone)]
pub struct NewLegacyUser {
    pub id: Option<i64>,
    pub email: String,
    pub password_digest: String,
    pub nickname: String,
    pub phone_number: Option<String>,
    pub profile_image_url: Option<String>,
    pub now: Timestamp,
}

impl LegacyUser {
    pub fn is_withdrawn(&self) -> bool {
        self.deleted_at.is_some()
    }

    /// A row of the Any driver's, or of PostgreSQL's or SQLite's own (the batched reads).
    fn from_row<'r, R: Decodes<'r>>(row: &'r R) -> Result<Self, LegacyError>
    where
        &'r str: ColumnIndex<R>,
    {
        Ok(Self {
            id: row.int("id")?,
            email: row.text("email")?,
            password_digest: row.text("password_digest")?,
            nickname: row.text("nickname")?,
            phone_number: row.maybe_text("phone_number")?,
            profile_image_url: row.maybe_text("profile_image_url")?,
            deleted_at: row
                .maybe_text("deleted_at")?
                .map(|d| parse_ts(&d, "users.deleted_at"))
                .transpose()?,
            created_at: parse_ts(&row.text("created_at")?, "users.created_at")?,
            updated_at: parse_ts(&row.text("updated_at")?, "users.updated_at")?,
        })
    }
}

/// A column of the profile a member changes (`PATCH /users/me`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProfileColumn {
    Nickname,
    PhoneNumber,
    ProfileImageUrl,
}

impl ProfileColumn {
    fn name(self) -> &'static str {
        match self {
            ProfileColumn::Nickname => "nickname",
            ProfileColumn::PhoneNumber => "phone_number",
            ProfileColumn::ProfileImageUrl => "profile_image_url",
        }
    }
}

/// The columns of a user row as `LegacyUser::from_row` reads them, of the table named
/// `table` in the query (`users`, or an alias).
fn user_columns_of(backend: Backend, table: &str) -> String {
    format!(
        "{table}.id AS id, {table}.email AS email, {table}.password_digest AS password_digest, \
         {table}.nickname AS nickname, {table}.phone_number AS phone_number, \
         {table}.profile_image_url AS profile_image_url, {} AS deleted_at, {} AS created_at, \
         {} AS updated_at",
        ts_of(backend, &format!("{table}.deleted_at")),
        ts_of(backend, &format!("{table}.created_at")),
        ts_of(backend, &format!("{table}.updated_at"))
    )
}

/// The one user `sql` finds by its one parameter `key`, if any.
async fn one_user<'c, 'q, E, T>(
    ex: E,
    sql: String,
    key: T,
) -> Result<Option<LegacyUser>, LegacyError>
where
    E: Executor<'c, Database = Any>,
    T: 'q + Send + sqlx::Encode<'q, Any> + sqlx::Type<Any>,
{
    let row = sqlx::query(AssertSqlSafe(sql))
        .bind(key)
        .fetch_all(ex)
        .await?
        .into_iter()
        .next();
    row.as_ref().map(LegacyUser::from_row).transpose()
}

/// A session's owner and when the session expires, by session id.
pub(crate) type SessionOwners = Batcher<i64, (LegacyUser, Timestamp), LegacyError>;

/// The batched read of sessions' owners, on `pool` (in the engine's own driver).
pub(crate) fn session_owners(pool: ReadPool, backend: Backend) -> SessionOwners {
    let fetch: Fetch<i64, (LegacyUser, Timestamp), LegacyError> = Arc::new(move |ids: Vec<i64>| {
        let pool = pool.clone();
        Box::pin(async move {
            let (keys, param) = keys_table(backend.engine(), "bigint", &ids);
            let sql = format!(
                "SELECT s.id AS owned_session_id, {} AS owned_session_expires_at, {} \
                 FROM {keys} JOIN sessions s ON s.id = k.value JOIN users u ON u.id = s.user_id",
                ts_of(backend, "s.expires_at"),
                user_columns_of(backend, "u")
            );
            let owners = rows_of!(&pool, sql, param, |row| Ok::<_, LegacyError>((
                row.int("owned_session_id")?,
                (
                    LegacyUser::from_row(row)?,
                    parse_ts(
                        &row.text("owned_session_expires_at")?,
                        "sessions.expires_at"
                    )?,
                ),
            )));
            Ok(owners.into_iter().collect::<HashMap<_, _>>())
        })
    });
    // A read that hangs fails its batch and frees the lane; one that meets a connection
    // a restart cut is read again (see point_reads).
    Batcher::start(
        1,
        std::time::Duration::from_secs(5),
        LegacyError::connection_lost,
        fetch,
    )
}

impl LegacyDb {
    pub(crate) fn user_columns(&self) -> String {
        user_columns_of(self.backend, "users")
    }

    /// The user of a session live at `now` (not logged out, rotated or expired), as it is
    /// now, read in a batch with the reads of other requests at the same time (every authenticated request while migrating).
    #[tracing::instrument(target = "traced", name = "legacy db owner_of_live_session_batched", skip_all, fields(otel.kind = "client", db.namespace = "legacy"))]
    pub async fn owner_of_live_session_batched(
        &self,
        session_id: i64,
        now: Timestamp,
    ) -> Result<Option<LegacyUser>, LegacyError> {
        Ok(self
            .session_owners
            .get(session_id)
            .await?
            .filter(|(_, expires)| *expires > now)
            .map(|(user, _)| user))
    }

    #[tracing::instrument(target = "traced", name = "legacy db user_by_id", skip_all, fields(otel.kind = "client", db.namespace = "legacy"))]
    pub async fn user_by_id<'c, E: Executor<'c, Database = Any>>(
        &self,
        ex: E,
        id: i64,
    ) -> Result<Option<LegacyUser>, LegacyError> {
        let sql = format!("SELECT {} FROM users WHERE id = $1", self.user_columns());
        one_user(ex, sql, id).await
    }

    /// Users with `id > after`, in id order, at most `limit` (withdrawn ones included).
    #[tracing::instrument(target = "traced", name = "legacy db users_after", skip_all, fields(otel.kind = "client", db.namespace = "legacy"))]
    pub async fn users_after<'c, E: Executor<'c, Database = Any>>(
        &self,
        ex: E,
        after: i64,
        limit: i64,
    ) -> Result<Vec<LegacyUser>, LegacyError> {
        let sql = format!(
            "SELECT {} FROM users WHERE id > $1 ORDER BY id LIMIT $2",
            self.user_columns()
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(after)
            .bind(limit)
            .fetch_all(ex)
            .await?;
        rows.iter().map(LegacyUser::from_row).collect()
    }

    /// Every user whose `updated_at` is at or after `since`, in no particular order,
    /// as one streamed query (a range of the `updated_at` index; no sort, which a
    /// window of many rows with one `updated_at`, as a bulk update leaves, would make
    /// costly per page).
    pub fn users_changed_since(
        &self,
        since: Timestamp,
    ) -> impl futures_util::Stream<Item = Result<LegacyUser, LegacyError>> + '_ {
        use futures_util::StreamExt;
        let sql = format!(
            "SELECT {} FROM users WHERE users.updated_at >= {}",
            self.user_columns(),
            self.ts_param(1),
        );
        sqlx::query(AssertSqlSafe(sql))
            .bind(since.to_db_text())
            .fetch(&self.pool)
            .map(|row| LegacyUser::from_row(&row?))
    }

    /// The number of users and the highest id.
    #[tracing::instrument(target = "traced", name = "legacy db user_stats", skip_all, fields(otel.kind = "client", db.namespace = "legacy"))]
    pub async fn user_stats<'c, E: Executor<'c, Database = Any>>(
        &self,
        ex: E,
    ) -> Result<(i64, i64), LegacyError> {
        let row = sqlx::query("SELECT COUNT(*) AS n, COALESCE(MAX(id), 0) AS max_id FROM users")
            .fetch_one(ex)
            .await?;
        Ok((row.try_get("n")?, row.try_get("max_id")?))
    }

    /// The number of users with `id <= upto` (a resumed backfill's starting count).
    #[tracing::instrument(target = "traced", name = "legacy db count_users_upto", skip_all, fields(otel.kind = "client", db.namespace = "legacy"))]
    pub async fn count_users_upto<'c, E: Executor<'c, Database = Any>>(
        &self,
        ex: E,
        upto: i64,
    ) -> Result<i64, LegacyError> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE id <= $1")
                .bind(upto)
                .fetch_one(ex)
                .await?,
        )
    }

    /// `User.active.find_by(email:)`.
    #[tracing::instrument(target = "traced", name = "legacy db active_user_by_email", skip_all, fields(otel.kind = "client", db.namespace = "legacy"))]
    pub async fn active_user_by_email<'c, E: Executor<'c, Database = Any>>(
        &self,
        ex: E,
        email: &str,
    ) -> Result<Option<LegacyUser>, LegacyError> {
        let sql = format!(
            "SELECT {} FROM users WHERE email = $1 AND deleted_at IS NULL",
            self.user_columns()
        );
        one_user(ex, sql, email).await
    }

    /// `User.active.where(id: ids).order(:id)`.
    #[tracing::instrument(target = "traced", name = "legacy db active_users_by_ids", skip_all, fields(otel.kind = "client", db.namespace = "legacy"))]
    pub async fn active_users_by_ids<'c, E: Executor<'c, Database = Any>>(
        &self,
        ex: E,
        ids: &[i64],
    ) -> Result<Vec<LegacyUser>, LegacyError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let placeholders: Vec<String> = (1..=ids.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT {} FROM users WHERE deleted_at IS NULL AND id IN ({}) ORDER BY id",
            self.user_columns(),
            placeholders.join(",")
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for id in ids {
            q = q.bind(*id);
        }
        q.fetch_all(ex)
            .await?
            .iter()
            .map(LegacyUser::from_row)
            .collect()
    }

    /// Uniqueness as Rails checks it: `LOWER(email) = LOWER(?)`, other rows only.
    #[tracing::instrument(target = "traced", name = "legacy db email_taken", skip_all, fields(otel.kind = "client", db.namespace = "legacy"))]
    pub async fn email_taken<'c, E: Executor<'c, Database = Any>>(
        &self,
        ex: E,
        email: &str,
        except: i64,
    ) -> Result<bool, LegacyError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM users WHERE LOWER(email) = LOWER($1) AND id <> $2",
        )
        .bind(email)
        .bind(except)
        .fetch_one(ex)
        .await?;
        Ok(n > 0)
    }

    #[tracing::instrument(target = "traced", name = "legacy db phone_taken", skip_all, fields(otel.kind = "client", db.namespace = "legacy"))]
    pub async fn phone_taken<'c, E: Executor<'c, Database = Any>>(
        &self,
        ex: E,
        phone: &str,
        except: i64,
    ) -> Result<bool, LegacyError> {
        let n: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE phone_number = $1 AND id <> $2")
                .bind(phone)
                .bind(except)
                .fetch_one(ex)
                .await?;
        Ok(n > 0)
    }

    /// Inserts a user; returns its id.
    #[tracing::instrument(target = "traced", name = "legacy db insert_user", skip_all, fields(otel.kind = "client", db.namespace = "legacy"))]
    pub async fn insert_user<'c, E: Executor<'c, Database = Any>>(
        &self,
        ex: E,
        u: &NewLegacyUser,
    ) -> Result<i64, LegacyError> {
        let now = u.now.to_db_text();
        let (cols, first) = if u.id.is_some() { ("id, ", 2) } else { ("", 1) };
        let mut params: Vec<String> = (first..first + 5).map(|i| format!("${i}")).collect();
        params.push(self.ts_param(first + 5));
        params.push(self.ts_param(first + 6));
        let id_param = if u.id.is_some() { "$1, " } else { "" };
        let sql = format!(
            "INSERT INTO users ({cols}email, password_digest, nickname, phone_number, profile_image_url, created_at, updated_at) \
             VALUES ({id_param}{}) RETURNING id",
            params.join(", ")
        );
        let mut q = sqlx::query_scalar::<_, i64>(AssertSqlSafe(sql));
        if let Some(id) = u.id {
            q = q.bind(id);
        }
        q.bind(&u.email)
            .bind(&u.password_digest)
            .bind(&u.nickname)
            .bind(&u.phone_number)
            .bind(&u.profile_image_url)
            .bind(&now)
            .bind(&now)
            .fetch_one(ex)
            .await
            .map_err(LegacyError::from_write)
    }

    /// Writes the profile columns and `updated_at`.
    /// A user, locked against other writers (Rails' own included) until the
    /// transaction ends (`FOR UPDATE` on PostgreSQL; SQLite's write transaction holds
    /// the whole database already).
    #[tracing::instrument(target = "traced", name = "legacy db lock_user", skip_all, fields(otel.kind = "client", db.namespace = "legacy"))]
    pub async fn lock_user<'c, E: Executor<'c, Database = Any>>(
        &self,
        ex: E,
        id: i64,
    ) -> Result<Option<LegacyUser>, LegacyError> {
        let lock = match self.backend {
            crate::Backend::Postgres => " FOR UPDATE",
            crate::Backend::Sqlite => "",
        };
        let sql = format!(
            "SELECT {} FROM users WHERE id = $1{lock}",
            self.user_columns()
        );
        one_user(ex, sql, id).await
    }

    /// Sets only the given profile columns of an active user (ActiveRecord's partial
    /// writes: a concurrent change of another column is kept), and `updated_at`.
    #[tracing::instrument(target = "traced", name = "legacy db update_profile_columns", skip_all, fields(otel.kind = "client", db.namespace = "legacy"))]
    pub async fn update_profile_columns<'c, E: Executor<'c, Database = Any>>(
        &self,
        ex: E,
        id: i64,
        columns: &[(ProfileColumn, Option<&str>)],
        now: Timestamp,
    ) -> Result<(), LegacyError> {
        if columns.is_empty() {
            return Ok(());
        }
        let mut set: Vec<String> = columns
            .iter()
            .enumerate()
            .map(|(i, (column, _))| format!("{} = ${}", column.name(), i + 1))
            .collect();
        set.push(format!("updated_at = {}", self.ts_param(columns.len() + 1)));
        let sql = format!(
            "UPDATE users SET {} WHERE id = ${} AND deleted_at IS NULL",
            set.join(", "),
            columns.len() + 2
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for (_, value) in columns {
            q = q.bind(value.map(str::to_owned));
        }
        q.bind(now.to_db_text())
            .bind(id)
            .execute(ex)
            .await
            .map_err(LegacyError::from_write)?;
        Ok(())
    }

    #[tracing::instrument(target = "traced", name = "legacy db update_profile", skip_all, fields(otel.kind = "client", db.namespace = "legacy"))]
    pub async fn update_profile<'c, E: Executor<'c, Database = Any>>(
        &self,
        ex: E,
        u: &LegacyUser,
    ) -> Result<(), LegacyError> {
        let sql = format!(
            "UPDATE users SET nickname = $1, phone_number = $2, profile_image_url = $3, updated_at = {} WHERE id = $5",
            self.ts_param(4)
        );
        sqlx::query(AssertSqlSafe(sql))
            .bind(&u.nickname)
            .bind(&u.phone_number)
            .bind(&u.profile_image_url)
            .bind(u.updated_at.to_db_text())
            .bind(u.id)
            .execute(ex)
            .await
            .map_err(LegacyError::from_write)?;
        Ok(())
    }

    #[tracing::instrument(target = "traced", name = "legacy db update_digest", skip_all, fields(otel.kind = "client", db.namespace = "legacy"))]
    pub async fn update_digest<'c, E: Executor<'c, Database = Any>>(
        &self,
        ex: E,
        id: i64,
        digest: &str,
        now: Timestamp,
    ) -> Result<(), LegacyError> {
        let sql = format!(
            "UPDATE users SET password_digest = $1, updated_at = {} WHERE id = $3",
            self.ts_param(2)
        );
        sqlx::query(AssertSqlSafe(sql))
            .bind(digest)
            .bind(now.to_db_text())
            .bind(id)
            .execute(ex)
            .await?;
        Ok(())
    }

    /// The scrub of a withdrawal (`User#withdraw!`); `digest` is a bcrypt digest of a
    /// secret nobody knows.
    #[tracing::instrument(target = "traced", name = "legacy db withdraw_user", skip_all, fields(otel.kind = "client", db.namespace = "legacy"))]
    pub async fn withdraw_user<'c, E: Executor<'c, Database = Any>>(
        &self,
        ex: E,
        id: i64,
        digest: &str,
        now: Timestamp,
    ) -> Result<(), LegacyError> {
        let sql = format!(
            "UPDATE users SET email = $1, nickname = '(deleted)', phone_number = NULL, profile_image_url = NULL, \
             password_digest = $2, deleted_at = {}, updated_at = {} WHERE id = $5",
            self.ts_param(3),
            self.ts_param(4)
        );
        let now = now.to_db_text();
        sqlx::query(AssertSqlSafe(sql))
            .bind(format!("deleted-{id}@invalid"))
            .bind(digest)
            .bind(&now)
            .bind(&now)
            .bind(id)
            .execute(ex)
            .await?;
        Ok(())
    }
}
