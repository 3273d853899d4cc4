//! The proxy's live configuration: the route table built from the VirtualService and
//! the proxy config, with the runtime overrides (admin weight changes and guard aborts)
//! laid over it, and the comparator built from the config's comparison rules. A reload
//! reads both files and builds and validates every part (routing, comparison, guard,
//! limits) before any is installed, then swaps them in one step: a refusal of any part
//! leaves every previous setting in force. In-flight requests keep the view they
//! started with.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use proxy_routing::{Overrides, ProxyConfig, RouteTable, VirtualService};
use shadow_compare::{Comparator, CompareConfig};

/// One consistent view: both files' contents, as applied.
pub struct Snapshot {
    pub config: ProxyConfig,
    pub table: RouteTable,
    /// The table before overrides (what the manifest says).
    pub manifest: RouteTable,
    /// The comparison rules of `config`, compiled.
    pub comparator: Arc<Comparator>,
}

/// The comparator's settings from the proxy config's `comparison` section.
fn compare_config(config: &ProxyConfig) -> CompareConfig {
    let c = &config.comparison;
    let mut out = CompareConfig {
        ignore: c.ignore.iter().map(|p| p.as_str().to_owned()).collect(),
        headers: c.headers.iter().map(|h| h.as_str().to_owned()).collect(),
        max_body_bytes: c.max_body_bytes,
        ..CompareConfig::default()
    };
    out.noise.learn = c.learn_noise;
    out.noise.relative = c.noise_relative;
    out.noise.absolute = c.noise_absolute;
    out
}

/// Where the files are, and what was last seen of them.
struct Files {
    virtual_service: PathBuf,
    config: PathBuf,
    seen: Option<(Option<SystemTime>, Option<SystemTime>, u64)>,
}

pub struct Live {
    current: RwLock<Arc<Snapshot>>,
    overrides: Mutex<Overrides>,
    files: Mutex<Files>,
}

/// Why a load failed; the message names the file and the problem.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {reason}")]
pub struct LoadError {
    pub file: String,
    pub reason: String,
}

fn read(path: &Path) -> Result<String, LoadError> {
    std::fs::read_to_string(path).map_err(|e| LoadError {
        file: path.display().to_string(),
        reason: e.to_string(),
    })
}

fn fingerprint(a: &str, b: &str) -> u64 {
    // FNV-1a over both files: cheap change detection for the poll loop.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in a.bytes().chain([0u8]).chain(b.bytes()) {
        h ^= u64::from(byte);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn build(
    vs_path: &Path,
    vs_text: &str,
    cfg_path: &Path,
    cfg_text: &str,
    overrides: &Overrides,
) -> Result<Snapshot, LoadError> {
    let config = ProxyConfig::from_yaml(cfg_text).map_err(|e| LoadError {
        file: cfg_path.display().to_string(),
        reason: e.to_string(),
    })?;
    let vs = VirtualService::parse(vs_text, config.virtual_service.as_deref()).map_err(|e| {
        LoadError {
            file: vs_path.display().to_string(),
            reason: e.to_string(),
        }
    })?;
    let manifest = RouteTable::build(&vs, &config).map_err(|e| LoadError {
        file: vs_path.display().to_string(),
        reason: e.to_string(),
    })?;
    config.check_rules(&manifest).map_err(|e| LoadError {
        file: cfg_path.display().to_string(),
        reason: e.to_string(),
    })?;
    let table = manifest.with_overrides(overrides).map_err(|e| LoadError {
        file: "runtime overrides".into(),
        reason: e.to_string(),
    })?;
    let comparator = Comparator::new(compare_config(&config)).map_err(|e| LoadError {
        file: cfg_path.display().to_string(),
        reason: format!("comparison.{e}"),
    })?;
    Ok(Snapshot {
        config,
        table,
        manifest,
        comparator: Arc::new(comparator),
    })
}

impl Live {
    /// Loads both files; any error is fatal at start-up.
    pub fn load(virtual_service: &Path, config: &Path) -> Result<Self, LoadError> {
        let (vs_text, cfg_text) = (read(virtual_service)?, read(config)?);
        let snapshot = build(
            virtual_service,
            &vs_text,
            config,
            &cfg_text,
            &Overrides::new(),
        )?;
        let seen = Some((
            mtime(virtual_service),
            mtime(config),
            fingerprint(&vs_text, &cfg_text),
        ));
        Ok(Self {
            current: RwLock::new(Arc::new(snapshot)),
            overrides: Mutex::new(Overrides::new()),
            files: Mutex::new(Files {
                virtual_service: virtual_service.into(),
                config: config.into(),
                seen,
            }),
        })
    }

    /// The view in force now.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        match self.current.read() {
            Ok(g) => Arc::clone(&g),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    fn install(&self, snapshot: Snapshot) {
        let next = Arc::new(snapshot);
        match self.current.write() {
            Ok(mut g) => *g = next,
            Err(poisoned) => *poisoned.into_inner() = next,
        }
    }

    /// Re-reads the files if they changed. `Ok(true)` when a new table is in force,
    /// `Ok(false)` when nothing changed, `Err` when a changed file was refused (the
    /// previous table stays).
    pub fn reload_if_changed(&self) -> Result<bool, LoadError> {
        let mut files = self.files.lock().unwrap_or_else(|p| p.into_inner());
        let (vs_m, cfg_m) = (mtime(&files.virtual_service), mtime(&files.config));
        // Unchanged times prove nothing while they are recent: file times come from a
        // coarse clock, and two writes within one of its ticks carry the same time.
        if let Some((a, b, _)) = files.seen
            && a == vs_m
            && b == cfg_m
            && settled(vs_m)
            && settled(cfg_m)
        {
            return Ok(false);
        }
        let (vs_text, cfg_text) = (read(&files.virtual_service)?, read(&files.config)?);
        let print = fingerprint(&vs_text, &cfg_text);
        if files.seen.is_some_and(|(_, _, f)| f == print) {
            files.seen = Some((vs_m, cfg_m, print));
            return Ok(false);
        }
        // Remember the attempt so that a refused file is reported once, not every poll.
        files.seen = Some((vs_m, cfg_m, print));
        let mut overrides = self.overrides.lock().unwrap_or_else(|p| p.into_inner());
        let mut snapshot = build(
            &files.virtual_service,
            &vs_text,
            &files.config,
            &cfg_text,
            &Overrides::new(),
        )?;
        // The overrides of routes still there, laid over the new table; kept only if
        // the whole reload is.
        let mut kept = overrides.clone();
        let dropped = kept.retain_known(&snapshot.manifest);
        snapshot.table = snapshot
            .manifest
            .with_overrides(&kept)
            .map_err(|e| LoadError {
                file: "runtime overrides".into(),
                reason: e.to_string(),
            })?;
        for name in dropped {
            tracing::warn!(route = %name, "override dropped: the route is gone from the VirtualService");
        }
        *overrides = kept;
        self.install(snapshot);
        Ok(true)
    }

    /// Applies a change to the overrides and rebuilds the table from the current files'
    /// view (no re-read).
    pub fn update_overrides<T>(
        &self,
        change: impl FnOnce(&mut Overrides) -> Result<T, String>,
    ) -> Result<T, String> {
        let mut overrides = self.overrides.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = overrides.clone();
        let out = change(&mut next)?;
        let current = self.snapshot();
        let table = current
            .manifest
            .with_overrides(&next)
            .map_err(|e| e.to_string())?;
        *overrides = next;
        self.install(Snapshot {
            config: current.config.clone(),
            table,
            manifest: current.manifest.clone(),
            comparator: Arc::clone(&current.comparator),
        });
        Ok(out)
    }

    /// The overrides in force.
    pub fn overrides(&self) -> Overrides {
        self.overrides
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

fn mtime(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// How long after its modification time a file's time is trusted to tell a change:
/// longer than the tick of any file system's clock (1 s on some).
const RACY_WINDOW: Duration = Duration::from_secs(2);

/// Whether a file time is old enough that a later write would carry another one.
fn settled(time: Option<SystemTime>) -> bool {
    time.and_then(|t| SystemTime::now().duration_since(t).ok())
        .is_some_and(|age| age > RACY_WINDOW)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = include_str!("../../../istio/virtualservice-member-api.yaml");
    const CONFIG: &str = include_str!("../../config/local.yaml");

    #[test]
    fn a_change_within_one_tick_of_the_file_clock_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let (vs, cfg) = (dir.path().join("vs.yaml"), dir.path().join("proxy.yaml"));
        std::fs::write(&vs, MANIFEST).unwrap();
        std::fs::write(&cfg, CONFIG).unwrap();
        let live = Live::load(&vs, &cfg).unwrap();
        let before = mtime(&vs).unwrap();
        let share = |live: &Live| live.snapshot().table.routes()[0].manifest_basis_points();
        assert_eq!(share(&live), 100);
        // A new manifest carrying the same modification time as the one loaded.
        let changed = MANIFEST.replacen("weight: 99", "weight: 90", 1).replacen(
            "weight: 1\n",
            "weight: 10\n",
            1,
        );
        assert_ne!(changed, MANIFEST);
        std::fs::write(&vs, &changed).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&vs)
            .unwrap()
            .set_modified(before)
            .unwrap();
        assert_eq!(mtime(&vs), Some(before));
        assert!(live.reload_if_changed().unwrap());
        assert_eq!(share(&live), 1000);
        // Nothing new: nothing reloaded.
        assert!(!live.reload_if_changed().unwrap());
    }
}
