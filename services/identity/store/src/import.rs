//! Writing members that come from the legacy database (backfill and continuous sync):
//! upserts by id in batches, the migration's key-value state, keeping the id sequence
//! above the imported ids, and reading members in id order for verification.

use sqlx::AssertSqlSafe;

use crate::changes::{ChangeKind, change_between};
use crate::rows::{MemberRow, member_columns};
use crate::{Backend, Store, StoreError, Tx};

/// Columns per member row in an upsert.
const COLUMNS: usize = 9;

impl Store {
    /// A value of the migration's state.
    #[tracing::instrument(target = "traced", name = "identity db migration_value", skip_all, fields(otel.kind = "client", db.namespace = "identity"))]
    pub async fn migration_value(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .read(|pool| {
                sqlx::query_scalar("SELECT value FROM migration_state WHERE key = $1")
                    .bind(key)
                    .fetch_all(pool)
            })
            .await?
            .into_iter()
            .next())
    }

    /// The legacy digests recorded for members with ids in `from..=to`.
    #[tracing::instrument(target = "traced", name = "identity db legacy_digests_between", skip_all, fields(otel.kind = "client", db.namespace = "identity"))]
    pub async fn legacy_digests_between(
        &self,
        from: i64,
        to: i64,
    ) -> Result<Vec<(i64, String)>, StoreError> {
        self.read(|pool| sqlx::query_as("SELECT member_id, digest FROM legacy_digests WHERE member_id BETWEEN $1 AND $2 ORDER BY member_id")
            .bind(from)
            .bind(to)
            .fetch_all(pool))
            .await
    }

    /// Members with `id > after`, in id order, at most `limit` (withdrawn ones included).
    #[tracing::instrument(target = "traced", name = "identity db members_after", skip_all, fields(otel.kind = "client", db.namespace = "identity"))]
    pub async fn members_after(
        &self,
        after: i64,
        limit: i64,
    ) -> Result<Vec<MemberRow>, StoreError> {
        let sql = concat!(
            "SELECT ",
            member_columns!(),
            " FROM members m WHERE m.id > $1 ORDER BY m.id LIMIT $2"
        );
        let rows = self
            .read(|pool| sqlx::query(sql).bind(after).bind(limit).fetch_all(pool))
            .await?;
        rows.iter()
            .map(|r| MemberRow::from_row(r).map_err(StoreError::from))
            .collect()
    }

    /// The members among `ids` (withdrawn ones included) with the legacy digest last
    /// imported for each: the continuous sync compares a batch of legacy rows at once.
    #[tracing::instrument(target = "traced", name = "identity db members_with_legacy_digests", skip_all, fields(otel.kind = "client", db.namespace = "identity"))]
    pub async fn members_with_legacy_digests(
        &self,
        ids: &[i64],
    ) -> Result<std::collections::HashMap<i64, (MemberRow, Option<String>)>, StoreError> {
        let rows = self
            .read(|pool| async move {
                let mut conn = pool.acquire().await?;
                crate::fetch_for_ids(&mut conn, ids, |list| {
                    format!(
                        "SELECT {}, d.digest AS legacy_digest FROM members m LEFT JOIN legacy_digests d ON d.member_id = m.id WHERE m.id IN ({list})",
                        member_columns!()
                    )
                })
                .await
            })
            .await?;
        let mut out = std::collections::HashMap::with_capacity(rows.len());
        for row in rows {
            let member = MemberRow::from_row(&row)?;
            let digest: Option<String> = sqlx::Row::try_get(&row, "legacy_digest")?;
            out.insert(member.id, (member, digest));
        }
        Ok(out)
    }

    /// The highest member id, 0 when there is none.
    #[tracing::instrument(target = "traced", name = "identity db max_member_id", skip_all, fields(otel.kind = "client", db.namespace = "identity"))]
    pub async fn max_member_id(&self) -> Result<i64, StoreError> {
        let n: Option<i64> = self
            .read(|pool| sqlx::query_scalar("SELECT MAX(id) FROM members").fetch_one(pool))
            .await?;
        Ok(n.unwrap_or(0))
    }

    /// Makes the next allocated member id greater than `id` (after ids came from the
    /// legacy's sequence); never lowers it.
    #[tracing::instrument(target = "traced", name = "identity db bump_member_sequence", skip_all, fields(otel.kind = "client", db.namespace = "identity"))]
    pub async fn bump_member_sequence(&self, id: i64) -> Result<(), StoreError> {
        match self.backend() {
            Backend::Postgres => {
                // Only ever raised: nextval takes one id (a gap of one), never gives back.
                sqlx::query(
                    "SELECT setval(seq, GREATEST($1, nextval(seq))) FROM pg_get_serial_sequence('members', 'id') AS seq",
                )
                .bind(id.max(1))
                .execute(self.pool())
                .await?;
            }
            Backend::Sqlite => {
                // AUTOINCREMENT keeps the highest id ever inserted in sqlite_sequence.
                sqlx::query("UPDATE sqlite_sequence SET seq = MAX(seq, $1) WHERE name = 'members'")
                    .bind(id)
                    .execute(self.pool())
                    .await?;
            }
        }
        Ok(())
    }
}

impl Tx {
    #[tracing::instrument(target = "traced", name = "identity db set_migration_value", skip_all, fields(otel.kind = "client", db.namespace = "identity"))]
    pub async fn set_migration_value(&mut self, key: &str, value: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO migration_state (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = $2",
        )
        .bind(key)
        .bind(value)
        .execute(self.conn())
        .await?;
        Ok(())
    }

    /// Inserts or replaces members by id, the legacy's values winning; each member whose
    /// visible columns it changes goes to the change log.
    #[tracing::instrument(target = "traced", name = "identity db upsert_members", skip_all, fields(otel.kind = "client", db.namespace = "identity"))]
    pub async fn upsert_members(&mut self, rows: &[MemberRow]) -> Result<(), StoreError> {
        for chunk in rows.chunks(500) {
            let ids: Vec<i64> = chunk.iter().map(|m| m.id).collect();
            let before = self.members_by_ids(&ids).await?;
            for m in chunk {
                if let Some(kind) = change_between(before.get(&m.id), m) {
                    self.note_change(m.id, kind);
                }
            }
            let sql = format!(
                "INSERT INTO members (id, email, password_hash, nickname, phone_number, profile_image_url, created_at, updated_at, deleted_at) \
                 VALUES {} ON CONFLICT (id) DO UPDATE SET email = excluded.email, password_hash = excluded.password_hash, \
                 nickname = excluded.nickname, phone_number = excluded.phone_number, profile_image_url = excluded.profile_image_url, \
                 created_at = excluded.created_at, updated_at = excluded.updated_at, deleted_at = excluded.deleted_at",
                crate::values_list(chunk.len(), COLUMNS)
            );
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for m in chunk {
                q = q
                    .bind(m.id)
                    .bind(&m.email)
                    .bind(&m.password_hash)
                    .bind(&m.nickname)
                    .bind(&m.phone_number)
                    .bind(&m.profile_image_url)
                    .bind(m.created_at)
                    .bind(m.updated_at)
                    .bind(m.deleted_at);
            }
            q.execute(self.conn())
                .await
                .map_err(StoreError::from_write)?;
            let sql = format!(
                "INSERT INTO legacy_digests (member_id, digest) VALUES {} \
                 ON CONFLICT (member_id) DO UPDATE SET digest = excluded.digest",
                crate::values_list(chunk.len(), 2)
            );
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for m in chunk {
                q = q.bind(m.id).bind(&m.password_hash);
            }
            q.execute(self.conn()).await?;
        }
        Ok(())
    }

    /// The members among `ids` as this transaction sees them, by id.
    async fn members_by_ids(
        &mut self,
        ids: &[i64],
    ) -> Result<std::collections::HashMap<i64, MemberRow>, StoreError> {
        let rows = crate::fetch_for_ids(self.conn(), ids, |list| {
            format!(
                "SELECT {} FROM members m WHERE m.id IN ({list})",
                member_columns!()
            )
        })
        .await?;
        rows.iter()
            .map(|r| {
                MemberRow::from_row(r)
                    .map(|m| (m.id, m))
                    .map_err(StoreError::from)
            })
            .collect()
    }

    /// The legacy digest last imported for a member.
    #[tracing::instrument(target = "traced", name = "identity db legacy_digest", skip_all, fields(otel.kind = "client", db.namespace = "identity"))]
    pub async fn legacy_digest(&mut self, id: i64) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT digest FROM legacy_digests WHERE member_id = $1")
                .bind(id)
                .fetch_all(self.conn())
                .await?
                .into_iter()
                .next(),
        )
    }

    /// Records the legacy digest of a member (write-through of a password change).
    #[tracing::instrument(target = "traced", name = "identity db set_legacy_digest", skip_all, fields(otel.kind = "client", db.namespace = "identity"))]
    pub async fn set_legacy_digest(&mut self, id: i64, digest: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO legacy_digests (member_id, digest) VALUES ($1, $2) ON CONFLICT (member_id) DO UPDATE SET digest = $2",
        )
        .bind(id)
        .bind(digest)
        .execute(self.conn())
        .await?;
        Ok(())
    }

    /// One member from the legacy, freeing its email and phone number from any other row
    /// first (the legacy is the system of record: a value it moved moves here too).
    /// `legacy_digest` is recorded as the legacy's digest; `m.password_hash` is what the
    /// identity service keeps (the same digest, or its own re-hash of the same password).
    #[tracing::instrument(target = "traced", name = "identity db replace_member", skip_all, fields(otel.kind = "client", db.namespace = "identity"))]
    pub async fn replace_member(
        &mut self,
        m: &MemberRow,
        legacy_digest: &str,
    ) -> Result<(), StoreError> {
        let mut freed: Vec<i64> = sqlx::query_scalar(
            "UPDATE members SET email = 'moved-' || id || '@invalid' WHERE email = $1 AND id <> $2 RETURNING id",
        )
        .bind(&m.email)
        .bind(m.id)
        .fetch_all(self.conn())
        .await?;
        if let Some(phone) = &m.phone_number {
            freed.extend(
                sqlx::query_scalar::<_, i64>(
                    "UPDATE members SET phone_number = NULL WHERE phone_number = $1 AND id <> $2 RETURNING id",
                )
                .bind(phone)
                .bind(m.id)
                .fetch_all(self.conn())
                .await?,
            );
        }
        for id in freed {
            self.note_change(id, ChangeKind::Updated);
        }
        self.upsert_members(std::slice::from_ref(m)).await?;
        self.set_legacy_digest(m.id, legacy_digest).await
    }
}
