//! A pool of connections in PostgreSQL's or SQLite's own driver, for the hot reads.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

use crate::Engine;

/// The readers' own connections, in their engine's driver.
#[derive(Clone)]
pub enum ReadPool {
    Postgres(sqlx::PgPool),
    Sqlite(sqlx::SqlitePool),
}

impl ReadPool {
    /// Connects `connections` readers to `url` (an engine's URL: `postgres://...`,
    /// `sqlite://FILE...`). No ping before each query: a broken connection fails its
    /// query and leaves the pool.
    pub async fn connect(
        url: &str,
        engine: Engine,
        connections: u32,
        acquire_timeout: Duration,
    ) -> Result<Self, sqlx::Error> {
        Ok(match engine {
            Engine::Postgres => ReadPool::Postgres(
                PgPoolOptions::new()
                    .max_connections(connections)
                    .acquire_timeout(acquire_timeout)
                    .test_before_acquire(false)
                    .connect_with(PgConnectOptions::from_str(url)?)
                    .await?,
            ),
            Engine::Sqlite => ReadPool::Sqlite(
                SqlitePoolOptions::new()
                    .max_connections(connections)
                    .acquire_timeout(acquire_timeout)
                    .test_before_acquire(false)
                    .connect_with(
                        SqliteConnectOptions::from_str(url)?.busy_timeout(Duration::from_secs(5)),
                    )
                    .await?,
            ),
        })
    }
}

/// Runs `sql` with its one parameter on a [`ReadPool`] and maps each row with `map`
/// (a row of either engine's driver: decode it with [`Decodes`](crate::Decodes)),
/// whichever the engine; in a function whose error converts from `sqlx::Error`.
#[macro_export]
macro_rules! rows_of {
    ($pool:expr, $sql:expr, $param:expr, |$row:ident| $map:expr) => {
        match $pool {
            $crate::ReadPool::Postgres(pool) => sqlx::query(sqlx::AssertSqlSafe($sql))
                .bind($param)
                .fetch_all(pool)
                .await?
                .iter()
                .map(|$row| $map)
                .collect::<Result<Vec<_>, _>>()?,
            $crate::ReadPool::Sqlite(pool) => sqlx::query(sqlx::AssertSqlSafe($sql))
                .bind($param)
                .fetch_all(pool)
                .await?
                .iter()
                .map(|$row| $map)
                .collect::<Result<Vec<_>, _>>()?,
        }
    };
}
