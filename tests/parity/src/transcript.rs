//! Transcripts: what a run of the scenarios against one target recorded, normalised so
//! that runs of different targets (or of one target at different times) compare equal
//! exactly when they behave alike. Written and read as JSON.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::scenario::IntendedDifference;

/// The version of the transcript format written by this code.
pub const FORMAT: u32 = 1;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Transcript {
    pub format: u32,
    /// The base URL the run was made against (informational).
    pub target: String,
    pub scenarios: Vec<ScenarioRecord>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ScenarioRecord {
    pub name: String,
    pub steps: Vec<StepRecord>,
}

/// One request and its answer; a step with `repeat` gives one record per repetition.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct StepRecord {
    /// Index of the step in its scenario, from 0.
    pub index: usize,
    /// 1, 2, … for the repetitions of a repeated step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repetition: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The request as written in the scenario (templates not substituted).
    pub request: RequestRecord,
    pub response: ResponseRecord,
    /// Results of the step's expectations, assertions and captures.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<CheckRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intended_difference: Option<IntendedDifference>,
}

impl StepRecord {
    /// `3` or `3.2` (third step, second repetition), for reports.
    pub fn label(&self) -> String {
        match self.repetition {
            Some(r) => format!("{}.{r}", self.index),
            None => self.index.to_string(),
        }
    }

    /// `POST /api/v1/users (note)`, for reports.
    pub fn title(&self) -> String {
        let mut title = format!("{} {}", self.request.method, self.request.path);
        if let Some(note) = &self.note {
            title.push_str(&format!(" ({note})"));
        }
        title
    }

    pub fn failed_checks(&self) -> impl Iterator<Item = &CheckRecord> {
        self.checks.iter().filter(|c| !c.ok)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RequestRecord {
    pub method: String,
    pub path: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// `json`, `form` or `raw`; absent without a body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
}

/// The normalised answer. Its JSON form is what two transcripts compare.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ResponseRecord {
    pub status: u16,
    /// Recorded headers (lower-case names) that were present: always `content-type`
    /// and `cache-control`, plus those a step's expectations name.
    pub headers: BTreeMap<String, String>,
    /// `json`, `empty` or `text`.
    pub body_kind: String,
    /// The normalised JSON body, `"<empty>"`, or the text.
    pub body: Value,
}

impl ResponseRecord {
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).expect("a response record is JSON")
    }
}

/// The outcome of one check: `what` is stable across runs, `detail` explains a failure.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CheckRecord {
    pub what: String,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl CheckRecord {
    pub fn pass(what: impl Into<String>) -> Self {
        Self {
            what: what.into(),
            ok: true,
            detail: None,
        }
    }

    pub fn fail(what: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            what: what.into(),
            ok: false,
            detail: Some(detail.into()),
        }
    }

    pub fn new(what: impl Into<String>, failure: Option<String>) -> Self {
        match failure {
            None => Self::pass(what),
            Some(detail) => Self::fail(what, detail),
        }
    }
}

/// A transcript file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TranscriptError {
    #[error("cannot read or write {path}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a transcript")]
    Json {
        path: String,
        source: serde_json::Error,
    },
    #[error("{path} has transcript format {found}, this parity reads {FORMAT}")]
    Format { path: String, found: u32 },
}

impl Transcript {
    pub fn read(path: &Path) -> Result<Self, TranscriptError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| TranscriptError::Io {
            path: shown.clone(),
            source,
        })?;
        let transcript: Transcript =
            serde_json::from_str(&text).map_err(|source| TranscriptError::Json {
                path: shown.clone(),
                source,
            })?;
        if transcript.format != FORMAT {
            return Err(TranscriptError::Format {
                path: shown,
                found: transcript.format,
            });
        }
        Ok(transcript)
    }

    pub fn write(&self, path: &Path) -> Result<(), TranscriptError> {
        let shown = path.display().to_string();
        let mut text =
            serde_json::to_string_pretty(self).map_err(|source| TranscriptError::Json {
                path: shown.clone(),
                source,
            })?;
        text.push('\n');
        std::fs::write(path, text).map_err(|source| TranscriptError::Io {
            path: shown,
            source,
        })
    }
}
