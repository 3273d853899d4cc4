//! The migration at cluster shape on one machine: the Rails app on its own PostgreSQL as
//! the legacy; identity replicas on another PostgreSQL, reaching the legacy's database
//! through a TCP gate of the rehearsal's (the network between them, which it can
//! partition); proxy replicas; and HAProxy standing for the two Kubernetes Services
//! (the identity service's, which the proxies send the new side to, and the member
//! API's, which the app clients reach), checking each replica's readiness as the
//! kubelet does and taking it out while it is not ready.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use test_support::OwnPostgres;
use test_support::tcp_gate::TcpGate;

use crate::processes::{Proc, free_port, until_answers};

/// How long a replica may take to become ready after a start.
pub const START_LIMIT: Duration = Duration::from_secs(90);
/// As long as Kubernetes takes to start a killed container again, at best.
const RESTART_AFTER: Duration = Duration::from_secs(1);
/// The pods' termination grace period.
const GRACE: Duration = Duration::from_secs(30);

/// One replica: its process and ports.
pub struct Replica {
    pub proc: Proc,
    /// The port it serves on (REST for the identity service, client traffic for a proxy).
    pub port: u16,
    /// Where its readiness is asked (`/readyz`): the same port, or the proxy's admin port.
    pub ready_port: u16,
}

impl Replica {
    pub fn ready_url(&self) -> String {
        format!("http://127.0.0.1:{}/readyz", self.ready_port)
    }

    pub fn metrics_url(&self) -> String {
        format!("http://127.0.0.1:{}/metrics", self.ready_port)
    }

    /// Stopped (SIGTERM and its grace when `graceful`, else SIGKILL), started again a
    /// moment later, and ready.
    pub async fn bounce(&mut self, graceful: bool) -> anyhow::Result<()> {
        if graceful {
            self.proc.terminate(GRACE).await;
        } else {
            self.proc.kill();
        }
        tokio::time::sleep(RESTART_AFTER).await;
        self.proc.start()?;
        self.wait_ready().await?;
        Ok(())
    }

    pub async fn wait_ready(&self) -> anyhow::Result<Duration> {
        until_answers(&self.ready_url(), &[200], START_LIMIT)
            .await
            .with_context(|| {
                format!(
                    "{} did not become ready:\n{}",
                    self.proc.name,
                    self.proc.log_tail()
                )
            })
    }
}

/// Where the proxies run (README: "Where the proxy runs").
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Placement {
    /// Proxy replicas of their own in front of one Rails app.
    Standalone,
    /// One proxy beside each Rails replica (k8s/components/proxy-sidecar), sending the
    /// legacy side to its own replica on localhost.
    Sidecar,
}

pub struct Options {
    pub work: PathBuf,
    pub identities: usize,
    pub proxies: usize,
    pub seed_members: u32,
    pub placement: Placement,
}

pub struct Cluster {
    pub legacy_pg: OwnPostgres,
    pub identity_pg: OwnPostgres,
    pub legacy_database_url: String,
    pub identity_database_url: String,
    /// Between the identity replicas and the legacy's database.
    pub legacy_db_gate: TcpGate,
    /// Between the proxies and the identity service (its Service's address).
    pub new_side_gate: TcpGate,
    /// The Rails replicas (one, or one per proxy beside it) and their ports.
    rails: Vec<(Proc, u16)>,
    pub identities: Vec<Replica>,
    pub proxies: Vec<Replica>,
    /// The member API's entry (the balancer in front of the proxies).
    pub entry: SocketAddr,
    pub virtual_service: PathBuf,
    bin: PathBuf,
    _balancer: Proc,
}

/// The directory of the identity and proxy binaries: the rehearsal's own.
fn bin_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    exe.parent()
        .map(Path::to_path_buf)
        .context("no directory for the binaries")
}

fn rails_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../legacy-rails/start.sh")
}

fn haproxy_config(
    identity_front: u16,
    identities: &[(u16, u16)],
    entry: u16,
    proxies: &[(u16, u16)],
) -> String {
    let servers = |prefix: &str, list: &[(u16, u16)]| -> String {
        list.iter()
            .enumerate()
            .map(|(i, (port, ready))| {
                format!("  server {prefix}{i} 127.0.0.1:{port} check port {ready}\n")
            })
            .collect()
    };
    format!(
        "global\n  maxconn 4096\n\
         defaults\n  mode tcp\n  timeout connect 2s\n  timeout client 120s\n  timeout server 120s\n  retries 1\n  option redispatch\n\
         frontend identity\n  bind 127.0.0.1:{identity_front}\n  default_backend identity\n\
         backend identity\n  option httpchk GET /readyz\n  default-server inter 500ms fall 2 rise 1\n{}\
         frontend members\n  bind 127.0.0.1:{entry}\n  default_backend proxies\n\
         backend proxies\n  option httpchk GET /readyz\n  default-server inter 500ms fall 2 rise 1\n{}",
        servers("identity-", identities),
        servers("proxy-", proxies),
    )
}

impl Cluster {
    pub async fn start(o: &Options) -> anyhow::Result<Cluster> {
        let bin = bin_dir()?;
        let logs = o.work.join("logs");
        std::fs::create_dir_all(&logs)?;
        let pg = |what: &str| {
            OwnPostgres::start().map_err(|e| anyhow::anyhow!("{what} PostgreSQL: {e}"))
        };
        let legacy_pg = pg("the legacy's")?;
        let identity_pg = pg("the identity service's")?;
        let legacy_database_url = legacy_pg
            .create_database("rails")
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let identity_database_url = identity_pg
            .create_database("identity")
            .map_err(|e| anyhow::anyhow!("{e}"))?;

        // The Rails app: its first replica creates the schema, then each serves.
        let legacy_replicas = match o.placement {
            Placement::Standalone => 1,
            Placement::Sidecar => o.proxies,
        };
        let mut rails = Vec::new();
        for i in 0..legacy_replicas {
            let port = free_port()?;
            let mut app = Proc::new(
                &format!("rails-{i}"),
                &rails_script(),
                &[
                    "--port".into(),
                    port.to_string(),
                    "--database-url".into(),
                    legacy_database_url.clone(),
                ],
                &logs,
            )
            .env("BCRYPT_COST", "4")
            .env("RAILS_MAX_THREADS", "5");
            app.start()?;
            until_answers(
                &format!("http://127.0.0.1:{port}/api/v1/users/0"),
                &[404],
                START_LIMIT,
            )
            .await
            .with_context(|| format!("the Rails app did not start:\n{}", app.log_tail()))?;
            rails.push((app, port));
        }

        // Members the legacy has had for years, copied before the rollout.
        let sim = legacy_sim::connect(&legacy_database_url, 4).await?;
        legacy_sim::seed::seed(&sim, o.seed_members).await?;
        let out = std::process::Command::new(bin.join("identity"))
            .args(["migrate", "--database-url", &identity_database_url])
            .args(["--legacy-database-url", &legacy_database_url, "backfill"])
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "backfill: {}",
            String::from_utf8_lossy(&out.stderr)
        );

        let (legacy_db_gate, gated_legacy_url) = TcpGate::in_front_of(&legacy_database_url).await;
        let identity_front = free_port()?;
        let entry = free_port()?;
        let new_side_gate =
            TcpGate::start(SocketAddr::from(([127, 0, 0, 1], identity_front))).await;

        let mut identities = Vec::new();
        for i in 0..o.identities {
            let dir = o.work.join(format!("identity-{i}"));
            std::fs::create_dir_all(&dir)?;
            if i > 0 {
                // One signing key for every replica, as a Secret mounted in each pod.
                std::fs::copy(
                    o.work.join("identity-0/jwt-signing-key.pem"),
                    dir.join("jwt-signing-key.pem"),
                )?;
            }
            let (http, grpc) = (free_port()?, free_port()?);
            let args: Vec<String> = [
                "serve",
                "--database-url",
                &identity_database_url,
                "--legacy-database-url",
                &gated_legacy_url,
                "--legacy-bcrypt-cost",
                "4",
                "--data-dir",
                &dir.display().to_string(),
                "--http-addr",
                &format!("127.0.0.1:{http}"),
                "--grpc-addr",
                &format!("127.0.0.1:{grpc}"),
                "--argon2-memory-kib",
                "1024",
                "--argon2-iterations",
                "1",
                "--sync-interval-ms",
                "100",
                "--trust-forwarded-for",
                "--log-format",
                "text",
            ]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
            let mut proc = Proc::new(
                &format!("identity-{i}"),
                &bin.join("identity"),
                &args,
                &logs,
            );
            proc.start()?;
            let replica = Replica {
                proc,
                port: http,
                ready_port: http,
            };
            replica.wait_ready().await?;
            identities.push(replica);
        }

        let virtual_service = o.work.join("virtualservice.yaml");
        local_stack::stack::write_atomically(
            &virtual_service,
            &local_stack::stack::virtual_service(0),
        )?;
        let mut proxies = Vec::new();
        for i in 0..o.proxies {
            // Beside its own Rails replica, or in front of the one app.
            let (_, legacy_port) = &rails[i % rails.len()];
            let config = o.work.join(format!("proxy-{i}.yaml"));
            local_stack::stack::write_atomically(
                &config,
                &local_stack::stack::proxy_config(
                    SocketAddr::from(([127, 0, 0, 1], *legacy_port)),
                    new_side_gate.addr,
                ),
            )?;
            let (listen, admin) = (free_port()?, free_port()?);
            let args: Vec<String> = vec![
                "--virtual-service".into(),
                virtual_service.display().to_string(),
                "--config".into(),
                config.display().to_string(),
                "--listen".into(),
                format!("127.0.0.1:{listen}"),
                "--admin".into(),
                format!("127.0.0.1:{admin}"),
                "--reload-interval-ms".into(),
                "200".into(),
                "--drain-secs".into(),
                "5".into(),
                "--log-format".into(),
                "json".into(),
            ];
            let mut proc = Proc::new(
                &format!("proxy-{i}"),
                &bin.join("migration-proxy"),
                &args,
                &logs,
            );
            proc.start()?;
            proxies.push(Replica {
                proc,
                port: listen,
                ready_port: admin,
            });
        }
        let ports = |list: &[Replica]| {
            list.iter()
                .map(|r| (r.port, r.ready_port))
                .collect::<Vec<_>>()
        };
        let balancer_config = o.work.join("haproxy.cfg");
        std::fs::write(
            &balancer_config,
            haproxy_config(identity_front, &ports(&identities), entry, &ports(&proxies)),
        )?;
        let mut balancer = Proc::new(
            "haproxy",
            Path::new("haproxy"),
            &[
                "-db".into(),
                "-f".into(),
                balancer_config.display().to_string(),
            ],
            &logs,
        );
        balancer
            .start()
            .context("HAProxy (apt-get install haproxy)")?;
        for p in &proxies {
            p.wait_ready().await?;
        }
        let cluster = Cluster {
            legacy_pg,
            identity_pg,
            legacy_database_url,
            identity_database_url,
            legacy_db_gate,
            new_side_gate,
            rails,
            identities,
            proxies,
            entry: SocketAddr::from(([127, 0, 0, 1], entry)),
            virtual_service,
            bin,
            _balancer: balancer,
        };
        // Through the balancer, once it has found the replicas up.
        until_answers(
            &format!("http://{}/api/v1/users/0", cluster.entry),
            &[404],
            START_LIMIT,
        )
        .await
        .context("the member API did not answer through the balancer")?;
        Ok(cluster)
    }

    /// The identity service's share, in the VirtualService every proxy reads (a
    /// ConfigMap's update); the proxies reload it within their interval.
    pub async fn set_weight(&self, percent: u32) -> anyhow::Result<()> {
        local_stack::stack::write_atomically(
            &self.virtual_service,
            &local_stack::stack::virtual_service(percent),
        )?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        Ok(())
    }

    /// `identity migrate ARGS...` against both databases: success and output.
    pub fn migrate(&self, args: &[&str]) -> anyhow::Result<(bool, String)> {
        let out = std::process::Command::new(self.bin.join("identity"))
            .args(["migrate", "--database-url", &self.identity_database_url])
            .args(["--legacy-database-url", &self.legacy_database_url])
            .args(args)
            .output()?;
        Ok((
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        ))
    }

    /// The identity replica that leads the sync now, if one says so.
    pub async fn sync_leader(&self) -> Option<usize> {
        for (i, r) in self.identities.iter().enumerate() {
            let Ok(resp) = reqwest::get(r.metrics_url()).await else {
                continue;
            };
            let text = resp.text().await.unwrap_or_default();
            if text.lines().any(|l| l == "identity_sync_leader 1") {
                return Some(i);
            }
        }
        None
    }

    /// The proxies' guard aborts, from their logs (which outlive their restarts): each
    /// route and reason.
    pub fn guard_aborts(&self) -> Vec<String> {
        self.proxies
            .iter()
            .flat_map(|p| p.proc.log_lines())
            .filter(|l| l.contains("rollout guard aborted the route"))
            .map(|l| {
                let field = |name: &str| -> String {
                    l.split(&format!("\"{name}\":\""))
                        .nth(1)
                        .and_then(|rest| rest.split('"').next())
                        .unwrap_or("?")
                        .to_owned()
                };
                format!("{}: {}", field("route"), field("reason"))
            })
            .collect()
    }

    /// The routes each proxy's guard holds aborted now.
    pub async fn aborted_by_guard(&self) -> Vec<Vec<String>> {
        let http = reqwest::Client::new();
        let mut all = Vec::new();
        for p in &self.proxies {
            let status: serde_json::Value = match http
                .get(format!("http://127.0.0.1:{}/admin/status", p.ready_port))
                .bearer_auth(local_stack::stack::ADMIN_TOKEN)
                .send()
                .await
            {
                Ok(r) => r.json().await.unwrap_or_default(),
                Err(_) => serde_json::Value::Null,
            };
            let routes = status["routes"].as_array().cloned().unwrap_or_default();
            all.push(
                routes
                    .iter()
                    .filter(|r| r["aborted_by"] == "guard")
                    .filter_map(|r| r["name"].as_str().map(str::to_owned))
                    .collect(),
            );
        }
        all
    }

    /// Resumes every route each proxy's guard aborted (as the SRE does once the cause
    /// is mended).
    pub async fn resume_aborted(&self) -> anyhow::Result<()> {
        let http = reqwest::Client::new();
        for (p, routes) in self.proxies.iter().zip(self.aborted_by_guard().await) {
            for route in routes {
                let r = http
                    .post(format!(
                        "http://127.0.0.1:{}/admin/routes/{route}/resume",
                        p.ready_port
                    ))
                    .bearer_auth(local_stack::stack::ADMIN_TOKEN)
                    .send()
                    .await?;
                anyhow::ensure!(r.status().is_success(), "resume {route}: {}", r.status());
            }
        }
        Ok(())
    }

    /// The Rails replicas' ports.
    pub fn rails_ports(&self) -> Vec<u16> {
        self.rails.iter().map(|(_, port)| *port).collect()
    }

    /// Whether every identity replica's metrics have the line `line`.
    pub async fn every_identity_says(&self, line: &str) -> bool {
        for r in &self.identities {
            let Ok(resp) = reqwest::get(r.metrics_url()).await else {
                return false;
            };
            if !resp
                .text()
                .await
                .unwrap_or_default()
                .lines()
                .any(|l| l == line)
            {
                return false;
            }
        }
        true
    }
}
