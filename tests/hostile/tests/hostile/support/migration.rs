//! A migrating identity service beside its legacy, and the calls a client makes to
//! either side.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use super::{Identity, Legacy, binary, identity_with_env, legacy, legacy_sim_on, until};

/// A unique email for this run.
pub fn email(tag: &str) -> String {
    let mut b = [0u8; 6];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .unwrap();
    let n: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{tag}-{n}@example.com")
}

/// One call; the status and the JSON body (null when none).
pub async fn call(
    method: &str,
    url: String,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = bearer
        .as_deref()
        .map(|b| ("authorization", b))
        .into_iter()
        .collect();
    call_with_headers(method, url, &headers, body).await
}

/// `call` with the request's headers given.
pub async fn call_with_headers(
    method: &str,
    url: String,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = reqwest::Client::new().request(method.parse().unwrap(), url);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Logs in at `base` (a legacy's or the service's address): (access, refresh).
async fn log_in_at(base: SocketAddr, email: &str, password: &str) -> (String, String) {
    let (s, v) = call(
        "POST",
        format!("http://{base}/api/v1/sessions"),
        None,
        Some(json!({"email": email, "password": password})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    (
        v["token"].as_str().unwrap().to_owned(),
        v["refresh_token"].as_str().unwrap().to_owned(),
    )
}

impl Legacy {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Signs up a member: its id.
    pub async fn sign_up(&self, email: &str, password: &str) -> i64 {
        let (s, v) = call(
            "POST",
            self.url("/api/v1/users"),
            None,
            Some(json!({"user": {"email": email, "password": password, "nickname": "hostile"}})),
        )
        .await;
        assert_eq!(s, 201, "{v}");
        v["id"].as_i64().unwrap()
    }

    /// Logs in: (access, refresh).
    pub async fn log_in(&self, email: &str, password: &str) -> (String, String) {
        log_in_at(self.addr, email, password).await
    }
}

pub struct Migrating {
    _dir: tempfile::TempDir,
    pub legacy: Legacy,
    pub identity: Identity,
}

impl Migrating {
    pub fn legacy_url(&self, path: &str) -> String {
        self.legacy.url(path)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.identity.http)
    }

    /// `identity migrate ARGS...` against both databases; its output.
    pub fn migrate(&self, args: &[&str]) -> String {
        let (ok, text) = self.migrate_may_fail(args);
        assert!(ok, "migrate {args:?}: {text}");
        text
    }

    /// `identity migrate ARGS...`: whether it succeeded, and its output.
    pub fn migrate_may_fail(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new(binary("identity"))
            .args([
                "migrate",
                "--database-url",
                &self.identity.database_url,
                "--legacy-database-url",
                &self.legacy.database_url,
            ])
            .args(args)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    /// The cutover (forced: these tests judge the data, not the rollout's report), then
    /// the wait until the service has left the legacy.
    pub async fn cut_over(&self) {
        self.migrate(&["cutover", "--force"]);
        let metrics = self.url("/metrics");
        assert!(
            until(Duration::from_secs(20), || async {
                reqwest::get(&metrics)
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap()
                    .contains("identity_migrating 0")
            })
            .await,
            "the service did not leave the legacy"
        );
    }

    pub async fn sign_up_on_legacy(&self, email: &str, password: &str) -> i64 {
        self.legacy.sign_up(email, password).await
    }

    /// Logs in on the legacy (`legacy` true) or here: (access, refresh).
    pub async fn log_in(&self, on_legacy: bool, email: &str, password: &str) -> (String, String) {
        let base = if on_legacy {
            self.legacy.addr
        } else {
            self.identity.http
        };
        log_in_at(base, email, password).await
    }
}

/// A migrating identity service: its database back-filled from the legacy's first.
/// `postgres`: both databases on PostgreSQL (the legacy simulator's too).
pub fn migrating(postgres: bool, extra: &[&str]) -> Migrating {
    migrating_with_env(postgres, extra, &[])
}

/// `migrating`, with `env` set for the identity service's process.
pub fn migrating_with_env(postgres: bool, extra: &[&str], env: &[(&str, &str)]) -> Migrating {
    let dir = tempfile::tempdir().unwrap();
    let legacy = if postgres {
        postgres_legacy(dir.path())
    } else {
        legacy(dir.path())
    };
    let database_url = if postgres {
        test_support::fresh_postgres_database()
    } else {
        format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("identity.sqlite3").display()
        )
    };
    let out = Command::new(binary("identity"))
        .args([
            "migrate",
            "--database-url",
            &database_url,
            "--legacy-database-url",
            &legacy.database_url,
            "backfill",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut args = vec![
        "--legacy-database-url",
        &legacy.database_url,
        "--sync-interval-ms",
        "100",
        "--refresh-reuse-grace-secs",
        "1",
    ];
    args.extend_from_slice(extra);
    let identity = identity_with_env(dir.path(), Some(&database_url), &args, env);
    Migrating {
        _dir: dir,
        legacy,
        identity,
    }
}

/// The legacy simulator on a PostgreSQL database of its own.
fn postgres_legacy(dir: &Path) -> Legacy {
    let url = test_support::fresh_postgres_database();
    legacy_sim_on(dir, &url)
}
