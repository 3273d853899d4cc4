//! The backfill benchmark: a legacy database of N members (seeded in bulk by SQL), a
//! plain read of every row as the baseline, then the backfill itself, and the verify.

use std::time::Instant;

use identity_store::{Store, StoreConfig};
use legacy_db::{Backend, LegacyDb};
use sqlx::AssertSqlSafe;

/// Members created and last changed a day ago (outside the sync's look-back, as most
/// members of a real legacy are).
pub(crate) async fn seed(legacy: &LegacyDb, n: i64) -> anyhow::Result<()> {
    let existing: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
        .fetch_one(legacy.pool())
        .await?;
    if existing >= n {
        return Ok(());
    }
    let digest = "$2a$12$abcdefghijklmnopqrstuu5Ue2Q8yZ3yqVK3dQy9oQ2m1c7sB1n3bS";
    let sql = match legacy.backend() {
        Backend::Postgres => format!(
            "INSERT INTO users (email, password_digest, nickname, phone_number, created_at, updated_at) \
             SELECT 'bench' || g || '@example.com', '{digest}', 'member' || g, \
             CASE WHEN g % 3 = 0 THEN '+8210' || lpad(g::text, 8, '0') END, \
             now() AT TIME ZONE 'UTC' - interval '1 day', now() AT TIME ZONE 'UTC' - interval '1 day' FROM generate_series({}, {n}) g",
            existing + 1
        ),
        Backend::Sqlite => format!(
            "WITH RECURSIVE g(i) AS (SELECT {} UNION ALL SELECT i + 1 FROM g WHERE i < {n}) \
             INSERT INTO users (email, password_digest, nickname, phone_number, created_at, updated_at) \
             SELECT 'bench' || i || '@example.com', '{digest}', 'member' || i, \
             CASE WHEN i % 3 = 0 THEN '+8210' || substr('00000000' || i, -8) END, \
             strftime('%Y-%m-%d %H:%M:%f', 'now', '-1 day'), strftime('%Y-%m-%d %H:%M:%f', 'now', '-1 day') FROM g",
            existing + 1
        ),
    };
    sqlx::raw_sql(AssertSqlSafe(sql))
        .execute(legacy.pool())
        .await?;
    Ok(())
}

/// Legacy members `seed-{id}@example.com` for `id` in `1..=n`, each with a bcrypt
/// digest of `password` at `cost` (as the legacy writes them), for log-ins through the
/// identity service while migrating.
pub async fn seed_with_password(
    url: &str,
    n: i64,
    password: &str,
    cost: u32,
) -> anyhow::Result<()> {
    let legacy = LegacyDb::connect(url, 4).await?;
    legacy.ensure_schema().await?;
    let hasher = identity_passwords::Hasher::new(&identity_passwords::PasswordConfig::default())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let digest = hasher
        .legacy_bcrypt(password, cost)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let stamp = match legacy.backend() {
        Backend::Postgres => "now() AT TIME ZONE 'UTC' - interval '1 day'",
        Backend::Sqlite => "strftime('%Y-%m-%d %H:%M:%f', 'now', '-1 day')",
    };
    for first in (1..=n).step_by(1000) {
        let last = (first + 999).min(n);
        let rows: Vec<String> = (first..=last)
            .map(|id| format!("('seed-{id}@example.com', $1, 'seed{id}', {stamp}, {stamp})"))
            .collect();
        let sql = format!(
            "INSERT INTO users (email, password_digest, nickname, created_at, updated_at) VALUES {}",
            rows.join(", ")
        );
        sqlx::query(AssertSqlSafe(sql))
            .bind(&digest)
            .execute(legacy.pool())
            .await?;
    }
    println!("seeded {n} legacy members");
    Ok(())
}

pub async fn run(legacy_url: &str, identity_url: &str, n: i64) -> anyhow::Result<()> {
    let legacy = LegacyDb::connect(legacy_url, 4).await?;
    legacy.ensure_schema().await?;
    let t = Instant::now();
    seed(&legacy, n).await?;
    println!(
        "seeded {n} legacy members in {:.1}s",
        t.elapsed().as_secs_f64()
    );

    // Baseline: reading every row, in the same batches, and nothing else.
    let t = Instant::now();
    let (mut last, mut read) = (0i64, 0u64);
    loop {
        let users = legacy.users_after(legacy.pool(), last, 5000).await?;
        let Some(u) = users.last() else { break };
        last = u.id;
        read += users.len() as u64;
    }
    let read_secs = t.elapsed().as_secs_f64();
    println!(
        "baseline: read {read} rows in {read_secs:.1}s ({:.0}/s)",
        read as f64 / read_secs
    );

    let store = Store::connect(identity_url, &StoreConfig::default()).await?;
    let t = Instant::now();
    let report = identity_migration::backfill(&store, &legacy, &mut ()).await?;
    let secs = t.elapsed().as_secs_f64();
    println!(
        "backfill: {} members in {secs:.1}s ({:.0}/s), {:.2}x the plain read's time (goal: 1,000,000 in 60 s or less)",
        report.copied,
        report.copied as f64 / secs,
        secs / read_secs
    );
    let t = Instant::now();
    let v = identity_migration::verify(&store, &legacy, 5).await?;
    println!(
        "verify: {} compared, {} deviating, in {:.1}s",
        v.compared,
        v.deviating_members,
        t.elapsed().as_secs_f64()
    );
    Ok(())
}
