//! Schema migrations: numbered SQL files, one per engine, applied in order inside a
//! transaction each and recorded in `identity_schema_migrations`. On PostgreSQL an
//! advisory lock keeps replicas that start together from applying one twice.

use sqlx::{AnyPool, AssertSqlSafe, Executor};

use crate::{Backend, StoreError};

struct Migration {
    version: i64,
    sqlite: &'static str,
    postgres: &'static str,
}

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        sqlite: include_str!("../migrations/sqlite/0001_members_and_sessions.sql"),
        postgres: include_str!("../migrations/postgres/0001_members_and_sessions.sql"),
    },
    Migration {
        version: 2,
        sqlite: include_str!("../migrations/sqlite/0002_migration_state.sql"),
        postgres: include_str!("../migrations/postgres/0002_migration_state.sql"),
    },
    Migration {
        version: 3,
        sqlite: include_str!("../migrations/sqlite/0003_legacy_sessions.sql"),
        postgres: include_str!("../migrations/postgres/0003_legacy_sessions.sql"),
    },
    Migration {
        version: 4,
        sqlite: include_str!("../migrations/sqlite/0004_imported_legacy_sessions.sql"),
        postgres: include_str!("../migrations/postgres/0004_imported_legacy_sessions.sql"),
    },
    Migration {
        version: 5,
        sqlite: include_str!("../migrations/sqlite/0005_member_changes.sql"),
        postgres: include_str!("../migrations/postgres/0005_member_changes.sql"),
    },
];

/// Arbitrary constant naming our advisory lock.
const LOCK_KEY: i64 = 0x1d_e471_7a11;

#[tracing::instrument(target = "traced", name = "identity db run", skip_all, fields(otel.kind = "client", db.namespace = "identity"))]
pub async fn run(pool: &AnyPool, backend: Backend) -> Result<(), StoreError> {
    let mut conn = pool.acquire().await?;
    if backend == Backend::Postgres {
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(LOCK_KEY)
            .execute(&mut *conn)
            .await?;
    }
    let result = apply(&mut conn, backend).await;
    if backend == Backend::Postgres {
        sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(LOCK_KEY)
            .execute(&mut *conn)
            .await?;
    }
    result
}

async fn apply(conn: &mut sqlx::AnyConnection, backend: Backend) -> Result<(), StoreError> {
    conn.execute(
        "CREATE TABLE IF NOT EXISTS identity_schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
    )
    .await?;
    let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM identity_schema_migrations")
        .fetch_all(&mut *conn)
        .await?;
    for m in MIGRATIONS.iter().filter(|m| !applied.contains(&m.version)) {
        let sql = match backend {
            Backend::Sqlite => m.sqlite,
            Backend::Postgres => m.postgres,
        };
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut *tx).await?;
        let now = crate::now_micros();
        sqlx::query("INSERT INTO identity_schema_migrations (version, applied_at) VALUES ($1, $2)")
            .bind(m.version)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        tracing::info!(version = m.version, "applied migration");
    }
    Ok(())
}
