//! A throwaway PostgreSQL cluster for tests. As root, `initdb` refuses to run, so the
//! cluster then belongs to the `postgres` user (`su`). The server is a child of a shell
//! that waits on its standard input: when the test process exits, the pipe closes and
//! the shell stops the server and removes the cluster's files (the directory's own
//! guard lives in a static, which is never dropped), so no cluster outlives its tests.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};

struct Cluster {
    /// `postgres://postgres@127.0.0.1:PORT`, without a database name.
    base_url: String,
    _dir: tempfile::TempDir,
    _server: Mutex<Child>,
}

static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_or(54329, |a| a.port())
}

/// Runs a shell command line, as `postgres` when we are root.
fn shell(line: &str) -> Command {
    if is_root() {
        let mut c = Command::new("su");
        c.args(["postgres", "-s", "/bin/sh", "-c", line]);
        c
    } else {
        let mut c = Command::new("sh");
        c.args(["-c", line]);
        c
    }
}

fn bin_dir() -> Option<PathBuf> {
    if Command::new("initdb")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return None;
    }
    let base = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<PathBuf> = std::fs::read_dir(base)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .collect();
    versions.sort();
    versions.pop()
}

/// A new cluster's directory, its data directory in it (owned by `postgres` as root),
/// and the prefix of PostgreSQL's binaries.
fn init_cluster() -> Result<(tempfile::TempDir, PathBuf, String), String> {
    let dir = tempfile::Builder::new()
        .prefix("test-pg-")
        .tempdir()
        .map_err(|e| e.to_string())?;
    let data = dir.path().join("data");
    let bin = bin_dir()
        .map(|b| format!("{}/", b.display()))
        .unwrap_or_default();
    if is_root() {
        let status = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(dir.path())
            .status();
        if !status.is_ok_and(|s| s.success()) {
            return Err("cannot hand the cluster directory to the postgres user".into());
        }
    }
    let init = shell(&format!(
        "{bin}initdb -D '{}' -U postgres --auth=trust --no-sync -E UTF8 --locale=C.UTF-8 >/dev/null",
        data.display()
    ))
    .status()
    .map_err(|e| format!("initdb: {e}"))?;
    if !init.success() {
        return Err("initdb failed (is PostgreSQL installed?)".into());
    }
    Ok((dir, data, bin))
}

fn start() -> Result<Cluster, String> {
    let (dir, data, bin) = init_cluster()?;
    let port = free_port();
    let mut server = shell(&format!(
        "{bin}postgres -D '{}' -p {port} -k '{}' -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off \
         -c full_page_writes=off -c max_connections=200 & pid=$!; echo started; cat >/dev/null; kill -INT $pid; wait $pid; \
         rm -rf '{}'",
        data.display(),
        dir.path().display(),
        dir.path().display()
    ))
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .map_err(|e| format!("postgres: {e}"))?;
    if let Some(out) = server.stdout.take() {
        let mut line = String::new();
        let _ = BufReader::new(out).read_line(&mut line);
    }
    let base_url = format!("postgres://postgres@127.0.0.1:{port}");
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            std::thread::sleep(std::time::Duration::from_millis(200));
            return Ok(Cluster {
                base_url,
                _dir: dir,
                _server: Mutex::new(server),
            });
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    Err("postgres did not start listening".into())
}

fn psql(url: &str, sql: &str) -> Result<(), String> {
    let out = Command::new("psql")
        .args([url, "-v", "ON_ERROR_STOP=1", "-q", "-c", sql])
        .output()
        .map_err(|e| format!("psql: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// A new, empty database on the test server; its URL.
pub fn fresh_postgres_database() -> String {
    let base = match std::env::var("TEST_POSTGRES_URL") {
        Ok(url) => url.trim_end_matches("/postgres").to_owned(),
        Err(_) => match CLUSTER.get_or_init(start) {
            Ok(c) => c.base_url.clone(),
            Err(e) => panic!("cannot start a test PostgreSQL: {e}"),
        },
    };
    let mut suffix = [0u8; 6];
    getrandom::fill(&mut suffix).expect("randomness");
    let name: String = format!(
        "t_{}",
        suffix
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    psql(
        &format!("{base}/postgres"),
        &format!("CREATE DATABASE {name}"),
    )
    .expect("create test database");
    format!("{base}/{name}")
}

/// A PostgreSQL cluster of a test's own, that it crashes and starts again (the fault
/// rehearsal's two databases). Commits are durable against a crash of the server
/// (`synchronous_commit` on; `fsync` off: the machine's page cache outlives the server);
/// the port stays across restarts. Stopped and removed when dropped.
pub struct OwnPostgres {
    dir: tempfile::TempDir,
    data: PathBuf,
    bin: String,
    port: u16,
}

impl OwnPostgres {
    /// A new cluster, started.
    pub fn start() -> Result<Self, String> {
        let (dir, data, bin) = init_cluster()?;
        let pg = OwnPostgres {
            dir,
            data,
            bin,
            port: free_port(),
        };
        pg.start_again()?;
        Ok(pg)
    }

    /// [`OwnPostgres::start`] from async code (off the runtime's threads), shared so
    /// that a test can crash and start it again from tasks.
    pub async fn start_shared() -> Result<std::sync::Arc<Self>, String> {
        tokio::task::spawn_blocking(Self::start)
            .await
            .map_err(|e| format!("starting PostgreSQL: {e}"))?
            .map(std::sync::Arc::new)
    }

    /// Runs `step` ([`OwnPostgres::crash`], [`OwnPostgres::start_again`]) from async code.
    pub async fn run(
        self: &std::sync::Arc<Self>,
        step: fn(&Self) -> Result<(), String>,
    ) -> Result<(), String> {
        let pg = std::sync::Arc::clone(self);
        tokio::task::spawn_blocking(move || step(&pg))
            .await
            .map_err(|e| format!("PostgreSQL: {e}"))?
    }

    /// `postgres://postgres@127.0.0.1:PORT/{database}`.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    pub fn create_database(&self, name: &str) -> Result<String, String> {
        psql(&self.url("postgres"), &format!("CREATE DATABASE {name}"))?;
        Ok(self.url(name))
    }

    /// The server killed as a crash kills it (`pg_ctl stop -m immediate`: no checkpoint,
    /// every connection cut); it recovers from its WAL when started again.
    pub fn crash(&self) -> Result<(), String> {
        self.pg_ctl("stop -m immediate")
    }

    /// Starts the server (again), and waits until it accepts connections.
    pub fn start_again(&self) -> Result<(), String> {
        self.pg_ctl(&format!(
            "start -w -t 60 -l '{}/log' -o \"-p {} -k '{}' -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300\"",
            self.dir.path().display(),
            self.port,
            self.dir.path().display()
        ))
    }

    fn pg_ctl(&self, args: &str) -> Result<(), String> {
        let line = format!(
            "{}pg_ctl -D '{}' {args} >/dev/null",
            self.bin,
            self.data.display()
        );
        let status = shell(&line).status().map_err(|e| format!("pg_ctl: {e}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("pg_ctl {args}: {status}"))
        }
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let _ = self.pg_ctl("stop -m fast");
    }
}
