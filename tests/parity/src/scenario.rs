//! Scenarios as data: the YAML files under `tests/parity/scenarios/`, their types, and
//! the checks made when they are loaded (so that a typo fails before any request).
//! The format is documented in `tests/parity/README.md`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use json_diff::PathPattern;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::template::{BUILTIN_VARIABLES, Template, TemplateError, json_templates};

/// One scenario: a name and steps run in order, sharing captured variables.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    pub steps: Vec<Step>,
}

/// One request and what to record, capture and check about its answer.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// What the step shows, printed in reports.
    #[serde(default)]
    pub note: Option<String>,
    pub method: String,
    /// Path and query under the base URL, templated: `/api/v1/users/{{alice_id}}`.
    pub path: String,
    /// Extra request headers, values templated.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Shorthand for `Authorization: Bearer <value>`, templated.
    #[serde(default)]
    pub bearer: Option<String>,
    /// A JSON body (every string in it templated), sent as `application/json`.
    #[serde(default)]
    pub json: Option<Value>,
    /// A form body, templated, sent as `application/x-www-form-urlencoded`.
    #[serde(default)]
    pub form: Option<String>,
    /// A body sent as written (templated), with `content_type` if given.
    #[serde(default)]
    pub raw: Option<String>,
    /// The `Content-Type` of a `raw` body; none is sent without it.
    #[serde(default)]
    pub content_type: Option<String>,
    /// Send the request this many times (each answer is recorded).
    #[serde(default)]
    pub repeat: Option<u32>,
    /// Wait this long before sending (each time).
    #[serde(default)]
    pub sleep_ms: Option<u64>,
    /// Variables to set from the answer's body: name → JSON path (`$.user.id`).
    #[serde(default)]
    pub capture: BTreeMap<String, String>,
    /// What the contract says the legacy answers here.
    #[serde(default)]
    pub expect: Option<Expect>,
    /// Checks beyond transcript equality.
    #[serde(default)]
    pub assert: Vec<Assertion>,
    /// One of the contract's four intended differences applies at this step.
    #[serde(default)]
    pub intended_difference: Option<IntendedDifference>,
}

/// Expected answer, checked against the normalised response.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// The whole normalised body (`"<empty>"` for none); key order counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
    /// Top-level members the JSON body must have.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub body_has: Vec<String>,
    /// Response headers that must be present (recorded in the transcript).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers_has: Vec<String>,
}

/// Which intended difference applies, and what the identity service answers instead.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct IntendedDifference {
    /// 1 to 4, as numbered in the contract.
    pub number: u8,
    pub identity: Expect,
    /// For repeated steps: the identity service may answer like the legacy until it
    /// answers as `identity`, which it must do at least once.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub eventually: bool,
    /// When it applies (e.g. "only for passwords the identity service hashed").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A check on the raw (not normalised) answer; `path` is a JSON path into its body.
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "check", rename_all = "snake_case", deny_unknown_fields)]
pub enum Assertion {
    /// The timestamp at `path` is strictly later than the timestamp `than` (templated).
    Later { path: String, than: String },
    /// The value at `path` (as text) equals `value` (templated).
    Equals { path: String, value: String },
    /// The value at `path` (as text) differs from `value` (templated).
    Differs { path: String, value: String },
    /// The timestamp at `path` is `seconds` ahead of the local clock, within `tolerance`.
    ExpiresIn {
        path: String,
        seconds: i64,
        tolerance: i64,
    },
}

impl Assertion {
    pub fn path(&self) -> &str {
        match self {
            Assertion::Later { path, .. }
            | Assertion::Equals { path, .. }
            | Assertion::Differs { path, .. }
            | Assertion::ExpiresIn { path, .. } => path,
        }
    }
}

/// A scenario file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}", path.display())]
    Yaml {
        path: PathBuf,
        source: serde_yaml::Error,
    },
    #[error("{}: scenario {scenario:?}, step {step}: {reason}", path.display())]
    Invalid {
        path: PathBuf,
        scenario: String,
        step: usize,
        reason: String,
    },
    #[error("two scenarios are named {0:?}")]
    Duplicate(String),
}

const METHODS: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

/// Loads every `*.yaml` file of `dir`, in file name order, one scenario per file.
pub fn load_dir(dir: &Path) -> Result<Vec<Scenario>, ScenarioError> {
    let read_err = |source| ScenarioError::Read {
        path: dir.to_owned(),
        source,
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(read_err)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    let mut names = BTreeSet::new();
    let mut scenarios = Vec::new();
    for file in files {
        let scenario = load_file(&file)?;
        if !names.insert(scenario.name.clone()) {
            return Err(ScenarioError::Duplicate(scenario.name));
        }
        scenarios.push(scenario);
    }
    Ok(scenarios)
}

/// Loads and checks one scenario file.
pub fn load_file(path: &Path) -> Result<Scenario, ScenarioError> {
    let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
        path: path.to_owned(),
        source,
    })?;
    let scenario: Scenario = serde_yaml::from_str(&text).map_err(|source| ScenarioError::Yaml {
        path: path.to_owned(),
        source,
    })?;
    validate(&scenario).map_err(|(step, reason)| ScenarioError::Invalid {
        path: path.to_owned(),
        scenario: scenario.name.clone(),
        step,
        reason,
    })?;
    Ok(scenario)
}

/// Checks a scenario; on failure, the step index and what is wrong.
pub fn validate(scenario: &Scenario) -> Result<(), (usize, String)> {
    let mut known: BTreeSet<String> = BUILTIN_VARIABLES.iter().map(|s| s.to_string()).collect();
    if scenario.steps.is_empty() {
        return Err((0, "a scenario has at least one step".into()));
    }
    for (index, step) in scenario.steps.iter().enumerate() {
        validate_step(step, &known).map_err(|reason| (index, reason))?;
        known.extend(step.capture.keys().cloned());
    }
    Ok(())
}

fn validate_step(step: &Step, known: &BTreeSet<String>) -> Result<(), String> {
    if !METHODS.contains(&step.method.as_str()) {
        return Err(format!(
            "method {:?} is not one of {METHODS:?}",
            step.method
        ));
    }
    if !step.path.starts_with('/') {
        return Err(format!("path {:?} does not start with '/'", step.path));
    }
    let bodies = [step.json.is_some(), step.form.is_some(), step.raw.is_some()];
    if bodies.iter().filter(|b| **b).count() > 1 {
        return Err("at most one of json, form and raw".into());
    }
    if step.content_type.is_some() && step.raw.is_none() {
        return Err("content_type goes with a raw body".into());
    }
    if step.repeat == Some(0) {
        return Err("repeat is at least 1".into());
    }
    let mut templates = vec![Template::parse(&step.path)];
    templates.extend(step.headers.values().map(|v| Template::parse(v)));
    templates.extend(
        step.bearer
            .iter()
            .chain(&step.form)
            .chain(&step.raw)
            .map(|v| Template::parse(v)),
    );
    templates.extend(step.assert.iter().filter_map(|a| match a {
        Assertion::Later { than: v, .. }
        | Assertion::Equals { value: v, .. }
        | Assertion::Differs { value: v, .. } => Some(Template::parse(v)),
        Assertion::ExpiresIn { .. } => None,
    }));
    let mut parsed: Vec<Template> = templates
        .into_iter()
        .collect::<Result<_, TemplateError>>()
        .map_err(|e| e.to_string())?;
    if let Some(json) = &step.json {
        parsed.extend(json_templates(json).map_err(|e| e.to_string())?);
    }
    for template in &parsed {
        if let Some(unknown) = template.variables().find(|v| !known.contains(*v)) {
            return Err(format!(
                "variable {unknown:?} is neither built in nor captured by an earlier step"
            ));
        }
    }
    let paths = step
        .capture
        .values()
        .map(String::as_str)
        .chain(step.assert.iter().map(Assertion::path));
    for path in paths {
        let pattern = PathPattern::parse(path).map_err(|e| e.to_string())?;
        if !pattern.is_exact() {
            return Err(format!(
                "{path} has a wildcard; captures and checks need one location"
            ));
        }
    }
    if let Some(intended) = &step.intended_difference {
        if !(1..=4).contains(&intended.number) {
            return Err(format!(
                "intended difference {} is not one of 1 to 4",
                intended.number
            ));
        }
        if intended.identity.status.is_none() {
            return Err("intended_difference.identity needs a status".into());
        }
        if intended.eventually && step.repeat.unwrap_or(1) < 2 {
            return Err("intended_difference.eventually goes with repeat".into());
        }
    }
    Ok(())
}

impl Step {
    /// The header names whose values the transcript records for this step, lower case.
    pub fn recorded_headers(&self) -> BTreeSet<String> {
        let mut names: BTreeSet<String> =
            ["content-type", "cache-control"].map(String::from).into();
        let expects = self
            .expect
            .iter()
            .chain(self.intended_difference.iter().map(|d| &d.identity));
        for expect in expects {
            names.extend(expect.headers_has.iter().map(|h| h.to_ascii_lowercase()));
        }
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<(), (usize, String)> {
        validate(&serde_yaml::from_str::<Scenario>(yaml).unwrap())
    }

    #[test]
    fn accepts_a_well_formed_scenario() {
        let yaml = r#"
name: demo
steps:
  - method: POST
    path: /api/v1/sessions
    json: {email: "a-{{run}}@x.com", password: "{{'p' * 8}}"}
    capture: {token: $.token}
    expect: {status: 201}
    assert:
      - {check: expires_in, path: $.expires_at, seconds: 3600, tolerance: 300}
  - method: GET
    path: /api/v1/users/me
    bearer: "{{token}}"
    intended_difference: {number: 4, identity: {status: 429, headers_has: [Retry-After]}}
"#;
        assert_eq!(parse(yaml), Ok(()));
        let scenario: Scenario = serde_yaml::from_str(yaml).unwrap();
        assert!(scenario.steps[1].recorded_headers().contains("retry-after"));
    }

    #[test]
    fn rejects_unknown_variables_and_fields() {
        let yaml = "name: x\nsteps:\n  - {method: GET, path: \"/a/{{tokn}}\"}\n";
        assert!(parse(yaml).unwrap_err().1.contains("tokn"));
        let unknown_field = "name: x\nsteps:\n  - {method: GET, path: /a, bodyy: 1}\n";
        assert!(serde_yaml::from_str::<Scenario>(unknown_field).is_err());
    }

    #[test]
    fn rejects_inconsistent_steps() {
        let two_bodies = "name: x\nsteps:\n  - {method: POST, path: /a, json: {}, form: a=b}\n";
        assert!(parse(two_bodies).is_err());
        let wildcard =
            "name: x\nsteps:\n  - {method: GET, path: /a, capture: {x: '$.users[*].id'}}\n";
        assert!(parse(wildcard).is_err());
        let number = "name: x\nsteps:\n  - {method: GET, path: /a, intended_difference: {number: 5, identity: {status: 400}}}\n";
        assert!(parse(number).is_err());
        let method = "name: x\nsteps:\n  - {method: get, path: /a}\n";
        assert!(parse(method).is_err());
    }
}
