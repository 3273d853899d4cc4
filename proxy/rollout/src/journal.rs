//! The autopilot's journal: every decision, one JSON line each, appended to a file that
//! outlives the run (`--journal`), so that a later run, `rollout report` and the
//! decommission report see the whole rollout, not one run of it. A line that cannot be
//! read is an error (a journal is evidence: it is not silently shortened).

use std::io::Write;
use std::path::PathBuf;

use crate::autopilot::Decision;
use crate::fleet::Failure;

/// The decisions so far, and where they are kept.
pub struct Journal {
    path: Option<PathBuf>,
    decisions: Vec<Decision>,
}

impl Journal {
    /// A journal in memory only.
    pub fn in_memory() -> Self {
        Self {
            path: None,
            decisions: Vec::new(),
        }
    }

    /// The journal at `path`, with the decisions it holds (none if it does not exist).
    pub fn open(path: PathBuf) -> Result<Self, Failure> {
        let decisions = match std::fs::read_to_string(&path) {
            Ok(text) => text
                .lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty())
                .map(|(i, l)| {
                    serde_json::from_str::<Decision>(l).map_err(|e| {
                        Failure::Usage(format!("{}:{}: not a decision: {e}", path.display(), i + 1))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(Failure::Usage(format!("{}: {e}", path.display()))),
        };
        Ok(Self {
            path: Some(path),
            decisions,
        })
    }

    pub fn decisions(&self) -> &[Decision] {
        &self.decisions
    }

    /// Appends a decision (and syncs the file: a decision acted on is never lost).
    pub fn record(&mut self, d: &Decision) -> Result<(), Failure> {
        if let Some(path) = &self.path {
            let line = serde_json::to_string(d)
                .map_err(|e| Failure::Usage(format!("decision not written: {e}")))?;
            let io = |e: std::io::Error| Failure::Usage(format!("{}: {e}", path.display()));
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(io)?;
            writeln!(file, "{line}").map_err(io)?;
            file.sync_data().map_err(io)?;
        }
        self.decisions.push(d.clone());
        Ok(())
    }
}
