//! Member queries: look-ups, sign-up, profile changes, password hashes and withdrawal.

use crate::changes::ChangeKind;
use crate::rows::{MemberRow, member_columns};
use crate::{Store, StoreError, Tx};

/// A member to create; `id` is set when it comes from elsewhere (the legacy's sequence).
#[derive(Debug, Clone)]
pub struct NewMember {
    pub id: Option<i64>,
    pub email: String,
    pub password_hash: String,
    pub nickname: String,
    pub phone_number: Option<String>,
    pub profile_image_url: Option<String>,
    pub now: i64,
}

/// A profile change: `None` leaves a field; `Some(None)` clears an optional one.
#[derive(Debug, Clone, Default)]
pub struct ProfileUpdate {
    pub nickname: Option<String>,
    pub phone_number: Option<Option<String>>,
    pub profile_image_url: Option<Option<String>>,
}

/// How a withdrawn member's digest reads: no hash format matches it.
pub const UNUSABLE_PASSWORD_HASH: &str = "!withdrawn";

impl Store {
    /// A member, withdrawn or not (read in a batch with the reads beside it).
    #[tracing::instrument(target = "traced", name = "identity db member_by_id", skip_all, fields(otel.kind = "client", db.namespace = "identity"))]
    pub async fn member_by_id(&self, id: i64) -> Result<Option<MemberRow>, StoreError> {
        Ok(self.reads.members.get(id).await?)
    }

    /// By normalised email, withdrawn members included (their email is scrubbed anyway).
    #[tracing::instrument(target = "traced", name = "identity db member_by_email", skip_all, fields(otel.kind = "client", db.namespace = "identity"))]
    pub async fn member_by_email(&self, email: &str) -> Result<Option<MemberRow>, StoreError> {
        let sql = concat!(
            "SELECT ",
            member_columns!(),
            " FROM members m WHERE m.email = $1"
        );
        let row = self
            .read(|pool| sqlx::query(sql).bind(email).fetch_all(pool))
            .await?
            .into_iter()
            .next();
        Ok(row.as_ref().map(MemberRow::from_row).transpose()?)
    }

    #[tracing::instrument(target = "traced", name = "identity db member_by_phone", skip_all, fields(otel.kind = "client", db.namespace = "identity"))]
    pub async fn member_by_phone(&self, phone: &str) -> Result<Option<MemberRow>, StoreError> {
        let sql = concat!(
            "SELECT ",
            member_columns!(),
            " FROM members m WHERE m.phone_number = $1"
        );
        let row = self
            .read(|pool| sqlx::query(sql).bind(phone).fetch_all(pool))
            .await?
            .into_iter()
            .next();
        Ok(row.as_ref().map(MemberRow::from_row).transpose()?)
    }

    /// The active members among `ids`, ordered by id, each once (read again on another
    /// connection when the first was cut by a restart of the database).
    #[tracing::instrument(target = "traced", name = "identity db active_members_by_ids", skip_all, fields(otel.kind = "client", db.namespace = "identity"))]
    pub async fn active_members_by_ids(&self, ids: &[i64]) -> Result<Vec<MemberRow>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut unique: Vec<i64> = ids.to_vec();
        unique.sort_unstable();
        unique.dedup();
        self.again(|| self.reads.active_members(&unique)).await
    }

    /// Whether another member holds this email (`except` excludes a member's own row).
    #[tracing::instrument(target = "traced", name = "identity db email_taken", skip_all, fields(otel.kind = "client", db.namespace = "identity"))]
    pub async fn email_taken(&self, email: &str, except: Option<i64>) -> Result<bool, StoreError> {
        let n: i64 = self
            .read(|pool| {
                sqlx::query_scalar("SELECT COUNT(*) FROM members WHERE email = $1 AND id <> $2")
                    .bind(email)
                    .bind(except.unwrap_or(0))
                    .fetch_one(pool)
            })
            .await?;
        Ok(n > 0)
    }

    #[tracing::instrument(target = "traced", name = "identity db phone_taken", skip_all, fields(otel.kind = "client", db.namespace = "identity"))]
    pub async fn phone_taken(&self, phone: &str, except: Option<i64>) -> Result<bool, StoreError> {
        let n: i64 = self
            .read(|pool| {
                sqlx::query_scalar(
                    "SELECT COUNT(*) FROM members WHERE phone_number = $1 AND id <> $2",
                )
                .bind(phone)
                .bind(except.unwrap_or(0))
                .fetch_one(pool)
            })
            .await?;
        Ok(n > 0)
    }

    /// The ids of members whose `updated_at` is at or after `since` (microseconds), at
    /// most `limit` of them, in id order (a range of the `updated_at` index).
    #[tracing::instrument(target = "traced", name = "identity db member_ids_changed_since", skip_all, fields(otel.kind = "client", db.namespace = "identity"))]
    pub async fn member_ids_changed_since(
        &self,
        since: i64,
        limit: i64,
    ) -> Result<Vec<i64>, StoreError> {
        self.read(|pool| {
            sqlx::query_scalar("SELECT id FROM members WHERE updated_at >= $1 ORDER BY id LIMIT $2")
                .bind(since)
                .bind(limit)
                .fetch_all(pool)
        })
        .await
    }
}

const MEMBER_BY_ID: &str = concat!(
    "SELECT ",
    member_columns!(),
    " FROM members m WHERE m.id = $1"
);

impl Tx {
    /// A member, locked against other writers until the transaction ends, so that a
    /// change computed from it cannot undo a concurrent one.
    #[tracing::instrument(target = "traced", name = "identity db lock_member", skip_all, fields(otel.kind = "client", db.namespace = "identity"))]
    pub async fn lock_member(&mut self, id: i64) -> Result<Option<MemberRow>, StoreError> {
        let sql = format!("{MEMBER_BY_ID}{}", self.for_update());
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_all(self.conn())
            .await?
            .into_iter()
            .next();
        Ok(row.as_ref().map(MemberRow::from_row).transpose()?)
    }

    /// Member `id`, locked as [`Tx::lock_member`] locks it, and locked even while it is
    /// not here yet (a member the legacy holds and the sync has not brought): two
    /// requests that would both create it from the legacy's row queue here, so that the
    /// later one reads the legacy after the earlier one's row exists. (On SQLite the
    /// transaction holds the database's write lock already.)
    #[tracing::instrument(target = "traced", name = "identity db lock_member_even_absent", skip_all, fields(otel.kind = "client", db.namespace = "identity"))]
    pub async fn lock_member_even_absent(
        &mut self,
        id: i64,
    ) -> Result<Option<MemberRow>, StoreError> {
        if self.backend == crate::Backend::Postgres {
            sqlx::query(
                "SELECT pg_advisory_xact_lock(hashtextextended('identity.member.' || $1, 0))",
            )
            .bind(id.to_string())
            .execute(self.conn())
            .await?;
        }
        self.lock_member(id).await
    }

    #[tracing::instrument(target = "traced", name = "identity db member_by_id", skip_all, fields(otel.kind = "client", db.namespace = "identity"))]
    pub async fn member_by_id(&mut self, id: i64) -> Result<Option<MemberRow>, StoreError> {
        let row = sqlx::query(MEMBER_BY_ID)
            .bind(id)
            .fetch_all(self.conn())
            .await?
            .into_iter()
            .next();
        Ok(row.as_ref().map(MemberRow::from_row).transpose()?)
    }

    /// Inserts a member; a taken email or phone number is `StoreError::Taken`.
    #[tracing::instrument(target = "traced", name = "identity db insert_member", skip_all, fields(otel.kind = "client", db.namespace = "identity"))]
    pub async fn insert_member(&mut self, m: &NewMember) -> Result<MemberRow, StoreError> {
        let id: i64 = match m.id {
            Some(id) => sqlx::query_scalar(
                "INSERT INTO members (id, email, password_hash, nickname, phone_number, profile_image_url, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING id",
            )
            .bind(id),
            None => sqlx::query_scalar(
                "INSERT INTO members (email, password_hash, nickname, phone_number, profile_image_url, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING id",
            ),
        }
        .bind(&m.email)
        .bind(&m.password_hash)
        .bind(&m.nickname)
        .bind(&m.phone_number)
        .bind(&m.profile_image_url)
        .bind(m.now)
        .fetch_one(self.conn())
        .await
        .map_err(StoreError::from_write)?;
        self.note_change(id, ChangeKind::Created);
        Ok(MemberRow {
            id,
            email: m.email.clone(),
            password_hash: m.password_hash.clone(),
            nickname: m.nickname.clone(),
            phone_number: m.phone_number.clone(),
            profile_image_url: m.profile_image_url.clone(),
            created_at: m.now,
            updated_at: m.now,
            deleted_at: None,
        })
    }

    /// Applies a profile change to an active member. `updated_at` moves only when a
    /// value actually changes, as ActiveRecord does. Returns the row as it now is.
    #[tracing::instrument(target = "traced", name = "identity db update_profile", skip_all, fields(otel.kind = "client", db.namespace = "identity"))]
    pub async fn update_profile(
        &mut self,
        current: &MemberRow,
        update: &ProfileUpdate,
        now: i64,
    ) -> Result<MemberRow, StoreError> {
        let mut next = current.clone();
        if let Some(n) = &update.nickname {
            next.nickname = n.clone();
        }
        if let Some(p) = &update.phone_number {
            next.phone_number = p.clone();
        }
        if let Some(u) = &update.profile_image_url {
            next.profile_image_url = u.clone();
        }
        if next == *current {
            return Ok(next);
        }
        // `updated_at` moves with every change, by at least the millisecond the
        // contract renders: two changes at the same instant stay apart in every answer
        // (the proxy tells a write from a later one by it).
        next.updated_at = now.max(current.updated_at + 1000);
        sqlx::query(
            "UPDATE members SET nickname = $1, phone_number = $2, profile_image_url = $3, updated_at = $4 \
             WHERE id = $5 AND deleted_at IS NULL",
        )
        .bind(&next.nickname)
        .bind(&next.phone_number)
        .bind(&next.profile_image_url)
        .bind(next.updated_at)
        .bind(next.id)
        .execute(self.conn())
        .await
        .map_err(StoreError::from_write)?;
        self.note_change(next.id, ChangeKind::Updated);
        Ok(next)
    }

    /// Stores a new password hash (a password change: `updated_at` moves, and those
    /// who keep the member see it).
    #[tracing::instrument(target = "traced", name = "identity db set_password_hash", skip_all, fields(otel.kind = "client", db.namespace = "identity"))]
    pub async fn set_password_hash(
        &mut self,
        id: i64,
        hash: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE members SET password_hash = $1, updated_at = $2 WHERE id = $3 AND deleted_at IS NULL",
        )
        .bind(hash)
        .bind(now)
        .bind(id)
        .execute(self.conn())
        .await?;
        if done.rows_affected() > 0 {
            self.note_change(id, ChangeKind::Updated);
        }
        Ok(())
    }

    /// Replaces the hash a log-in verified with a fresh one of the same password (a
    /// transparent re-hash: `updated_at` stays), only if it is still the one verified:
    /// a password change that committed while the log-in was verifying the old password
    /// must not be overwritten by a hash of that old password.
    #[tracing::instrument(target = "traced", name = "identity db rehash_password", skip_all, fields(otel.kind = "client", db.namespace = "identity"))]
    pub async fn rehash_password(
        &mut self,
        id: i64,
        verified: &str,
        hash: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE members SET password_hash = $1 WHERE id = $2 AND password_hash = $3 AND deleted_at IS NULL",
        )
        .bind(hash)
        .bind(id)
        .bind(verified)
        .execute(self.conn())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Withdrawal: the row stays (the id is never reused), scrubbed of personal data.
    #[tracing::instrument(target = "traced", name = "identity db withdraw", skip_all, fields(otel.kind = "client", db.namespace = "identity"))]
    pub async fn withdraw(&mut self, id: i64, now: i64) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE members SET email = $1, nickname = '(deleted)', phone_number = NULL, profile_image_url = NULL, \
             password_hash = $2, deleted_at = $3, updated_at = $3 WHERE id = $4 AND deleted_at IS NULL",
        )
        .bind(format!("deleted-{id}@invalid"))
        .bind(UNUSABLE_PASSWORD_HASH)
        .bind(now)
        .bind(id)
        .execute(self.conn())
        .await?;
        if done.rows_affected() > 0 {
            self.note_change(id, ChangeKind::Withdrawn);
        }
        Ok(())
    }
}
