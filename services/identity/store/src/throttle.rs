//! Counters of failed log-ins, kept in the shared database so that every replica counts
//! the same attempts, and the clients that a member has logged in from successfully.

use crate::{Store, StoreError, Tx};

impl Store {
    /// The failures recorded for each of `buckets` in the windows starting at
    /// `windows[0]` (the current one) and `windows[1]` (the previous one), in one query.
    #[tracing::instrument(target = "traced", name = "identity db failures", skip_all, fields(otel.kind = "client", db.namespace = "identity"))]
    pub async fn failures(
        &self,
        buckets: &[String; 3],
        windows: [i64; 2],
    ) -> Result<[[i64; 2]; 3], StoreError> {
        let rows: Vec<(String, i64, i64)> = self
            .read(|pool| {
                sqlx::query_as(
                    "SELECT bucket, window_start, failures FROM login_failures \
             WHERE bucket IN ($1, $2, $3) AND window_start IN ($4, $5)",
                )
                .bind(&buckets[0])
                .bind(&buckets[1])
                .bind(&buckets[2])
                .bind(windows[0])
                .bind(windows[1])
                .fetch_all(pool)
            })
            .await?;
        let mut out = [[0i64; 2]; 3];
        for (bucket, window, n) in rows {
            if let (Some(b), Some(w)) = (
                buckets.iter().position(|x| *x == bucket),
                windows.iter().position(|x| *x == window),
            ) {
                out[b][w] = n;
            }
        }
        Ok(out)
    }

    /// Whether `client` logged in to this member successfully since `since`.
    #[tracing::instrument(target = "traced", name = "identity db is_known_client", skip_all, fields(otel.kind = "client", db.namespace = "identity"))]
    pub async fn is_known_client(
        &self,
        member_id: i64,
        client: &str,
        since: i64,
    ) -> Result<bool, StoreError> {
        let n: i64 = self.read(|pool| sqlx::query_scalar(
            "SELECT COUNT(*) FROM known_clients WHERE member_id = $1 AND client = $2 AND last_success_at >= $3",
        )
        .bind(member_id)
        .bind(client)
        .bind(since)
        .fetch_one(pool))
        .await?;
        Ok(n > 0)
    }

    /// Drops counters of windows that ended before `before` (housekeeping).
    #[tracing::instrument(target = "traced", name = "identity db prune_failures", skip_all, fields(otel.kind = "client", db.namespace = "identity"))]
    pub async fn prune_failures(&self, before: i64) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM login_failures WHERE window_start < $1")
            .bind(before)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected())
    }
}

impl Tx {
    /// Counts one failure in `bucket` for the window starting at `window`.
    #[tracing::instrument(target = "traced", name = "identity db record_failure", skip_all, fields(otel.kind = "client", db.namespace = "identity"))]
    pub async fn record_failure(&mut self, bucket: &str, window: i64) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO login_failures (bucket, window_start, failures) VALUES ($1, $2, 1) \
             ON CONFLICT (bucket, window_start) DO UPDATE SET failures = login_failures.failures + 1",
        )
        .bind(bucket)
        .bind(window)
        .execute(self.conn())
        .await?;
        Ok(())
    }

    /// Remembers a successful log-in of `member_id` from `client`.
    #[tracing::instrument(target = "traced", name = "identity db remember_client", skip_all, fields(otel.kind = "client", db.namespace = "identity"))]
    pub async fn remember_client(
        &mut self,
        member_id: i64,
        client: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO known_clients (member_id, client, last_success_at) VALUES ($1, $2, $3) \
             ON CONFLICT (member_id, client) DO UPDATE SET last_success_at = $3",
        )
        .bind(member_id)
        .bind(client)
        .bind(now)
        .execute(self.conn())
        .await?;
        Ok(())
    }
}
