//! Configuration from flags and environment variables (a variable stands in for its
//! flag), validated as a whole before any port is bound.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use secrecy::{ExposeSecret, SecretString};

/// The identity service.
#[derive(Debug, Parser)]
#[command(
    name = "identity",
    version,
    about = "Identity service: gRPC for microservices, the legacy member REST API for app clients"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the REST and gRPC APIs.
    Serve(Box<ServeArgs>),
    /// Move the members from the legacy database: backfill, verify, cutover.
    Migrate(MigrateArgs),
}

#[derive(Debug, Clone, Args)]
pub struct MigrateArgs {
    #[command(subcommand)]
    pub step: MigrateStep,
    /// The identity database (as for `serve`).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, global = true)]
    pub database_url: Option<SecretString>,
    /// Directory of the embedded database.
    #[arg(
        long,
        env = "IDENTITY_DATA_DIR",
        default_value = "./data",
        global = true
    )]
    pub data_dir: PathBuf,
    /// The legacy database (ActiveRecord schema): `postgres://...` or `sqlite://FILE`.
    #[arg(
        long,
        env = "LEGACY_DATABASE_URL",
        hide_env_values = true,
        global = true
    )]
    pub legacy_database_url: Option<SecretString>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum MigrateStep {
    /// Copy every legacy member (idempotent, resumable).
    Backfill,
    /// Compare every member field by field; exit 1 on any deviation.
    Verify,
    /// End the migration: refused unless verify is clean, and without a passing
    /// decommission report (`rollout report`) unless forced.
    Cutover {
        /// The decommission report `rollout report` wrote.
        #[arg(long)]
        report: Option<PathBuf>,
        /// Hours after which a report is too old to go by.
        #[arg(long, default_value_t = 24.0)]
        report_max_age_hours: f64,
        /// Cut over without a passing report (verify must still be clean).
        #[arg(long)]
        force: bool,
    },
}

impl MigrateArgs {
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.expose_secret().to_owned(),
            None => identity_store::sqlite_url_in(&self.data_dir),
        }
    }

    pub fn legacy_database_url(&self) -> Result<String, ConfigError> {
        self.legacy_database_url
            .as_ref()
            .map(|u| u.expose_secret().to_owned())
            .ok_or_else(|| {
                invalid(
                    "--legacy-database-url (LEGACY_DATABASE_URL)",
                    "is required for migrate",
                )
            })
    }
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Database URL: `postgres://...` or `sqlite://FILE`; default: SQLite under --data-dir.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<SecretString>,
    /// Directory for the embedded database and the development signing key.
    #[arg(long, env = "IDENTITY_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// REST listen address (port 0 picks a free port).
    #[arg(long, env = "IDENTITY_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,
    /// gRPC listen address.
    #[arg(long, env = "IDENTITY_GRPC_ADDR", default_value = "127.0.0.1:50051")]
    pub grpc_addr: SocketAddr,
    /// PKCS#8 PEM file of the Ed25519 signing key; without it a development key is made
    /// once and kept in --data-dir.
    #[arg(long, env = "IDENTITY_JWT_SIGNING_KEY")]
    pub jwt_signing_key: Option<PathBuf>,
    /// More verification keys (PEM files, comma-separated): previous signing keys.
    #[arg(long, env = "IDENTITY_JWT_VERIFICATION_KEYS", value_delimiter = ',')]
    pub jwt_verification_keys: Vec<PathBuf>,
    /// `iss` of access tokens.
    #[arg(long, env = "IDENTITY_JWT_ISSUER", default_value = "urn:identity")]
    pub jwt_issuer: String,
    /// `aud` of access tokens.
    #[arg(long, env = "IDENTITY_JWT_AUDIENCE", default_value = "member-api")]
    pub jwt_audience: String,
    /// argon2id memory in KiB (OWASP: 19456).
    #[arg(long, env = "IDENTITY_ARGON2_MEMORY_KIB", default_value_t = 19456)]
    pub argon2_memory_kib: u32,
    /// argon2id iterations (OWASP: 2).
    #[arg(long, env = "IDENTITY_ARGON2_ITERATIONS", default_value_t = 2)]
    pub argon2_iterations: u32,
    /// argon2id parallelism (OWASP: 1).
    #[arg(long, env = "IDENTITY_ARGON2_PARALLELISM", default_value_t = 1)]
    pub argon2_parallelism: u32,
    /// Password hashes running at once (default: the number of CPUs).
    #[arg(long, env = "IDENTITY_HASH_CONCURRENCY")]
    pub hash_concurrency: Option<usize>,
    /// How long a log-in waits for a hashing slot before 503 / RESOURCE_EXHAUSTED.
    #[arg(long, env = "IDENTITY_HASH_QUEUE_WAIT_MS", default_value_t = 2000)]
    pub hash_queue_wait_ms: u64,
    /// Seconds after a rotation during which a reused refresh token is only refused.
    #[arg(long, env = "IDENTITY_REFRESH_REUSE_GRACE_SECS", default_value_t = 10)]
    pub refresh_reuse_grace_secs: i64,
    /// Failed log-ins per hour on one account (across clients that never logged in to it).
    #[arg(long, env = "IDENTITY_THROTTLE_PER_ACCOUNT", default_value_t = 100)]
    pub throttle_per_account: i64,
    /// Failed log-ins per hour on one account from one client.
    #[arg(
        long,
        env = "IDENTITY_THROTTLE_PER_ACCOUNT_CLIENT",
        default_value_t = 10
    )]
    pub throttle_per_account_client: i64,
    /// Failed log-ins per hour from one client across accounts.
    #[arg(long, env = "IDENTITY_THROTTLE_PER_CLIENT", default_value_t = 300)]
    pub throttle_per_client: i64,
    /// Read the client address from the last X-Forwarded-For entry (behind a proxy).
    #[arg(long, env = "IDENTITY_TRUST_FORWARDED_FOR", default_value_t = false)]
    pub trust_forwarded_for: bool,
    /// With --trust-forwarded-for: how many proxies in front append to X-Forwarded-For
    /// (1: the last entry is the client; 2 behind the mesh's edge and the migration proxy).
    #[arg(long, env = "IDENTITY_TRUSTED_PROXY_HOPS", default_value_t = 1)]
    pub trusted_proxy_hops: usize,
    /// Largest REST request body in bytes.
    #[arg(long, env = "IDENTITY_MAX_BODY_BYTES", default_value_t = 65536)]
    pub max_body_bytes: usize,
    /// Database connections.
    #[arg(long, env = "IDENTITY_DB_MAX_CONNECTIONS", default_value_t = 16)]
    pub db_max_connections: u32,
    /// Seconds to drain in-flight requests after SIGTERM (keep it below the pod's
    /// terminationGracePeriodSeconds).
    #[arg(long, env = "IDENTITY_SHUTDOWN_GRACE_SECS", default_value_t = 20)]
    pub shutdown_grace_secs: u64,
    /// Log format: `json` or `text`.
    #[arg(long, env = "IDENTITY_LOG_FORMAT", default_value = "json")]
    pub log_format: String,
    /// The legacy database while migrating (sync of legacy changes into this service);
    /// unset, or after cutover, the service stands alone.
    #[arg(long, env = "LEGACY_DATABASE_URL", hide_env_values = true)]
    pub legacy_database_url: Option<SecretString>,
    /// Connections to the legacy database while migrating: every write goes through it
    /// and every authenticated request reads its session there (those reads in batches,
    /// on up to 4 connections of their own besides).
    #[arg(long, env = "LEGACY_DB_MAX_CONNECTIONS", default_value_t = 16)]
    pub legacy_db_max_connections: u32,
    /// bcrypt cost of the digests written through to the legacy (the legacy's own: 12).
    #[arg(long, env = "LEGACY_BCRYPT_COST", default_value_t = 12, value_parser = clap::value_parser!(u32).range(4..=31))]
    pub legacy_bcrypt_cost: u32,
    /// Milliseconds between two polls of the legacy's changes.
    #[arg(long, env = "IDENTITY_SYNC_INTERVAL_MS", default_value_t = 500)]
    pub sync_interval_ms: u64,
    /// Hours the member change log keeps a change (WatchMemberChanges resumes from a
    /// cursor at most this old).
    #[arg(long, env = "IDENTITY_CHANGE_RETENTION_HOURS", default_value_t = 168)]
    pub change_retention_hours: u64,
    /// `WatchMemberChanges` streams open at once on a replica (each reads the log on
    /// every change); more are refused with RESOURCE_EXHAUSTED.
    #[arg(long, env = "IDENTITY_MAX_CHANGE_FOLLOWERS", default_value_t = 256)]
    pub max_change_followers: usize,
    /// Threads serving gRPC, each a single-threaded runtime with its share of the
    /// connections (default: one per core the process may use).
    #[arg(long, env = "IDENTITY_GRPC_THREADS")]
    pub grpc_threads: Option<usize>,
    /// Seconds each poll looks back before the last change seen (longer than the
    /// legacy's longest write transaction).
    #[arg(long, env = "IDENTITY_SYNC_LOOKBACK_SECS", default_value_t = 30)]
    pub sync_lookback_secs: u64,
}

/// A setting that cannot be used: names it, never its value when secret.
#[derive(Debug, thiserror::Error)]
#[error("invalid setting {setting}: {reason}")]
pub struct ConfigError {
    pub setting: &'static str,
    pub reason: String,
}

fn invalid(setting: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        setting,
        reason: reason.into(),
    }
}

impl ServeArgs {
    /// The database URL in force.
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.expose_secret().to_owned(),
            None => identity_store::sqlite_url_in(&self.data_dir),
        }
    }

    pub fn change_retention(&self) -> Duration {
        Duration::from_secs(self.change_retention_hours * 3600)
    }

    /// Threads serving gRPC.
    pub fn grpc_threads(&self) -> usize {
        self.grpc_threads
            .unwrap_or_else(crate::grpc_threads::default_count)
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }

    /// Checks what flag parsing cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let url = self.database_url();
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            return Err(invalid(
                "--database-url (DATABASE_URL)",
                "must start with sqlite: or postgres://",
            ));
        }
        if self.argon2_memory_kib < 8 * self.argon2_parallelism.max(1) {
            return Err(invalid(
                "--argon2-memory-kib",
                "must be at least 8 KiB per lane",
            ));
        }
        if self.argon2_iterations == 0 {
            return Err(invalid("--argon2-iterations", "must be at least 1"));
        }
        if self.argon2_parallelism == 0 {
            return Err(invalid("--argon2-parallelism", "must be at least 1"));
        }
        if self.hash_concurrency == Some(0) {
            return Err(invalid("--hash-concurrency", "must be at least 1"));
        }
        if self.refresh_reuse_grace_secs < 0 {
            return Err(invalid(
                "--refresh-reuse-grace-secs",
                "must not be negative",
            ));
        }
        for (name, v) in [
            ("--throttle-per-account", self.throttle_per_account),
            (
                "--throttle-per-account-client",
                self.throttle_per_account_client,
            ),
            ("--throttle-per-client", self.throttle_per_client),
        ] {
            if v < 1 {
                return Err(invalid(name, "must be at least 1"));
            }
        }
        if self.jwt_issuer.trim().is_empty() {
            return Err(invalid("--jwt-issuer", "must not be empty"));
        }
        if self.jwt_audience.trim().is_empty() {
            return Err(invalid("--jwt-audience", "must not be empty"));
        }
        if self.trusted_proxy_hops == 0 {
            return Err(invalid("--trusted-proxy-hops", "must be at least 1"));
        }
        if self.max_body_bytes < 1024 {
            return Err(invalid("--max-body-bytes", "must be at least 1024"));
        }
        if self.db_max_connections == 0 {
            return Err(invalid("--db-max-connections", "must be at least 1"));
        }
        if self.legacy_db_max_connections < 2 {
            return Err(invalid(
                "--legacy-db-max-connections",
                "must be at least 2 (the sync holds one while the requests use the others)",
            ));
        }
        if self.log_format != "json" && self.log_format != "text" {
            return Err(invalid("--log-format", "must be json or text"));
        }
        if let Some(legacy) = &self.legacy_database_url {
            let l = legacy.expose_secret();
            if !(l.starts_with("sqlite:")
                || l.starts_with("sqlite3:")
                || l.starts_with("postgres://")
                || l.starts_with("postgresql://"))
            {
                return Err(invalid(
                    "--legacy-database-url (LEGACY_DATABASE_URL)",
                    "must start with sqlite: or postgres://",
                ));
            }
        }
        if !(1..=24 * 366).contains(&self.change_retention_hours) {
            return Err(invalid(
                "--change-retention-hours",
                "must be from 1 to 8784 (a year)",
            ));
        }
        if self.max_change_followers == 0 {
            return Err(invalid("--max-change-followers", "must be at least 1"));
        }
        if self.grpc_threads.is_some_and(|n| !(1..=256).contains(&n)) {
            return Err(invalid("--grpc-threads", "must be from 1 to 256"));
        }
        if self.sync_interval_ms == 0 {
            return Err(invalid("--sync-interval-ms", "must be at least 1"));
        }
        if self.http_addr == self.grpc_addr && self.http_addr.port() != 0 {
            return Err(invalid("--grpc-addr", "must differ from --http-addr"));
        }
        Ok(())
    }
}
