//! What the integration tests share: a real PostgreSQL cluster started from the
//! machine's own binaries (`initdb`, `postgres`), with a fresh database per test.
//!
//! Set `TEST_POSTGRES_URL` (a server URL ending in `/postgres`, superuser) to use a
//! running server instead, as `.ci/run` does to start one cluster for all test binaries.

pub mod postgres;

pub use postgres::fresh_postgres_database;
