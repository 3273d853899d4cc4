//! The legacy database exactly as ActiveRecord creates it (`users`, `sessions`, and
//! Rails' own `schema_migrations` and `ar_internal_metadata`), on SQLite or PostgreSQL:
//! the schema, its rows and the queries the legacy's controllers run. The legacy
//! simulator serves from it; the identity service reads and writes it while migrating.
//!
//! Times: SQLite keeps them as text (`2026-11-26 07:17:26.992507`), PostgreSQL as
//! `timestamp(6) without time zone`; both are read and written here as text in UTC.
//!
//! A read of at most one row takes `fetch_all` and the first row, never
//! `fetch_optional` (see the identity store: the Any driver's `fetch_optional` costs a
//! second round trip).

mod schema;
mod sessions;
mod users;

use std::str::FromStr;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};

pub use sessions::{LegacySession, TOKEN_LENGTH, random_token};
pub use users::{LegacyUser, NewLegacyUser, ProfileColumn};

/// SQLite or PostgreSQL.
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

#[derive(Debug, thiserror::Error)]
pub enum LegacyError {
    /// A unique index refused the value: `email`, `phone_number`, `token`.
    #[error("{0} is already taken")]
    Taken(&'static str),
    #[error("legacy database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("legacy database configuration: {0}")]
    Config(String),
    #[error("legacy database holds an unreadable value in {0}")]
    Corrupt(&'static str),
    /// The failure of a batched read, shared by every read of the batch.
    #[error("{0}")]
    Shared(std::sync::Arc<LegacyError>),
    /// A read got no answer: the database did not answer in time, or too many reads
    /// already wait for it.
    #[error("legacy database read: {0}")]
    Unanswered(&'static str),
}

impl From<point_reads::BatchError<LegacyError>> for LegacyError {
    fn from(e: point_reads::BatchError<LegacyError>) -> Self {
        match e {
            point_reads::BatchError::Failed(shared) => LegacyError::Shared(shared),
            point_reads::BatchError::TimedOut => {
                LegacyError::Unanswered("no answer within the read timeout")
            }
            point_reads::BatchError::Overloaded => {
                LegacyError::Unanswered("too many reads waiting for the database")
            }
            point_reads::BatchError::Stopped => {
                LegacyError::Config("the legacy database's reader stopped".into())
            }
        }
    }
}

impl LegacyError {
    /// Whether the connection was gone, the statement not run (see
    /// `point_reads::again_while_lost`).
    pub fn connection_lost(&self) -> bool {
        match self {
            LegacyError::Database(e) => point_reads::connection_lost(e),
            LegacyError::Shared(e) => e.connection_lost(),
            _ => false,
        }
    }

    pub(crate) fn from_write(err: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db) = &err {
            let text = format!("{} {}", db.message(), db.constraint().unwrap_or(""));
            if db.is_unique_violation() || text.contains("UNIQUE") {
                for field in ["email", "phone_number", "refresh_token", "token"] {
                    if text.contains(field) {
                        return LegacyError::Taken(match field {
                            "email" => "email",
                            "phone_number" => "phone_number",
                            "refresh_token" => "refresh_token",
                            _ => "token",
                        });
                    }
                }
            }
        }
        LegacyError::Database(err)
    }
}

/// How long a request waits for a connection, a new one included (a database
/// restarting is waited for that long).
const ACQUIRE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// A connection pool on the legacy database.
#[derive(Clone)]
pub struct LegacyDb {
    pool: AnyPool,
    backend: Backend,
    /// The owners of sessions, read in batches (every authenticated request while
    /// migrating reads its legacy session; see `point_reads`).
    session_owners: std::sync::Arc<users::SessionOwners>,
}

impl LegacyDb {
    /// Connects (`sqlite://FILE?mode=rwc` or `postgres://...`; Rails' `sqlite3:FILE` is
    /// accepted too).
    #[tracing::instrument(target = "traced", name = "legacy db connect", skip_all, fields(otel.kind = "client", db.namespace = "legacy"))]
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, LegacyError> {
        sqlx::any::install_default_drivers();
        let (url, backend) = if let Some(path) = url.strip_prefix("sqlite3:") {
            (format!("sqlite://{path}?mode=rwc"), Backend::Sqlite)
        } else if url.starts_with("sqlite:") {
            (url.to_owned(), Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (url.to_owned(), Backend::Postgres)
        } else {
            return Err(LegacyError::Config(
                "the URL must start with sqlite:, sqlite3: or postgres://".into(),
            ));
        };
        let options =
            AnyConnectOptions::from_str(&url).map_err(|e| LegacyError::Config(e.to_string()))?;
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections)
            // No ping before every query (see the identity store): every authenticated
            // request reads its legacy session while migrating.
            .test_before_acquire(false)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA busy_timeout = 5000").await?;
                        conn.execute("PRAGMA foreign_keys = ON").await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        // The hot reads' own connections, in the engine's driver (the Any driver's rows
        // cost an allocation per column description).
        let readers = point_reads::ReadPool::connect(
            &url,
            backend.engine(),
            max_connections.clamp(1, 4),
            ACQUIRE_TIMEOUT,
        )
        .await?;
        let session_owners = std::sync::Arc::new(users::session_owners(readers, backend));
        Ok(Self {
            pool,
            backend,
            session_owners,
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Creates the ActiveRecord schema if the database does not have it yet.
    #[tracing::instrument(target = "traced", name = "legacy db ensure_schema", skip_all, fields(otel.kind = "client", db.namespace = "legacy"))]
    pub async fn ensure_schema(&self) -> Result<(), LegacyError> {
        schema::ensure(&self.pool, self.backend).await
    }

    /// Starts a writing transaction (`BEGIN IMMEDIATE` on SQLite); begun again on
    /// another connection when the first was cut by a restart of the database (nothing
    /// was written on it).
    #[tracing::instrument(target = "traced", name = "legacy db begin", skip_all, fields(otel.kind = "client", db.namespace = "legacy"))]
    pub async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, LegacyError> {
        point_reads::again_while_lost(ACQUIRE_TIMEOUT, point_reads::connection_lost, || async {
            match self.backend {
                Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
                Backend::Postgres => self.pool.begin().await,
            }
        })
        .await
        .map_err(LegacyError::from)
    }

    /// A read on the pool (`read` is given it), read again on another connection when
    /// the first was cut by a restart of the database.
    pub async fn read<'a, T, Fut>(
        &'a self,
        read: impl Fn(&'a AnyPool) -> Fut,
    ) -> Result<T, LegacyError>
    where
        Fut: std::future::Future<Output = Result<T, LegacyError>>,
    {
        point_reads::again_while_lost(ACQUIRE_TIMEOUT, LegacyError::connection_lost, || {
            read(&self.pool)
        })
        .await
    }

    /// SQL that reads a timestamp column as text.
    pub(crate) fn ts(&self, column: &str) -> String {
        ts_of(self.backend, column)
    }

    /// SQL for a timestamp parameter given as text.
    pub(crate) fn ts_param(&self, n: usize) -> String {
        match self.backend {
            Backend::Sqlite => format!("${n}"),
            Backend::Postgres => format!("CAST(${n} AS timestamp)"),
        }
    }
}

/// SQL reading a timestamp column as text, on `backend`.
pub(crate) fn ts_of(backend: Backend, column: &str) -> String {
    match backend {
        // The Any driver cannot decode SQLite's declared `datetime` type: read text.
        Backend::Sqlite => format!("CAST({column} AS TEXT)"),
        Backend::Postgres => format!("to_char({column}, 'YYYY-MM-DD HH24:MI:SS.US')"),
    }
}

pub(crate) fn parse_ts(
    text: &str,
    column: &'static str,
) -> Result<member_contract::Timestamp, LegacyError> {
    member_contract::Timestamp::parse_db_text(text).ok_or(LegacyError::Corrupt(column))
}
