//! A whole stack on port 0: the legacy simulator, the identity service and the proxy,
//! with a VirtualService and a proxy config written to a temp dir.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use migration_proxy::{Proxy, Settings};
use serde_json::{Value, json};
use tokio::sync::oneshot;

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

pub struct Stack {
    pub legacy: SocketAddr,
    pub identity: SocketAddr,
    pub proxy: SocketAddr,
    pub admin: SocketAddr,
    pub vs_path: PathBuf,
    pub cfg_path: PathBuf,
    /// The proxy config as written at start.
    pub cfg_text: String,
    pub client: reqwest::Client,
    stop_identity: Option<oneshot::Sender<()>>,
    _stops: Vec<oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

/// The VirtualService: one rule for the member API with the given weights and mirror.
pub fn virtual_service(legacy_weight: u32, new_weight: u32, mirror_percent: f64) -> String {
    format!(
        r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: member-api
  namespace: members
spec:
  hosts: [member-api.members.svc.cluster.local]
  http:
  - name: reads
    match:
    - uri: {{prefix: /api/v1/users}}
      method: {{exact: GET}}
    route:
    - destination: {{host: legacy.test}}
      weight: {legacy_weight}
    - destination: {{host: identity.test}}
      weight: {new_weight}
    mirror: {{host: identity.test}}
    mirrorPercentage: {{value: {mirror_percent}}}
    timeout: 5s
    retries: {{attempts: 1, perTryTimeout: 2s, retryOn: connect-failure}}
  - name: writes
    match:
    - uri: {{prefix: /api/v1}}
    route:
    - destination: {{host: legacy.test}}
      weight: {legacy_weight}
    - destination: {{host: identity.test}}
      weight: {new_weight}
    mirror: {{host: identity.test}}
    mirrorPercentage: {{value: {mirror_percent}}}
    timeout: 5s
"#
    )
}

fn proxy_config(legacy: SocketAddr, identity: SocketAddr) -> String {
    format!(
        r#"upstreams:
  legacy.test: {{address: "{legacy}", role: legacy}}
  identity.test: {{address: "{identity}", role: new}}
sticky_key: jwt_sub
admin_token: {ADMIN_TOKEN}
comparison:
  ignore: ["$..created_at", "$..updated_at"]
  learn_noise: false
guard:
  window_secs: 30
  min_requests: 20
  min_comparisons: 20
  max_error_rate: 0.2
  max_mismatch_rate: 0.5
  max_p99_ratio: 1000
"#
    )
}

/// Rewrites the VirtualService file atomically (write, then rename), as a ConfigMap
/// update does.
pub fn write_virtual_service(path: &std::path::Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// The proxy's settings in these tests: both ports chosen by the system, files checked
/// every 100 ms, 2 s to drain, two workers.
pub fn settings(virtual_service: &std::path::Path, config: &std::path::Path) -> Settings {
    Settings {
        virtual_service: virtual_service.to_owned(),
        config: config.to_owned(),
        listen: Some("127.0.0.1:0".parse().unwrap()),
        admin: Some("127.0.0.1:0".parse().unwrap()),
        reload_interval: Duration::from_millis(100),
        drain: Duration::from_secs(2),
        workers: 2,
    }
}

pub async fn stack(legacy_weight: u32, new_weight: u32, mirror_percent: f64) -> Stack {
    let dir = tempfile::tempdir().unwrap();
    let mut stops = Vec::new();

    let legacy_url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("legacy.sqlite3").display()
    );
    let sim = legacy_sim::connect(&legacy_url, 4).await.unwrap();
    let running = legacy_sim::spawn(sim, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let legacy = running.addr;
    stops.push(running.stop);

    let data = dir.path().join("identity");
    let id_url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("identity.sqlite3").display()
    );
    let argv = [
        "identity",
        "serve",
        "--database-url",
        &id_url,
        "--data-dir",
        data.to_str().unwrap(),
        "--http-addr",
        "127.0.0.1:0",
        "--grpc-addr",
        "127.0.0.1:0",
        "--argon2-memory-kib",
        "1024",
        "--argon2-iterations",
        "1",
        "--trust-forwarded-for",
    ];
    let identity::config::Command::Serve(args) =
        identity::config::Cli::try_parse_from(argv).unwrap().command
    else {
        panic!("serve flags expected")
    };
    let app = identity::Application::build(&args).await.unwrap();
    let identity = app.http_addr();
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(app.run_until(async {
        let _ = rx.await;
    }));

    let vs_path = dir.path().join("virtualservice.yaml");
    let cfg_path = dir.path().join("proxy.yaml");
    write_virtual_service(
        &vs_path,
        &virtual_service(legacy_weight, new_weight, mirror_percent),
    );
    let cfg_text = proxy_config(legacy, identity);
    std::fs::write(&cfg_path, &cfg_text).unwrap();
    let bound = Proxy::build(settings(&vs_path, &cfg_path)).await.unwrap();
    let (proxy, admin) = (bound.addr(), bound.admin_addr());
    let (ptx, prx) = oneshot::channel::<()>();
    stops.push(ptx);
    tokio::spawn(bound.run_until(async {
        let _ = prx.await;
    }));
    Stack {
        legacy,
        identity,
        proxy,
        admin,
        vs_path,
        cfg_path,
        cfg_text,
        client: reqwest::Client::new(),
        stop_identity: Some(tx),
        _stops: stops,
        _dir: dir,
    }
}

impl Stack {
    /// Signs a member up directly on one upstream (not through the proxy).
    pub async fn seed(&self, upstream: SocketAddr, email: &str, nickname: &str) -> i64 {
        let r = self
            .client
            .post(format!("http://{upstream}/api/v1/users"))
            .json(
                &json!({"user": {"email": email, "password": "password123", "nickname": nickname}}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 201);
        r.json::<Value>().await.unwrap()["id"].as_i64().unwrap()
    }

    /// `GET path` through the proxy as the user whose sticky key is `key`.
    pub async fn get_as(&self, key: &str, path: &str) -> (u16, Value) {
        let r = self
            .client
            .get(format!("http://{}{path}", self.proxy))
            .header("authorization", format!("Bearer {key}"))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json::<Value>().await.unwrap_or(Value::Null))
    }

    pub async fn admin(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self
            .client
            .request(
                method.parse().unwrap(),
                format!("http://{}{path}", self.admin),
            )
            .header("authorization", format!("Bearer {ADMIN_TOKEN}"));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json::<Value>().await.unwrap_or(Value::Null))
    }

    pub async fn route(&self, name: &str) -> Value {
        let (_, status) = self.admin("GET", "/admin/status", None).await;
        status["routes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .cloned()
            .unwrap()
    }

    pub async fn metrics(&self) -> String {
        self.client
            .get(format!("http://{}/metrics", self.admin))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Stops the identity service (the new side goes down) and waits until its port
    /// refuses connections.
    pub async fn stop_identity(&mut self) {
        if let Some(tx) = self.stop_identity.take() {
            let _ = tx.send(());
        }
        let identity = self.identity;
        assert!(
            eventually(|| async { tokio::net::TcpStream::connect(identity).await.is_err() }).await,
            "the identity service still accepts connections"
        );
    }

    /// Member 1 exists on both sides with a different nickname, so an answer tells
    /// which side served it.
    pub async fn seed_sides(&self) {
        assert_eq!(
            self.seed(self.legacy, "one@example.com", "legacy-one")
                .await,
            1
        );
        assert_eq!(
            self.seed(self.identity, "one@example.com", "identity-one")
                .await,
            1
        );
    }

    /// Which side served `GET /api/v1/users/1` for `key`.
    pub async fn side_of(&self, key: &str) -> &'static str {
        let (status, body) = self.get_as(key, "/api/v1/users/1").await;
        assert_eq!(status, 200, "{body}");
        match body["nickname"].as_str() {
            Some("legacy-one") => "legacy",
            Some("identity-one") => "new",
            other => panic!("unexpected nickname {other:?}"),
        }
    }
}

/// Polls until `check` holds or the time is up.
pub async fn eventually<F, Fut>(mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..60 {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}
