//! The parity suite: the legacy member contract written once as scenarios (YAML data
//! under `tests/parity/scenarios/`), run against any base URL into normalised
//! transcripts, and transcripts of different targets compared step by step.
//! The scenario and transcript formats are described in `tests/parity/README.md`.

pub mod checks;
pub mod compare;
pub mod normalize;
pub mod runner;
pub mod scenario;
pub mod template;
pub mod transcript;

pub use compare::{Report, RightKind, Summary, compare};
pub use runner::{RunError, RunOptions, run};
pub use scenario::{Scenario, load_dir};
pub use transcript::Transcript;
