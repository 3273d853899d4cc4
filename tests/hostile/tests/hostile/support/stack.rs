//! The stack's processes: the legacy (the Rails app when the run provides one, else the
//! simulator), the identity service and the migration proxy with its two files.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::Process;

pub const ADMIN_TOKEN: &str = "hostile-admin-token-0123456789";

/// The manifest the proxy runs in production.
pub const MANIFEST: &str = include_str!("../../../../../istio/virtualservice-member-api.yaml");

fn json_field(line: &str, field: &str) -> SocketAddr {
    let value: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    value[field]
        .as_str()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in {line}"))
}

/// The legacy: the Rails app when the run provides one, else the simulator on SQLite.
pub struct Legacy {
    _process: Option<Process>,
    pub addr: SocketAddr,
    pub database_url: String,
}

pub fn legacy(dir: &Path) -> Legacy {
    if let (Ok(url), Ok(db)) = (
        std::env::var("HOSTILE_LEGACY_URL"),
        std::env::var("HOSTILE_LEGACY_DATABASE_URL"),
    ) {
        let addr = url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .expect("HOSTILE_LEGACY_URL is http://host:port");
        return Legacy {
            _process: None,
            addr,
            database_url: db,
        };
    }
    legacy_sim(dir)
}

/// The legacy simulator on a SQLite file of its own.
pub fn legacy_sim(dir: &Path) -> Legacy {
    let database_url = format!("sqlite://{}?mode=rwc", dir.join("legacy.sqlite3").display());
    legacy_sim_on(dir, &database_url)
}

/// The legacy simulator on `database_url`.
pub fn legacy_sim_on(_dir: &Path, database_url: &str) -> Legacy {
    start_legacy_sim(database_url, 4)
}

/// The legacy simulator on a SQLite file of its own, hashing at `bcrypt_cost` (the
/// legacy's own is 12: a password check then takes a noticeable moment).
pub fn legacy_sim_costing(dir: &Path, bcrypt_cost: u32) -> Legacy {
    let database_url = format!("sqlite://{}?mode=rwc", dir.join("legacy.sqlite3").display());
    start_legacy_sim(&database_url, bcrypt_cost)
}

fn start_legacy_sim(database_url: &str, bcrypt_cost: u32) -> Legacy {
    let database_url = database_url.to_owned();
    let mut process = Process::start(
        "legacy-sim",
        &[
            "--addr",
            "127.0.0.1:0",
            "--database-url",
            &database_url,
            "--bcrypt-cost",
            &bcrypt_cost.to_string(),
        ],
        &[],
    );
    let line = process.wait_line("legacy-sim listening on http://");
    let addr = line
        .rsplit("http://")
        .next()
        .and_then(|a| a.trim().parse().ok())
        .expect("address");
    Legacy {
        _process: Some(process),
        addr,
        database_url,
    }
}

/// The identity service.
pub struct Identity {
    pub process: Process,
    pub http: SocketAddr,
    pub grpc: SocketAddr,
    pub database_url: String,
}

/// The identity service on `database_url` (a SQLite file in `dir` when `None`), with
/// cheap hashing and `extra` flags.
pub fn identity(dir: &Path, database_url: Option<&str>, extra: &[&str]) -> Identity {
    identity_with_env(dir, database_url, extra, &[])
}

/// `identity`, with `env` set for the process.
pub fn identity_with_env(
    dir: &Path,
    database_url: Option<&str>,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Identity {
    let database_url = database_url.map_or_else(
        || {
            format!(
                "sqlite://{}?mode=rwc",
                dir.join("identity.sqlite3").display()
            )
        },
        str::to_owned,
    );
    let data = dir.join("identity-data");
    let mut args = vec![
        "serve",
        "--database-url",
        &database_url,
        "--data-dir",
        data.to_str().unwrap(),
        "--http-addr",
        "127.0.0.1:0",
        "--grpc-addr",
        "127.0.0.1:0",
    ];
    // Cheap hashing unless `extra` says otherwise, queued rather than refused on a busy
    // machine (a test that wants "busy" sets its own wait).
    for (flag, value) in [
        ("--argon2-memory-kib", "1024"),
        ("--argon2-iterations", "1"),
        ("--legacy-bcrypt-cost", "4"),
        ("--hash-queue-wait-ms", "10000"),
    ] {
        if !extra.contains(&flag) {
            args.extend([flag, value]);
        }
    }
    // Later flags of `extra` override earlier ones of the same name.
    let mut kept: Vec<&str> = Vec::new();
    let mut i = 0;
    while i < extra.len() {
        let flag = extra[i];
        let takes_value = extra.get(i + 1).is_some_and(|v| !v.starts_with("--"));
        let overridden = extra[i + 1 + usize::from(takes_value)..].contains(&flag);
        if !overridden {
            kept.push(flag);
            if takes_value {
                kept.push(extra[i + 1]);
            }
        }
        i += 1 + usize::from(takes_value);
    }
    args.extend(kept);
    let mut process = Process::start("identity", &args, env);
    let line = process.wait_line("\"listening\"");
    Identity {
        http: json_field(&line, "http"),
        grpc: json_field(&line, "grpc"),
        process,
        database_url,
    }
}

/// The migration proxy, with its two files in `dir`.
pub struct ProxyProcess {
    pub process: Process,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub vs_path: PathBuf,
    pub cfg_path: PathBuf,
}

/// The real manifest with every rule at `new_percent` for the identity service.
pub fn manifest(new_percent: u32) -> String {
    MANIFEST
        .replace("weight: 99\n", &format!("weight: {}\n", 100 - new_percent))
        .replace("weight: 1\n", &format!("weight: {new_percent}\n"))
}

/// A proxy config for `legacy` and `identity`, with `extra` YAML sections appended.
pub fn proxy_config(legacy: SocketAddr, identity: SocketAddr, extra: &str) -> String {
    format!(
        "listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\nvirtual_service: member-api\n\
         upstreams:\n  legacy-api.members.svc.cluster.local: {{address: \"{legacy}\", role: legacy}}\n  \
         identity.members.svc.cluster.local: {{address: \"{identity}\", role: new}}\n\
         admin_token: {ADMIN_TOKEN}\n\
         comparison:\n  ignore: [\"$..created_at\", \"$..updated_at\", \"$..token\", \"$..refresh_token\", \"$..expires_at\"]\n  learn_noise: false\n\
         {extra}"
    )
}

pub fn proxy(dir: &Path, manifest: &str, config: &str) -> ProxyProcess {
    proxy_with_env(dir, manifest, config, &[])
}

/// `proxy`, with `env` set for the process.
pub fn proxy_with_env(
    dir: &Path,
    manifest: &str,
    config: &str,
    env: &[(&str, &str)],
) -> ProxyProcess {
    let vs_path = dir.join("virtualservice.yaml");
    let cfg_path = dir.join("proxy.yaml");
    std::fs::write(&vs_path, manifest).unwrap();
    std::fs::write(&cfg_path, config).unwrap();
    let mut process = Process::start(
        "migration-proxy",
        &[
            "--virtual-service",
            vs_path.to_str().unwrap(),
            "--config",
            cfg_path.to_str().unwrap(),
            "--reload-interval-ms",
            "100",
            "--workers",
            "2",
        ],
        &[&[("RUST_LOG", "info")], env].concat(),
    );
    let line = process.wait_line("migration proxy listening");
    ProxyProcess {
        addr: json_field(&line, "listen"),
        admin: json_field(&line, "admin"),
        process,
        vs_path,
        cfg_path,
    }
}

/// Replaces a file in one step, as a ConfigMap update does.
pub fn replace_file(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// The value of one metric line (`name{labels}`) of the proxy's admin port, 0 if absent.
pub async fn metric(admin: SocketAddr, series: &str) -> f64 {
    let text = reqwest::get(format!("http://{admin}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// Polls `check` every 50 ms until it holds, for at most `limit`.
pub async fn until<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}
