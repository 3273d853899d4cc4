//! The legacy schema, as `pg_dump -s` and SQLite's `.schema` show what ActiveRecord made
//! (`legacy-member-api.md`), with Rails' bookkeeping rows so that the Rails app accepts
//! a database made here.

use sqlx::{AnyPool, AssertSqlSafe, Executor};

use crate::{Backend, LegacyError};

const SQLITE: &str = r#"
CREATE TABLE IF NOT EXISTS "schema_migrations" ("version" varchar NOT NULL PRIMARY KEY);
CREATE TABLE IF NOT EXISTS "ar_internal_metadata" ("key" varchar NOT NULL PRIMARY KEY, "value" varchar, "created_at" datetime(6) NOT NULL, "updated_at" datetime(6) NOT NULL);
CREATE TABLE IF NOT EXISTS "users" ("id" integer PRIMARY KEY AUTOINCREMENT NOT NULL, "email" varchar NOT NULL, "password_digest" varchar NOT NULL, "nickname" varchar NOT NULL, "phone_number" varchar, "profile_image_url" varchar, "deleted_at" datetime, "created_at" datetime(6) NOT NULL, "updated_at" datetime(6) NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS "index_users_on_email" ON "users" ("email");
CREATE UNIQUE INDEX IF NOT EXISTS "index_users_on_phone_number" ON "users" ("phone_number");
CREATE INDEX IF NOT EXISTS "index_users_on_updated_at" ON "users" ("updated_at");
CREATE TABLE IF NOT EXISTS "sessions" ("id" integer PRIMARY KEY AUTOINCREMENT NOT NULL, "user_id" integer NOT NULL, "token" varchar NOT NULL, "refresh_token" varchar NOT NULL, "expires_at" datetime NOT NULL, "refresh_expires_at" datetime NOT NULL, "created_at" datetime(6) NOT NULL, "updated_at" datetime(6) NOT NULL, CONSTRAINT "fk_rails_758836b4f0" FOREIGN KEY ("user_id") REFERENCES "users" ("id"));
CREATE INDEX IF NOT EXISTS "index_sessions_on_user_id" ON "sessions" ("user_id");
CREATE UNIQUE INDEX IF NOT EXISTS "index_sessions_on_token" ON "sessions" ("token");
CREATE UNIQUE INDEX IF NOT EXISTS "index_sessions_on_refresh_token" ON "sessions" ("refresh_token");
INSERT OR IGNORE INTO "schema_migrations" ("version") VALUES ('20240101000001'), ('20240101000002');
INSERT OR IGNORE INTO "ar_internal_metadata" ("key", "value", "created_at", "updated_at") VALUES ('environment', 'production', strftime('%Y-%m-%d %H:%M:%f', 'now'), strftime('%Y-%m-%d %H:%M:%f', 'now'));
"#;

const POSTGRES: &str = r#"
CREATE TABLE IF NOT EXISTS schema_migrations (version character varying NOT NULL PRIMARY KEY);
CREATE TABLE IF NOT EXISTS ar_internal_metadata (key character varying NOT NULL PRIMARY KEY, value character varying, created_at timestamp(6) without time zone NOT NULL, updated_at timestamp(6) without time zone NOT NULL);
CREATE TABLE IF NOT EXISTS users (
    id bigserial PRIMARY KEY,
    email character varying NOT NULL,
    password_digest character varying NOT NULL,
    nickname character varying NOT NULL,
    phone_number character varying,
    profile_image_url character varying,
    deleted_at timestamp without time zone,
    created_at timestamp(6) without time zone NOT NULL,
    updated_at timestamp(6) without time zone NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS index_users_on_email ON users (email);
CREATE UNIQUE INDEX IF NOT EXISTS index_users_on_phone_number ON users (phone_number);
CREATE INDEX IF NOT EXISTS index_users_on_updated_at ON users (updated_at);
CREATE TABLE IF NOT EXISTS sessions (
    id bigserial PRIMARY KEY,
    user_id bigint NOT NULL,
    token character varying NOT NULL,
    refresh_token character varying NOT NULL,
    expires_at timestamp without time zone NOT NULL,
    refresh_expires_at timestamp without time zone NOT NULL,
    created_at timestamp(6) without time zone NOT NULL,
    updated_at timestamp(6) without time zone NOT NULL,
    CONSTRAINT fk_rails_758836b4f0 FOREIGN KEY (user_id) REFERENCES users (id)
);
CREATE UNIQUE INDEX IF NOT EXISTS index_sessions_on_token ON sessions (token);
CREATE UNIQUE INDEX IF NOT EXISTS index_sessions_on_refresh_token ON sessions (refresh_token);
CREATE INDEX IF NOT EXISTS index_sessions_on_user_id ON sessions (user_id);
INSERT INTO schema_migrations (version) VALUES ('20240101000001'), ('20240101000002') ON CONFLICT DO NOTHING;
INSERT INTO ar_internal_metadata (key, value, created_at, updated_at) VALUES ('environment', 'production', now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC') ON CONFLICT DO NOTHING;
"#;

#[tracing::instrument(target = "traced", name = "legacy db ensure", skip_all, fields(otel.kind = "client", db.namespace = "legacy"))]
pub async fn ensure(pool: &AnyPool, backend: Backend) -> Result<(), LegacyError> {
    let sql = match backend {
        Backend::Sqlite => SQLITE,
        Backend::Postgres => POSTGRES,
    };
    let mut conn = pool.acquire().await?;
    if backend == Backend::Postgres {
        // Two processes creating the schema at once must not collide.
        conn.execute("SELECT pg_advisory_lock(7312001)").await?;
    }
    let result = sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut *conn).await;
    if backend == Backend::Postgres {
        conn.execute("SELECT pg_advisory_unlock(7312001)").await?;
    }
    result?;
    Ok(())
}
