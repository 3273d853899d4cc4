//! What the integration tests share: a real PostgreSQL cluster started from the
//! machine's own binaries (`initdb`, `postgres`), with a fresh database per test; and a
//! TCP gate to put between a service and its database (`tcp_gate`).
//!
//! Set `TEST_POSTGRES_URL` (a server URL ending in `/postgres`, superuser) to use a
//! running server instead, as `.ci/run` does to start one cluster for all test binaries.

pub mod otlp;
pub mod postgres;
pub mod tcp_gate;

pub use postgres::{OwnPostgres, fresh_postgres_database};
