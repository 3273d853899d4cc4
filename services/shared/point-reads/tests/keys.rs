//! Keys that mean something in an array literal or in JSON (a comma, braces, quotes,
//! backslashes, the word NULL, spaces, an empty key) come back from each engine's keys
//! table exactly as sent, each once: a key can never name another row.

use std::time::Duration;

use point_reads::{Engine, ReadPool, keys_table, rows_of};

const KEYS: &[&str] = &[
    "plain-key_1",
    "a,b",
    "{x}",
    r#"quo"te"#,
    r"back\slash",
    r#"\""#,
    "NULL",
    " spaced ",
    "",
    "ünïcode",
];

async fn round_trip(url: &str, engine: Engine) -> Vec<String> {
    let pool = ReadPool::connect(url, engine, 1, Duration::from_secs(5))
        .await
        .unwrap();
    let (keys, param) = keys_table(engine, "text", KEYS);
    let sql = format!("SELECT k.value AS key FROM {keys}");
    async fn run(pool: &ReadPool, sql: String, param: String) -> Result<Vec<String>, sqlx::Error> {
        Ok(rows_of!(pool, sql, param, |row| sqlx::Row::try_get::<
            String,
            _,
        >(row, "key")))
    }
    run(&pool, sql, param).await.unwrap()
}

#[tokio::test]
async fn text_keys_come_back_as_sent_on_postgresql() {
    let url = test_support::fresh_postgres_database();
    assert_eq!(round_trip(&url, Engine::Postgres).await, KEYS);
}

#[tokio::test]
async fn text_keys_come_back_as_sent_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("k.sqlite3").display()
    );
    assert_eq!(round_trip(&url, Engine::Sqlite).await, KEYS);
}
