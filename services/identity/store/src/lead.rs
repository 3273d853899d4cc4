//! One replica at a time for cluster-wide jobs (the continuous sync): on PostgreSQL a
//! session-level advisory lock held on a connection of its own, released when the
//! leader stops or its connection dies, so that another replica takes over at its next
//! try. On SQLite (one process beside its file) the caller always leads.

use sqlx::{AnyConnection, Connection};

use crate::{Backend, Store, StoreError};

/// Held while this replica leads a job.
pub struct Leadership {
    /// PostgreSQL: the connection holding the advisory lock.
    conn: Option<AnyConnection>,
}

impl Store {
    /// Takes the lead of job `key` if no other replica holds it.
    #[tracing::instrument(target = "traced", name = "identity db try_lead", skip_all, fields(otel.kind = "client", db.namespace = "identity"))]
    pub async fn try_lead(&self, key: i64) -> Result<Option<Leadership>, StoreError> {
        if self.backend() == Backend::Sqlite {
            return Ok(Some(Leadership { conn: None }));
        }
        // Out of the pool: the lock lives as long as this connection.
        let mut conn = self.pool().acquire().await?.detach();
        let taken: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(key)
            .fetch_one(&mut conn)
            .await?;
        if taken {
            Ok(Some(Leadership { conn: Some(conn) }))
        } else {
            let _ = conn.close().await;
            Ok(None)
        }
    }
}

impl Leadership {
    /// Whether the lead is still held (its connection alive).
    #[tracing::instrument(target = "traced", name = "identity db holds", skip_all, fields(otel.kind = "client", db.namespace = "identity"))]
    pub async fn holds(&mut self) -> bool {
        match &mut self.conn {
            None => true,
            Some(conn) => conn.ping().await.is_ok(),
        }
    }

    /// Gives the lead up at once (dropping it does too, when the connection closes).
    #[tracing::instrument(target = "traced", name = "identity db release", skip_all, fields(otel.kind = "client", db.namespace = "identity"))]
    pub async fn release(self) {
        if let Some(conn) = self.conn {
            let _ = conn.close().await;
        }
    }
}
