//! Starting the three services in this process, on embedded SQLite files.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tokio::sync::oneshot;

/// The legacy member API the stack migrates from.
#[derive(Debug, Clone)]
pub enum LegacySource {
    /// The Rust legacy simulator, in this process, on `legacy.sqlite3` in the data
    /// directory, listening on the address.
    Simulator(SocketAddr),
    /// A legacy already running (the Rails app of `tests/legacy-rails`), at `addr`, on
    /// `database_url` (its ActiveRecord database: SQLite or PostgreSQL).
    External {
        addr: SocketAddr,
        database_url: String,
    },
}

/// Where and how the stack runs.
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// Directory of the SQLite files and the generated proxy files.
    pub data_dir: PathBuf,
    pub legacy: LegacySource,
    /// The identity service's database; `None`: `identity.sqlite3` in the data directory.
    pub identity_database_url: Option<String>,
    pub identity_http: SocketAddr,
    pub identity_grpc: SocketAddr,
    pub proxy_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    /// Members the legacy starts with (when it has none).
    pub seed_members: u32,
    /// bcrypt cost of the legacy's digests.
    pub bcrypt_cost: u32,
    /// The identity service's share of users at start, in percent.
    pub new_percent: u32,
    /// Fast password hashing for tests (argon2id with small memory).
    pub fast_hashing: bool,
}

pub const ADMIN_TOKEN: &str = "local-admin-token-not-for-production";

/// The running stack.
pub struct Stack {
    pub legacy: SocketAddr,
    pub identity: SocketAddr,
    pub identity_grpc: SocketAddr,
    pub proxy: SocketAddr,
    pub admin: SocketAddr,
    pub legacy_database_url: String,
    pub identity_database_url: String,
    pub virtual_service: PathBuf,
    stops: Vec<oneshot::Sender<()>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// The member API's VirtualService: the very manifest in `istio/` (the proxy runs what
/// the cluster runs), weights edited by the rollout tool's own editor.
const MANIFEST: &str = include_str!("../../../istio/virtualservice-member-api.yaml");
const LEGACY_HOST: &str = "legacy-api.members.svc.cluster.local";
const NEW_HOST: &str = "identity.members.svc.cluster.local";

/// The rules of the manifest that send users to either side (all but `default`).
pub fn member_routes() -> Vec<String> {
    rollout::manifest::two_sided_routes(MANIFEST, LEGACY_HOST, NEW_HOST).unwrap_or_default()
}

/// The manifest with the identity service at `percent` on every member rule; each
/// shadows to the identity service every request the legacy serves (and, at 100%,
/// replays nothing to the legacy: it no longer receives writes after the cutover, so a
/// comparison with it would only report noise).
pub fn virtual_service(percent: u32) -> String {
    member_routes()
        .iter()
        .try_fold(MANIFEST.to_owned(), |text, route| {
            rollout::manifest::set_weights(&text, route, LEGACY_HOST, NEW_HOST, percent)
        })
        .expect("every member rule of the manifest has both sides")
}

/// The proxy's config: the two sides, the comparison and the guard of a rehearsal.
pub fn proxy_config(legacy: SocketAddr, identity: SocketAddr) -> String {
    format!(
        "upstreams:\n  legacy-api.members.svc.cluster.local: {{address: \"{legacy}\", role: legacy}}\n  identity.members.svc.cluster.local: {{address: \"{identity}\", role: new}}\nadmin_token: {ADMIN_TOKEN}\nclient_address: {{trusted_hops: 1}}\ncomparison:\n  ignore: [\"$..token\", \"$..refresh_token\", \"$..expires_at\"]\n  learn_noise: true\n  replay_first: {{sessions: [refresh, log_out]}}\nfallback: {{to_new: [users-read, users-me-read]}}\nguard:\n  window_secs: 60\n  min_requests: 50\n  min_comparisons: 50\n  max_error_rate: 0.05\n  max_mismatch_rate: 0.05\n  max_p99_ratio: 20\n  p99_floor_ms: 250\n"
    )
}

/// Replaces a file in one step (as a ConfigMap update does).
pub fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(tmp, path)
}

impl Stack {
    pub async fn start(o: &StackOptions) -> anyhow::Result<Stack> {
        std::fs::create_dir_all(&o.data_dir)
            .with_context(|| format!("cannot create {}", o.data_dir.display()))?;
        let mut stops = Vec::new();
        let mut tasks = Vec::new();

        // The legacy, seeded when it has no member yet.
        let legacy_database_url = match &o.legacy {
            LegacySource::Simulator(_) => format!(
                "sqlite://{}?mode=rwc",
                o.data_dir.join("legacy.sqlite3").display()
            ),
            LegacySource::External { database_url, .. } => database_url.clone(),
        };
        let sim = legacy_sim::connect(&legacy_database_url, o.bcrypt_cost)
            .await
            .context("legacy database")?;
        legacy_sim::seed::seed(&sim, o.seed_members).await?;
        let legacy = match &o.legacy {
            LegacySource::Simulator(addr) => {
                let running = legacy_sim::spawn(sim, *addr)
                    .await
                    .context("legacy address")?;
                stops.push(running.stop);
                tasks.push(running.task);
                running.addr
            }
            LegacySource::External { addr, .. } => *addr,
        };

        // The identity service: back-filled, then migrating.
        let identity_database_url = o.identity_database_url.clone().unwrap_or_else(|| {
            format!(
                "sqlite://{}?mode=rwc",
                o.data_dir.join("identity.sqlite3").display()
            )
        });
        {
            let store = identity_store::Store::connect(
                &identity_database_url,
                &identity_store::StoreConfig::default(),
            )
            .await?;
            let legacy_db = legacy_db::LegacyDb::connect(&legacy_database_url, 2).await?;
            let report = identity_migration::backfill(&store, &legacy_db, &mut ()).await?;
            tracing::info!(copied = report.copied, "backfill done");
        }
        let data = o.data_dir.join("identity");
        let (http, grpc, cost) = (
            o.identity_http.to_string(),
            o.identity_grpc.to_string(),
            o.bcrypt_cost.to_string(),
        );
        let mut argv = vec![
            "identity",
            "serve",
            "--database-url",
            &identity_database_url,
            "--data-dir",
            data.to_str().unwrap_or("."),
            "--http-addr",
            &http,
            "--grpc-addr",
            &grpc,
            "--legacy-database-url",
            &legacy_database_url,
            "--legacy-bcrypt-cost",
            &cost,
            "--sync-interval-ms",
            "100",
            "--trust-forwarded-for",
        ];
        if o.fast_hashing {
            argv.extend_from_slice(&["--argon2-memory-kib", "1024", "--argon2-iterations", "1"]);
        }
        let identity::config::Command::Serve(args) =
            identity::config::Cli::try_parse_from(argv)?.command
        else {
            anyhow::bail!("serve flags expected");
        };
        args.validate()?;
        let app = identity::Application::build(&args).await?;
        let identity = app.http_addr();
        let identity_grpc = app.grpc_addr();
        let (tx, rx) = oneshot::channel::<()>();
        stops.push(tx);
        tasks.push(tokio::spawn(async move {
            let _ = app
                .run_until(async {
                    let _ = rx.await;
                })
                .await;
        }));

        // The proxy.
        let virtual_service = o.data_dir.join("virtualservice.yaml");
        let config = o.data_dir.join("proxy.yaml");
        write_atomically(&virtual_service, &self::virtual_service(o.new_percent))?;
        write_atomically(&config, &proxy_config(legacy, identity))?;
        let bound = migration_proxy::Proxy::build(migration_proxy::Settings {
            virtual_service: virtual_service.clone(),
            config,
            listen: Some(o.proxy_addr),
            admin: Some(o.admin_addr),
            reload_interval: Duration::from_millis(200),
            drain: Duration::from_secs(5),
            workers: 0,
        })
        .await?;
        let (proxy, admin) = (bound.addr(), bound.admin_addr());
        let (tx, rx) = oneshot::channel::<()>();
        stops.push(tx);
        tasks.push(tokio::spawn(async move {
            let _ = bound
                .run_until(async {
                    let _ = rx.await;
                })
                .await;
        }));
        Ok(Stack {
            legacy,
            identity,
            identity_grpc,
            proxy,
            admin,
            legacy_database_url,
            identity_database_url,
            virtual_service,
            stops,
            tasks,
        })
    }

    /// Sets the identity service's share in the VirtualService file (as an SRE's commit
    /// would) and waits until the proxy applied it.
    pub async fn set_weight(&self, percent: u32) -> anyhow::Result<()> {
        self.apply_routes(&virtual_service(percent), percent).await
    }

    async fn apply_routes(&self, manifest: &str, percent: u32) -> anyhow::Result<()> {
        write_atomically(&self.virtual_service, manifest)?;
        // Applied now rather than at the next poll of the file.
        let reload = self.admin("POST", "/admin/reload").await?;
        anyhow::ensure!(reload == 200, "the proxy refused the manifest ({reload})");
        for _ in 0..100 {
            if self
                .shares()
                .await?
                .iter()
                .all(|s| (*s - f64::from(percent)).abs() < 0.01)
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::bail!(
            "the proxy did not apply {percent}%: {}",
            self.status().await?
        )
    }

    /// The proxy's admin API and the manifest, as the rollout tool sees them.
    pub fn fleet(&self) -> anyhow::Result<rollout::fleet::Fleet> {
        rollout::fleet::Fleet::new(
            &[format!("http://{}", self.admin)],
            Some(ADMIN_TOKEN.to_owned()),
            self.virtual_service.clone(),
            LEGACY_HOST.to_owned(),
            NEW_HOST.to_owned(),
        )
        .map_err(|e| anyhow::anyhow!("{e}"))
    }

    /// The proxy's admin status.
    pub async fn status(&self) -> anyhow::Result<serde_json::Value> {
        Ok(reqwest::Client::new()
            .get(format!("http://{}/admin/status", self.admin))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await?
            .json()
            .await?)
    }

    /// The new side's share of every member route, in percent.
    pub async fn shares(&self) -> anyhow::Result<Vec<f64>> {
        let members = member_routes();
        Ok(rollout::status::parse(&self.status().await?)
            .into_iter()
            .filter(|r| members.contains(&r.name))
            .map(|r| r.share)
            .collect())
    }

    /// An admin call (abort, resume, weight override).
    pub async fn admin(&self, method: &str, path: &str) -> anyhow::Result<u16> {
        let r = reqwest::Client::new()
            .request(method.parse()?, format!("http://{}{path}", self.admin))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await?;
        Ok(r.status().as_u16())
    }

    /// Stops everything and waits for the drains.
    pub async fn stop(mut self) {
        for s in self.stops.drain(..).rev() {
            let _ = s.send(());
        }
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
    }
}
