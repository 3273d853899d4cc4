//! The identity service's own database: members, sessions, refresh tokens and log-in
//! throttle counters, on SQLite (the embedded default, a file under the data directory)
//! or PostgreSQL (when the URL is `postgres://`), through one set of queries.
//!
//! Reads go straight to the pool; every flow that writes runs in one [`Tx`], which the
//! caller commits, or rolls back for a dry run.
//!
//! The hot point reads are batched (`point_reads`, see `reads`).
//!
//! A read of at most one row takes `fetch_all` and the first row, never
//! `fetch_optional`: the Any driver's `fetch_optional` stops reading after the first row
//! and leaves the connection owing PostgreSQL a `Sync` round trip before its next query
//! (measured: a point read cost two round trips).

mod changes;
mod import;
mod lead;
mod members;
mod migrate;
mod reads;
mod rows;
mod session_cache;
mod sessions;
mod signals;
mod throttle;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{Any, AnyPool, Executor};

pub use changes::{ChangeBounds, ChangeKind, ChangeRow};
pub use lead::Leadership;
pub use members::{NewMember, ProfileUpdate};
pub use rows::{MemberRow, RefreshRow, SessionRow};
pub use session_cache::{LiveSession, SessionCacheState};
pub use sessions::IMPORTED_LEGACY_JTI;

/// Which database engine is behind the URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub(crate) fn engine(self) -> point_reads::Engine {
        match self {
            Backend::Sqlite => point_reads::Engine::Sqlite,
            Backend::Postgres => point_reads::Engine::Postgres,
        }
    }
}

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique column already holds the value: `email` or `phone_number`.
    #[error("{0} is already taken")]
    Taken(&'static str),
    /// The database cannot be reached or refused the operation (logged, never shown).
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A URL or path that cannot be used.
    #[error("database configuration: {0}")]
    Config(String),
    /// The failure of a batched read, shared by every read of the batch.
    #[error("{0}")]
    Shared(std::sync::Arc<StoreError>),
    /// A read got no answer: the database did not answer in time, or too many reads
    /// already wait for it.
    #[error("database read: {0}")]
    Unanswered(&'static str),
}

impl From<point_reads::BatchError<StoreError>> for StoreError {
    fn from(e: point_reads::BatchError<StoreError>) -> Self {
        match e {
            point_reads::BatchError::Failed(shared) => StoreError::Shared(shared),
            point_reads::BatchError::TimedOut => {
                StoreError::Unanswered("no answer within the read timeout")
            }
            point_reads::BatchError::Overloaded => {
                StoreError::Unanswered("too many reads waiting for the database")
            }
            point_reads::BatchError::Stopped => {
                StoreError::Config("the store's reader stopped".into())
            }
        }
    }
}

impl StoreError {
    /// Whether the connection was gone, the statement not run (see
    /// `point_reads::again_while_lost`).
    pub fn connection_lost(&self) -> bool {
        match self {
            StoreError::Database(e) => point_reads::connection_lost(e),
            StoreError::Shared(e) => e.connection_lost(),
            _ => false,
        }
    }

    fn from_write(err: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db) = &err {
            let text = format!("{} {}", db.message(), db.constraint().unwrap_or(""));
            if db.is_unique_violation() || text.contains("UNIQUE") {
                if text.contains("email") {
                    return StoreError::Taken("email");
                }
                if text.contains("phone_number") {
                    return StoreError::Taken("phone_number");
                }
            }
        }
        StoreError::Database(err)
    }
}

/// Pool sizes and timeouts.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Connections in the pool.
    pub max_connections: u32,
    /// How long a request waits for a connection before failing.
    pub acquire_timeout: Duration,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(3),
        }
    }
}

/// The identity database.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// The hot point reads, batched (see `batch`).
    reads: std::sync::Arc<reads::Reads>,
    /// What commits signal: the change log's followers, the session cache.
    signals: std::sync::Arc<signals::Signals>,
    /// Where the database is (PostgreSQL's listener connects on its own).
    url: String,
    /// Since when the database has not answered a readiness ping (see `ready`).
    unanswered_since: std::sync::Arc<std::sync::Mutex<Option<std::time::Instant>>>,
}

/// How long a readiness ping may take (a probe's own timeout is a second or two).
const READY_PING_TIMEOUT: Duration = Duration::from_millis(300);

/// The database URL for the embedded default: a SQLite file under `data_dir`.
pub fn sqlite_url_in(data_dir: &Path) -> String {
    format!(
        "sqlite://{}?mode=rwc",
        data_dir.join("identity.sqlite3").display()
    )
}

impl Store {
    /// Connects, creating a SQLite file (and its directory) if needed, and applies the
    /// migrations that the database does not have yet.
    #[tracing::instrument(target = "traced", name = "identity db connect", skip_all, fields(otel.kind = "client", db.namespace = "identity"))]
    pub async fn connect(url: &str, config: &StoreConfig) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            return Err(StoreError::Config(
                "the URL must start with sqlite: or postgres://".into(),
            ));
        };
        if backend == Backend::Sqlite
            && let Some(parent) =
                sqlite_path(url).and_then(|p| Path::new(p).parent().map(Path::to_path_buf))
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(&parent).map_err(|e| {
                StoreError::Config(format!("cannot create {}: {e}", parent.display()))
            })?;
        }
        let options =
            AnyConnectOptions::from_str(url).map_err(|e| StoreError::Config(e.to_string()))?;
        let pool = AnyPoolOptions::new()
            .max_connections(config.max_connections)
            .acquire_timeout(config.acquire_timeout)
            // No round trip to test a connection before every query (sqlx's default
            // pings first: twice the round trips of a point read). A broken connection
            // fails its query, which the caller sees as the database's failure, and is
            // dropped from the pool.
            .test_before_acquire(false)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL lets readers run beside the one writer; a writer waits for
                        // the lock instead of failing at once.
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA synchronous = NORMAL").await?;
                        conn.execute("PRAGMA busy_timeout = 5000").await?;
                        conn.execute("PRAGMA foreign_keys = ON").await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        let reads = std::sync::Arc::new(reads::Reads::start(url, backend, config).await?);
        let store = Self {
            pool,
            backend,
            reads,
            signals: signals::Signals::new(),
            url: url.to_owned(),
            unanswered_since: std::sync::Arc::default(),
        };
        migrate::run(&store.pool, backend).await?;
        Ok(store)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Whether the database answers (a ping; a connection a restart cut is pinged again
    /// on another).
    #[tracing::instrument(target = "traced", name = "identity db ping", skip_all, fields(otel.kind = "client", db.namespace = "identity"))]
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.read(|pool| sqlx::query("SELECT 1").execute(pool))
            .await?;
        Ok(())
    }

    /// A read on the pool (`read` is given it), read again on another connection when
    /// the first was cut by a restart of the database: the pool hands out its idle
    /// connections without a ping, and after a restart every one of them is dead. Only
    /// for statements that change nothing.
    pub(crate) async fn read<'a, T, E, Fut>(
        &'a self,
        read: impl Fn(&'a AnyPool) -> Fut,
    ) -> Result<T, StoreError>
    where
        Fut: std::future::Future<Output = Result<T, E>>,
        StoreError: From<E>,
    {
        self.again(|| {
            let reading = read(&self.pool);
            async move { Ok(reading.await?) }
        })
        .await
    }

    /// Runs `op` (a read, or the start of a transaction: nothing that may have taken
    /// effect) again while it fails because its connection was gone, within the time a
    /// request waits for a connection (see `point_reads::again_while_lost`).
    pub(crate) async fn again<T, Fut>(&self, op: impl FnMut() -> Fut) -> Result<T, StoreError>
    where
        Fut: std::future::Future<Output = Result<T, StoreError>>,
    {
        let budget = self.pool.options().get_acquire_timeout();
        point_reads::again_while_lost(budget, StoreError::connection_lost, op).await
    }

    /// Readiness: whether requests can be served. The database answers a ping, or has
    /// stopped answering for less than the time a request waits for it (the acquire
    /// timeout): a restart of the database, which every replica shares, then costs the
    /// requests of its moments a wait, instead of taking every replica out of its Service
    /// at once so that they fail; a database gone for longer is reported.
    pub async fn ready(&self) -> bool {
        let answered = matches!(
            tokio::time::timeout(READY_PING_TIMEOUT, self.ping()).await,
            Ok(Ok(()))
        );
        let Ok(mut since) = self.unanswered_since.lock() else {
            return answered;
        };
        if answered {
            *since = None;
            return true;
        }
        let first = *since.get_or_insert_with(std::time::Instant::now);
        first.elapsed() < self.pool.options().get_acquire_timeout()
    }

    /// Starts a writing transaction. On SQLite it takes the write lock at once
    /// (`BEGIN IMMEDIATE`), so that two writers queue instead of deadlocking; begun
    /// again on another connection when the first was cut by a restart of the database.
    #[tracing::instrument(target = "traced", name = "identity db begin", skip_all, fields(otel.kind = "client", db.namespace = "identity"))]
    pub async fn begin(&self) -> Result<Tx, StoreError> {
        let tx = self
            .again(|| async {
                Ok(match self.backend {
                    Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
                    Backend::Postgres => self.pool.begin().await?,
                })
            })
            .await?;
        Ok(Tx {
            tx,
            backend: self.backend,
            changes: changes::PendingChanges::default(),
            ends: session_cache::PendingEnds::default(),
            signals: std::sync::Arc::clone(&self.signals),
        })
    }

    /// Closes the pool (graceful shutdown).
    #[tracing::instrument(target = "traced", name = "identity db close", skip_all, fields(otel.kind = "client", db.namespace = "identity"))]
    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The session cache's state (metrics).
    pub fn session_cache_state(&self) -> SessionCacheState {
        self.signals.sessions.state()
    }

    /// On PostgreSQL, starts listening for other replicas' commits (once; also done on
    /// first need): the change log's followers wake at once, the session cache serves.
    pub fn listen(&self) {
        if self.backend == Backend::Postgres {
            self.signals.listen_once(&self.url);
        }
    }
}

/// The rows `select` returns for every id of `ids`, on `conn` (a pooled connection or a
/// transaction's): `select` is given the parameter list of an `IN (…)` (`$1,$2,…`), and
/// the ids go in chunks of 500 so that no statement's parameter list grows past what
/// either engine takes.
pub(crate) async fn fetch_for_ids(
    conn: &mut sqlx::AnyConnection,
    ids: &[i64],
    select: impl Fn(&str) -> String,
) -> Result<Vec<sqlx::any::AnyRow>, StoreError> {
    let mut rows = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(500) {
        let list: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
        let mut q = sqlx::query(sqlx::AssertSqlSafe(select(&list.join(","))));
        for id in chunk {
            q = q.bind(*id);
        }
        rows.extend(q.fetch_all(&mut *conn).await?);
    }
    Ok(rows)
}

/// The parameters of a multi-row `VALUES` list: `rows` tuples of `columns` parameters,
/// numbered from `$1` (`($1, $2), ($3, $4)`).
pub(crate) fn values_list(rows: usize, columns: usize) -> String {
    (0..rows)
        .map(|r| {
            let row: Vec<String> = (1..=columns)
                .map(|c| format!("${}", r * columns + c))
                .collect();
            format!("({})", row.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Now, in microseconds since the epoch, by the system clock (what the store stamps).
pub(crate) fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

fn sqlite_path(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next()?;
    (!path.is_empty() && path != ":memory:").then_some(path)
}

/// One writing transaction. The changes of members it makes are written to the change
/// log by its commit, and the sessions it ends are forgotten by every replica's cache.
pub struct Tx {
    tx: sqlx::Transaction<'static, Any>,
    backend: Backend,
    changes: changes::PendingChanges,
    ends: session_cache::PendingEnds,
    signals: std::sync::Arc<signals::Signals>,
}

impl Tx {
    #[tracing::instrument(target = "traced", name = "identity db commit", skip_all, fields(otel.kind = "client", db.namespace = "identity"))]
    pub async fn commit(mut self) -> Result<(), StoreError> {
        let logged = self.write_changes().await?;
        let ends = self.ends.take();
        if let Some(ends) = &ends
            && self.backend == Backend::Postgres
        {
            // Heard by every replica when (and only if) the transaction commits.
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(signals::SESSION_ENDS)
                .bind(ends.payload(7900))
                .execute(self.conn())
                .await?;
        }
        self.tx.commit().await?;
        if logged {
            self.signals.changed();
        }
        if let Some(ends) = &ends {
            self.signals.sessions.forget(ends);
        }
        Ok(())
    }

    /// Undoes everything (dry runs, and failures after a write).
    #[tracing::instrument(target = "traced", name = "identity db rollback", skip_all, fields(otel.kind = "client", db.namespace = "identity"))]
    pub async fn rollback(self) -> Result<(), StoreError> {
        self.tx.rollback().await?;
        Ok(())
    }

    /// Commits, or rolls back when `dry_run`.
    #[tracing::instrument(target = "traced", name = "identity db finish", skip_all, fields(otel.kind = "client", db.namespace = "identity"))]
    pub async fn finish(self, dry_run: bool) -> Result<(), StoreError> {
        if dry_run {
            self.rollback().await
        } else {
            self.commit().await
        }
    }

    pub(crate) fn conn(&mut self) -> &mut sqlx::AnyConnection {
        &mut self.tx
    }

    /// The clause that locks the rows a `SELECT` reads until the transaction ends:
    /// `FOR UPDATE` on PostgreSQL; nothing on SQLite, where the transaction holds the
    /// database's write lock from its start.
    pub(crate) fn for_update(&self) -> &'static str {
        match self.backend {
            Backend::Postgres => " FOR UPDATE",
            Backend::Sqlite => "",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_lists_number_their_parameters_row_by_row() {
        assert_eq!(values_list(2, 2), "($1, $2), ($3, $4)");
        assert_eq!(values_list(1, 3), "($1, $2, $3)");
    }

    #[test]
    fn sqlite_paths() {
        assert_eq!(
            sqlite_path("sqlite:///tmp/a.db?mode=rwc"),
            Some("/tmp/a.db")
        );
        assert_eq!(
            sqlite_path("sqlite://data/x.sqlite3"),
            Some("data/x.sqlite3")
        );
        assert_eq!(sqlite_path("sqlite::memory:"), None);
    }
}
