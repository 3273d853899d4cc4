//! The change log other services follow: every change of a member (created, updated,
//! withdrawn), numbered in commit order (see the migration `0005_member_changes`), written
//! by the transaction that made the change, at its commit; and the wake-ups of those who
//! wait for the next change: PostgreSQL's `LISTEN`/`NOTIFY` across replicas, an
//! in-process signal besides, and polling as the floor (SQLite, or a lost listener).

use std::time::Duration;

use sqlx::Row;
use tokio::sync::watch;

use crate::rows::{MemberRow, member_columns};
use crate::{Backend, Store, StoreError, Tx, now_micros, values_list};

/// What happened to a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Created,
    Updated,
    Withdrawn,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Created => "created",
            ChangeKind::Updated => "updated",
            ChangeKind::Withdrawn => "withdrawn",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "created" => Some(ChangeKind::Created),
            "updated" => Some(ChangeKind::Updated),
            "withdrawn" => Some(ChangeKind::Withdrawn),
            _ => None,
        }
    }
}

/// One change, with the member as it is now (none once withdrawn: no personal data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeRow {
    pub seq: i64,
    pub member_id: i64,
    pub kind: ChangeKind,
    /// Microseconds since the epoch, at the change's commit.
    pub changed_at: i64,
    pub member: Option<MemberRow>,
}

/// The log's bounds: the first change still kept, and the last one written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChangeBounds {
    /// The first kept (`last + 1` when none is kept).
    pub first: i64,
    pub last: i64,
}

/// Pending changes of a transaction, written when it commits.
#[derive(Debug, Default)]
pub(crate) struct PendingChanges(Vec<(i64, ChangeKind)>);

impl PendingChanges {
    /// Notes a change; several of one member in one transaction are one change (a
    /// creation stays a creation, a withdrawal wins).
    pub(crate) fn note(&mut self, member_id: i64, kind: ChangeKind) {
        match self.0.iter_mut().find(|(id, _)| *id == member_id) {
            Some((_, seen)) => {
                *seen = match (*seen, kind) {
                    (_, ChangeKind::Withdrawn) | (ChangeKind::Withdrawn, _) => {
                        ChangeKind::Withdrawn
                    }
                    (ChangeKind::Created, _) | (_, ChangeKind::Created) => ChangeKind::Created,
                    (ChangeKind::Updated, ChangeKind::Updated) => ChangeKind::Updated,
                }
            }
            None => self.0.push((member_id, kind)),
        }
    }
}

/// What a member's row going from `before` to `after` is to those who follow the log:
/// nothing when no column they can see moved.
pub(crate) fn change_between(before: Option<&MemberRow>, after: &MemberRow) -> Option<ChangeKind> {
    let Some(before) = before else {
        return Some(if after.is_withdrawn() {
            ChangeKind::Withdrawn
        } else {
            ChangeKind::Created
        });
    };
    if after.is_withdrawn() {
        return (!before.is_withdrawn()).then_some(ChangeKind::Withdrawn);
    }
    fn seen(m: &MemberRow) -> impl PartialEq + '_ {
        (
            &m.email,
            &m.nickname,
            &m.phone_number,
            &m.profile_image_url,
            m.created_at,
            m.updated_at,
            m.deleted_at,
        )
    }
    (seen(before) != seen(after)).then_some(ChangeKind::Updated)
}

/// PostgreSQL: the counter moved, the changes written and every listener told, in one
/// statement, the transaction's last before its commit: the counter's row lock is held
/// for one round trip and the commit's.
const WRITE_CHANGES_POSTGRES: &str = "WITH c AS (\
        UPDATE member_change_counter SET last_seq = last_seq + $1 WHERE id = 1 RETURNING last_seq\
    ), written AS (\
        INSERT INTO member_changes (seq, member_id, kind, changed_at) \
        SELECT c.last_seq - $1 + x.ord, x.member_id, x.kind, $4 \
        FROM c, unnest(CAST($2 AS bigint[]), CAST($3 AS text[])) WITH ORDINALITY AS x(member_id, kind, ord)\
    ) \
    SELECT pg_notify('identity_member_changes', CAST(last_seq AS text)) FROM c";

impl Tx {
    /// Notes a change of a member, written to the log when the transaction commits.
    pub(crate) fn note_change(&mut self, member_id: i64, kind: ChangeKind) {
        self.changes.note(member_id, kind);
        if kind == ChangeKind::Withdrawn {
            // A withdrawn member's sessions are over, however the withdrawal came
            // (the legacy sync does not end them one by one).
            self.ends.note_all();
        }
    }

    /// Writes the pending changes, numbered after the last one, as the transaction's
    /// last statements before its commit (the counter's lock is held until then).
    /// Whether there were any.
    pub(crate) async fn write_changes(&mut self) -> Result<bool, StoreError> {
        let pending = std::mem::take(&mut self.changes.0);
        if pending.is_empty() {
            return Ok(false);
        }
        let count = pending.len() as i64;
        let at = now_micros();
        match self.backend {
            Backend::Postgres => {
                let ids: Vec<String> = pending.iter().map(|(id, _)| id.to_string()).collect();
                let kinds: Vec<&str> = pending.iter().map(|(_, k)| k.as_str()).collect();
                sqlx::query(WRITE_CHANGES_POSTGRES)
                    .bind(count)
                    .bind(format!("{{{}}}", ids.join(",")))
                    .bind(format!("{{{}}}", kinds.join(",")))
                    .bind(at)
                    .execute(self.conn())
                    .await?;
            }
            Backend::Sqlite => {
                // The transaction holds the database's write lock: nobody numbers between.
                let last: i64 = sqlx::query_scalar(
                    "UPDATE member_change_counter SET last_seq = last_seq + $1 WHERE id = 1 RETURNING last_seq",
                )
                .bind(count)
                .fetch_one(self.conn())
                .await?;
                for (chunk_index, chunk) in pending.chunks(200).enumerate() {
                    let sql = format!(
                        "INSERT INTO member_changes (seq, member_id, kind, changed_at) VALUES {}",
                        values_list(chunk.len(), 4)
                    );
                    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
                    for (offset, (member_id, kind)) in chunk.iter().enumerate() {
                        let index = (chunk_index * 200 + offset) as i64;
                        q = q
                            .bind(last - count + 1 + index)
                            .bind(*member_id)
                            .bind(kind.as_str())
                            .bind(at);
                    }
                    q.execute(self.conn()).await?;
                }
            }
        }
        Ok(true)
    }
}

impl Store {
    /// Up to `limit` changes after `after`, in order, each with its member as it is now.
    #[tracing::instrument(target = "traced", name = "identity db changes_after", skip_all, fields(otel.kind = "client", db.namespace = "identity"))]
    pub async fn changes_after(
        &self,
        after: i64,
        limit: i64,
    ) -> Result<Vec<ChangeRow>, StoreError> {
        let sql = format!(
            "SELECT c.seq, c.member_id AS change_member_id, c.kind, c.changed_at, {} \
             FROM member_changes c LEFT JOIN members m ON m.id = c.member_id \
             WHERE c.seq > $1 ORDER BY c.seq LIMIT $2",
            member_columns!()
        );
        let rows = self
            .read(|pool| {
                sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                    .bind(after)
                    .bind(limit)
                    .fetch_all(pool)
            })
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let kind: String = row.try_get("kind")?;
            let kind = ChangeKind::parse(&kind)
                .ok_or_else(|| StoreError::Config(format!("unknown change kind {kind:?}")))?;
            let present: Option<i64> = row.try_get("id")?;
            let member = match present {
                Some(_) => Some(MemberRow::from_row(row)?),
                None => None,
            };
            out.push(ChangeRow {
                seq: row.try_get("seq")?,
                member_id: row.try_get("change_member_id")?,
                kind,
                changed_at: row.try_get("changed_at")?,
                // Once withdrawn, a member's row is scrubbed: nothing of it is passed on.
                member: member.filter(|m| !m.is_withdrawn()),
            });
        }
        Ok(out)
    }

    /// The first change kept and the last one written.
    #[tracing::instrument(target = "traced", name = "identity db change_bounds", skip_all, fields(otel.kind = "client", db.namespace = "identity"))]
    pub async fn change_bounds(&self) -> Result<ChangeBounds, StoreError> {
        let last: i64 = self
            .read(|pool| {
                sqlx::query_scalar("SELECT last_seq FROM member_change_counter WHERE id = 1")
                    .fetch_one(pool)
            })
            .await?;
        let first: Option<i64> = self
            .read(|pool| sqlx::query_scalar("SELECT MIN(seq) FROM member_changes").fetch_one(pool))
            .await?;
        Ok(ChangeBounds {
            first: first.unwrap_or(last + 1),
            last,
        })
    }

    /// Drops the changes older than `retention`; how many. Only ever a prefix of the
    /// log: up to the last change that old, so that replicas' clocks apart cannot leave
    /// a hole a follower would take for lost changes.
    #[tracing::instrument(target = "traced", name = "identity db prune_changes", skip_all, fields(otel.kind = "client", db.namespace = "identity"))]
    pub async fn prune_changes(&self, retention: Duration) -> Result<u64, StoreError> {
        let before =
            now_micros().saturating_sub(retention.as_micros().min(i64::MAX as u128) as i64);
        Ok(sqlx::query(
            "DELETE FROM member_changes WHERE seq <= (SELECT MAX(seq) FROM member_changes WHERE changed_at < $1)",
        )
            .bind(before)
            .execute(self.pool())
            .await?
            .rows_affected())
    }

    /// A receiver whose value moves when a change may have been written; on PostgreSQL
    /// the first call starts listening for other replicas' changes.
    pub fn watch_changes(&self) -> watch::Receiver<u64> {
        self.listen();
        self.signals.changes.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_changes_of_one_member_in_one_transaction_are_one() {
        let mut p = PendingChanges::default();
        p.note(1, ChangeKind::Created);
        p.note(1, ChangeKind::Updated);
        p.note(2, ChangeKind::Updated);
        p.note(2, ChangeKind::Withdrawn);
        p.note(3, ChangeKind::Updated);
        p.note(3, ChangeKind::Updated);
        assert_eq!(
            p.0,
            vec![
                (1, ChangeKind::Created),
                (2, ChangeKind::Withdrawn),
                (3, ChangeKind::Updated)
            ]
        );
    }
}
