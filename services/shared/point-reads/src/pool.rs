//! A pool of connections in PostgreSQL's or SQLite's own driver, for the hot reads.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

use crate::Engine;

/// The readers' own connections, in their engine's driver, and the runtime they were
/// opened on.
#[derive(Clone)]
pub struct ReadPool {
    connections: Connections,
    /// Where the queries run. A connection's socket is driven by the runtime that opened
    /// it: a query from a serving thread (see
    /// [`serve_from_this_thread`](crate::serve_from_this_thread)) on a connection another
    /// thread opened waited for that thread to look at its sockets, which a busy
    /// single-threaded runtime does only every so many tasks (BatchGetMembers of 100 at
    /// half its rate). They all run here, so every connection is opened and driven here.
    home: tokio::runtime::Handle,
}

#[derive(Clone)]
enum Connections {
    Postgres(sqlx::PgPool),
    Sqlite(sqlx::SqlitePool),
}

/// The rows of a query, in their engine's driver.
pub enum Rows {
    Postgres(Vec<sqlx::postgres::PgRow>),
    Sqlite(Vec<sqlx::sqlite::SqliteRow>),
}

impl ReadPool {
    /// Connects `connections` readers to `url` (an engine's URL: `postgres://...`,
    /// `sqlite://FILE...`), on the current runtime. No ping before each query: a broken
    /// connection fails its query and leaves the pool.
    pub async fn connect(
        url: &str,
        engine: Engine,
        connections: u32,
        acquire_timeout: Duration,
    ) -> Result<Self, sqlx::Error> {
        let connections = match engine {
            Engine::Postgres => Connections::Postgres(
                PgPoolOptions::new()
                    .max_connections(connections)
                    .acquire_timeout(acquire_timeout)
                    .test_before_acquire(false)
                    .connect_with(PgConnectOptions::from_str(url)?)
                    .await?,
            ),
            Engine::Sqlite => Connections::Sqlite(
                SqlitePoolOptions::new()
                    .max_connections(connections)
                    .acquire_timeout(acquire_timeout)
                    .test_before_acquire(false)
                    .connect_with(
                        SqliteConnectOptions::from_str(url)?.busy_timeout(Duration::from_secs(5)),
                    )
                    .await?,
            ),
        };
        Ok(Self {
            connections,
            home: tokio::runtime::Handle::current(),
        })
    }

    /// Every row of `sql` with its one parameter, read on the pool's runtime (see the
    /// `home` field).
    pub async fn fetch_all(&self, sql: String, param: String) -> Result<Rows, sqlx::Error> {
        let connections = self.connections.clone();
        let query = async move {
            match connections {
                Connections::Postgres(pool) => sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(param)
                    .fetch_all(&pool)
                    .await
                    .map(Rows::Postgres),
                Connections::Sqlite(pool) => sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(param)
                    .fetch_all(&pool)
                    .await
                    .map(Rows::Sqlite),
            }
        };
        if !crate::serving_thread() {
            return query.await;
        }
        // A caller that gives up (its deadline) ends the query with it, as it would
        // where it ran itself: no connection stays held by a query nobody waits for.
        let query = tokio_util::task::AbortOnDropHandle::new(self.home.spawn(query));
        // A runtime that has ended has closed what it drove.
        query.await.unwrap_or(Err(sqlx::Error::PoolClosed))
    }
}

/// Runs `sql` with its one parameter on a [`ReadPool`] and maps each row with `map`
/// (a row of either engine's driver: decode it with [`Decodes`](crate::Decodes)),
/// whichever the engine; in a function whose error converts from `sqlx::Error`.
#[macro_export]
macro_rules! rows_of {
    ($pool:expr, $sql:expr, $param:expr, |$row:ident| $map:expr) => {
        match $pool.fetch_all($sql, $param).await? {
            $crate::Rows::Postgres(rows) => rows
                .iter()
                .map(|$row| $map)
                .collect::<Result<Vec<_>, _>>()?,
            $crate::Rows::Sqlite(rows) => rows
                .iter()
                .map(|$row| $map)
                .collect::<Result<Vec<_>, _>>()?,
        }
    };
}
