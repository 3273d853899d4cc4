//! Runs scenarios against a base URL over HTTP and records their normalised transcript.
//!
//! Each scenario run gets its own random `run` / `run_digits` values (so that it can run
//! again and again against a persistent legacy) and its own member numbering. Only a
//! failure of the run itself (target unreachable, timeout) is an error; whatever the
//! target answers is recorded.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use json_diff::Normalizer;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use serde_json::Value;

use crate::checks::{as_text, assertion_check, expect_checks, lookup};
use crate::normalize::{Context, body_normalizer};
use crate::scenario::{Scenario, Step};
use crate::template::{BUILTIN_VARIABLES, Template, Vars, render_json, run_variables};
use crate::transcript::{
    CheckRecord, FORMAT, RequestRecord, ResponseRecord, ScenarioRecord, StepRecord, Transcript,
};

/// How to run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Where the member API is, e.g. `http://127.0.0.1:3000` (paths start at `/api/v1`).
    pub base_url: String,
    /// Run only the scenario of this name.
    pub only: Option<String>,
    /// Seed of the run's random values; random when absent.
    pub seed: Option<u64>,
    /// Limit for one request.
    pub timeout: Duration,
}

/// A run that could not be completed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("no scenario is named {0:?}")]
    NoSuchScenario(String),
    #[error("cannot build the HTTP client: {0}")]
    Client(reqwest::Error),
    #[error("no random seed available: {0}")]
    Random(String),
    #[error("scenario {scenario:?}, step {step}: request to {url} failed: {message}")]
    Request {
        scenario: String,
        step: usize,
        url: String,
        message: String,
    },
}

/// Runs `scenarios` (or the one named in `options.only`); `progress` receives a line per
/// scenario.
pub async fn run(
    scenarios: &[Scenario],
    options: &RunOptions,
    mut progress: impl FnMut(&str),
) -> Result<Transcript, RunError> {
    let selected: Vec<&Scenario> = match &options.only {
        Some(name) => scenarios.iter().filter(|s| &s.name == name).collect(),
        None => scenarios.iter().collect(),
    };
    if let (Some(name), true) = (&options.only, selected.is_empty()) {
        return Err(RunError::NoSuchScenario(name.clone()));
    }
    let seed = match options.seed {
        Some(seed) => seed,
        None => getrandom::u64().map_err(|e| RunError::Random(e.to_string()))?,
    };
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(options.timeout)
        .build()
        .map_err(RunError::Client)?;
    let runner = Runner {
        client,
        base: options.base_url.trim_end_matches('/').to_owned(),
        normalizer: body_normalizer(),
    };
    let mut records = Vec::new();
    for (i, scenario) in selected.into_iter().enumerate() {
        let vars = run_variables(seed.wrapping_add((i as u64).wrapping_mul(0x9E37_79B9)));
        let record = runner.scenario(scenario, vars).await?;
        let failed = record
            .steps
            .iter()
            .map(|s| s.failed_checks().count())
            .sum::<usize>();
        progress(&format!(
            "{}: {} requests, {failed} failed checks",
            scenario.name,
            record.steps.len()
        ));
        records.push(record);
    }
    Ok(Transcript {
        format: FORMAT,
        target: options.base_url.clone(),
        scenarios: records,
    })
}

struct Runner {
    client: reqwest::Client,
    base: String,
    normalizer: Normalizer<Context>,
}

/// What one request gave.
struct Answer {
    record: StepRecord,
    /// The body as received, when it is JSON (captures and assertions read it).
    raw: Option<Value>,
}

impl Runner {
    async fn scenario(
        &self,
        scenario: &Scenario,
        mut vars: Vars,
    ) -> Result<ScenarioRecord, RunError> {
        let mut ctx = Context::new(
            BUILTIN_VARIABLES
                .iter()
                .map(|name| (*name, vars[*name].as_str())),
        );
        let mut steps = Vec::new();
        for (index, step) in scenario.steps.iter().enumerate() {
            let times = step.repeat.unwrap_or(1);
            let mut last = None;
            for repetition in 1..=times {
                if let Some(ms) = step.sleep_ms {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                }
                let answer =
                    self.request(step, &vars, &mut ctx)
                        .await
                        .map_err(|(url, message)| RunError::Request {
                            scenario: scenario.name.clone(),
                            step: index,
                            url,
                            message,
                        })?;
                let mut record = answer.record;
                record.index = index;
                record.repetition = step.repeat.map(|_| repetition);
                steps.push(record);
                last = Some(answer.raw);
            }
            let raw = last.flatten();
            for (name, path) in &step.capture {
                match lookup(raw.as_ref(), path) {
                    Some(value) => {
                        vars.insert(name.clone(), as_text(value));
                    }
                    None => {
                        vars.remove(name);
                        let check = CheckRecord::fail(
                            format!("capture {name} from {path}"),
                            "no value there",
                        );
                        steps
                            .last_mut()
                            .expect("a step was recorded")
                            .checks
                            .push(check);
                    }
                }
            }
        }
        Ok(ScenarioRecord {
            name: scenario.name.clone(),
            steps,
        })
    }

    /// Sends one request; on failure, the URL and what went wrong.
    async fn request(
        &self,
        step: &Step,
        vars: &Vars,
        ctx: &mut Context,
    ) -> Result<Answer, (String, String)> {
        let render = |text: &str| {
            Template::parse(text)
                .map(|t| t.render(vars))
                .unwrap_or_else(|_| text.to_owned())
        };
        let url = format!("{}{}", self.base, render(&step.path));
        let method = reqwest::Method::from_bytes(step.method.as_bytes())
            .map_err(|e| (url.clone(), e.to_string()))?;
        let mut request = self.client.request(method, &url);
        let mut recorded_headers = step.headers.clone();
        for (name, value) in &step.headers {
            request = request.header(name, render(value));
        }
        if let Some(token) = &step.bearer {
            request = request.header(AUTHORIZATION, format!("Bearer {}", render(token)));
            recorded_headers.insert("Authorization".into(), format!("Bearer {token}"));
        }
        let (body_kind, body, content_type) = if let Some(json) = &step.json {
            let bytes = serde_json::to_vec(&render_json(json, vars)).expect("JSON serialises");
            request = request.header(CONTENT_TYPE, "application/json").body(bytes);
            (
                Some("json"),
                Some(json.clone()),
                Some("application/json".to_owned()),
            )
        } else if let Some(form) = &step.form {
            request = request
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(render(form));
            (
                Some("form"),
                Some(Value::String(form.clone())),
                Some("application/x-www-form-urlencoded".to_owned()),
            )
        } else if let Some(raw) = &step.raw {
            if let Some(content_type) = &step.content_type {
                request = request.header(CONTENT_TYPE, content_type.as_str());
            }
            request = request.body(render(raw));
            (
                Some("raw"),
                Some(Value::String(raw.clone())),
                step.content_type.clone(),
            )
        } else {
            (None, None, None)
        };
        let response = request
            .send()
            .await
            .map_err(|e| (url.clone(), describe(&e)))?;
        let status = response.status().as_u16();
        let headers = step
            .recorded_headers()
            .into_iter()
            .filter_map(|name| {
                let value = response.headers().get(name.as_str())?;
                Some((name, String::from_utf8_lossy(value.as_bytes()).into_owned()))
            })
            .collect();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| (url.clone(), describe(&e)))?;
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);

        let (body_kind_out, normalised, raw) = if bytes.is_empty() {
            ("empty", Value::String("<empty>".into()), None)
        } else {
            match serde_json::from_slice::<Value>(&bytes) {
                Ok(raw) => {
                    let mut normalised = raw.clone();
                    self.normalizer.apply(&mut normalised, ctx);
                    ("json", normalised, Some(raw))
                }
                Err(_) => (
                    "text",
                    Value::String(ctx.strip_run_values(&String::from_utf8_lossy(&bytes))),
                    None,
                ),
            }
        };
        let response = ResponseRecord {
            status,
            headers,
            body_kind: body_kind_out.into(),
            body: normalised,
        };
        let mut checks = Vec::new();
        if let Some(expect) = &step.expect {
            checks.extend(expect_checks("contract", expect, &response));
        }
        for assertion in &step.assert {
            checks.push(assertion_check(assertion, raw.as_ref(), vars, now_ms));
        }
        let request = RequestRecord {
            method: step.method.clone(),
            path: step.path.clone(),
            headers: recorded_headers,
            body_kind: body_kind.map(String::from),
            body,
            content_type,
        };
        let record = StepRecord {
            index: 0,
            repetition: None,
            note: step.note.clone(),
            request,
            response,
            checks,
            intended_difference: step.intended_difference.clone(),
        };
        Ok(Answer { record, raw })
    }
}

/// A request error with its causes (reqwest's own message is terse).
fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
