//! Starting the service on port 0 against a fresh database, and small HTTP helpers.

use std::net::SocketAddr;

use clap::Parser;
use identity::Application;
use identity::config::{Cli, Command};
use serde_json::Value;
use tokio::sync::oneshot;

#[derive(Debug, Clone, Copy)]
pub enum Db {
    Sqlite,
    Postgres,
}

pub struct TestApp {
    pub http: SocketAddr,
    pub grpc: SocketAddr,
    pub client: reqwest::Client,
    pub database_url: String,
    pub dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

pub async fn spawn(db: Db) -> TestApp {
    spawn_with(db, &[]).await
}

/// Starts the service with fast password hashing and the given extra flags.
pub async fn spawn_with(db: Db, extra: &[&str]) -> TestApp {
    let dir = tempfile::tempdir().expect("tempdir");
    spawn_in(db, dir, extra).await
}

/// Starts the service with its files in `dir`.
pub async fn spawn_in(db: Db, dir: tempfile::TempDir, extra: &[&str]) -> TestApp {
    let database_url = match db {
        Db::Sqlite => format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("identity.sqlite3").display()
        ),
        Db::Postgres => test_support::fresh_postgres_database(),
    };
    spawn_on(&database_url, dir, extra).await
}

/// Another replica of `app`: the same database and signing key, its own listeners.
pub async fn replica(app: &TestApp) -> TestApp {
    replica_on(app, &app.database_url).await
}

/// Another replica of `app` with its signing key, on `database_url` (the same database,
/// reached another way).
pub async fn replica_on(app: &TestApp, database_url: &str) -> TestApp {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::copy(
        app.dir.path().join("jwt-signing-key.pem"),
        dir.path().join("jwt-signing-key.pem"),
    )
    .expect("the first replica's signing key");
    spawn_on(database_url, dir, &[]).await
}

/// Starts the service on `database_url`, its files in `dir`.
pub async fn spawn_on(database_url: &str, dir: tempfile::TempDir, extra: &[&str]) -> TestApp {
    let database_url = database_url.to_owned();
    let data_dir = dir.path().display().to_string();
    let mut argv = vec![
        "identity",
        "serve",
        "--database-url",
        &database_url,
        "--data-dir",
        &data_dir,
        "--http-addr",
        "127.0.0.1:0",
        "--grpc-addr",
        "127.0.0.1:0",
        "--argon2-memory-kib",
        "1024",
        "--argon2-iterations",
        "1",
        "--shutdown-grace-secs",
        "2",
    ];
    argv.extend_from_slice(extra);
    let Command::Serve(args) = Cli::try_parse_from(argv).expect("valid test flags").command else {
        panic!("serve flags expected")
    };
    args.validate().expect("valid test configuration");
    let app = Application::build(&args).await.expect("service starts");
    let (http, grpc) = (app.http_addr(), app.grpc_addr());
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(app.run_until(async {
        let _ = rx.await;
    }));
    TestApp {
        http,
        grpc,
        database_url: database_url.clone(),
        client: reqwest::Client::new(),
        dir,
        stop: Some(tx),
    }
}

/// A response as the tests look at it.
pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|_| panic!("not JSON: {:?}", self.text))
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.http, path)
    }

    pub async fn send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Resp {
        let mut req = self
            .client
            .request(method.parse().expect("method"), self.url(path));
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let r = req.send().await.expect("request");
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        Resp {
            status,
            headers,
            text: r.text().await.expect("body"),
        }
    }

    pub async fn raw(&self, method: &str, path: &str, content_type: &str, body: &str) -> Resp {
        let r = self
            .client
            .request(method.parse().expect("method"), self.url(path))
            .header("content-type", content_type)
            .body(body.to_owned())
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        Resp {
            status,
            headers,
            text: r.text().await.expect("body"),
        }
    }

    /// Signs up `email` with password `password123` and logs in: (member id, token, refresh token).
    pub async fn member(&self, email: &str) -> (i64, String, String) {
        let r = self
            .send(
                "POST",
                "/api/v1/users",
                None,
                Some(serde_json::json!({"user": {"email": email, "password": "password123", "nickname": "member"}})),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        let id = r.json()["id"].as_i64().expect("id");
        let s = self.login(email, "password123").await;
        assert_eq!(s.status, 201, "{}", s.text);
        let j = s.json();
        (
            id,
            j["token"].as_str().expect("token").to_owned(),
            j["refresh_token"].as_str().expect("refresh").to_owned(),
        )
    }

    pub async fn login(&self, email: &str, password: &str) -> Resp {
        self.send(
            "POST",
            "/api/v1/sessions",
            None,
            Some(serde_json::json!({"email": email, "password": password})),
        )
        .await
    }
}

/// Runs an async test body once on SQLite and once on PostgreSQL.
#[macro_export]
macro_rules! on_both_databases {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                ($body)($crate::support::Db::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                ($body)($crate::support::Db::Postgres).await
            }
        }
    };
}
