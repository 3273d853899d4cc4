//! Comparison of two transcripts, step by step: equal, divergent (with the json-diff
//! lines of the normalised answers and any failed check), or — when the right side is
//! the identity service — an intended difference, checked against what the step says
//! the identity service must answer instead.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use json_diff::{Differ, RenderMode};

use crate::checks::expect_checks;
use crate::scenario::IntendedDifference;
use crate::transcript::{ScenarioRecord, StepRecord, Transcript};

/// What the right-hand transcript was recorded against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RightKind {
    /// Another legacy (Rails, or the Rust simulator): every step must be equal.
    Legacy,
    /// The identity service: steps with an intended difference are checked against it.
    Identity,
}

/// Counts for the summary line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub scenarios: usize,
    pub steps: usize,
    pub equal: usize,
    pub intended: usize,
    pub divergent: usize,
}

/// The readable report and its counts.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub text: String,
    pub summary: Summary,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Summary {
            scenarios,
            steps,
            equal,
            intended,
            divergent,
        } = self;
        write!(
            f,
            "summary: {scenarios} scenarios, {steps} steps, {equal} equal, {intended} intended, {divergent} divergent"
        )
    }
}

/// How one step (one repetition) compared.
enum Outcome {
    Equal,
    Intended(u8),
    Divergent(Vec<String>),
}

/// Compares `right` to `left` (the reference, normally a legacy transcript).
pub fn compare(left: &Transcript, right: &Transcript, kind: RightKind) -> Report {
    let mut report = Report::default();
    let differ = Differ::new().key_order(true);
    for l in &left.scenarios {
        report.summary.scenarios += 1;
        let outcomes = match right.scenarios.iter().find(|r| r.name == l.name) {
            Some(r) => scenario(&differ, l, r, kind),
            None => l
                .steps
                .iter()
                .map(|s| {
                    (
                        s,
                        Outcome::Divergent(vec!["scenario not in the right transcript".into()]),
                    )
                })
                .collect(),
        };
        write_scenario(&mut report, &l.name, outcomes);
    }
    for r in right
        .scenarios
        .iter()
        .filter(|r| !left.scenarios.iter().any(|l| l.name == r.name))
    {
        report.summary.scenarios += 1;
        let outcomes = r
            .steps
            .iter()
            .map(|s| {
                (
                    s,
                    Outcome::Divergent(vec!["scenario not in the left transcript".into()]),
                )
            })
            .collect();
        write_scenario(&mut report, &r.name, outcomes);
    }
    report
}

fn write_scenario(report: &mut Report, name: &str, outcomes: Vec<(&StepRecord, Outcome)>) {
    let mut header_written = false;
    for (step, outcome) in outcomes {
        report.summary.steps += 1;
        let line = match &outcome {
            Outcome::Equal => {
                report.summary.equal += 1;
                continue;
            }
            Outcome::Intended(number) => {
                report.summary.intended += 1;
                format!(
                    "  step {}: intended difference {number} applies — {}\n",
                    step.label(),
                    step.title()
                )
            }
            Outcome::Divergent(lines) => {
                report.summary.divergent += 1;
                let mut text = format!("  step {}: DIVERGENT — {}\n", step.label(), step.title());
                for line in lines.iter().flat_map(|l| l.lines()) {
                    let _ = writeln!(text, "      {line}");
                }
                text
            }
        };
        if !header_written {
            let _ = writeln!(report.text, "scenario {name}");
            header_written = true;
        }
        report.text.push_str(&line);
    }
}

/// Groups a scenario's records by step index, keeping their order.
fn by_index(record: &ScenarioRecord) -> BTreeMap<usize, Vec<&StepRecord>> {
    let mut groups: BTreeMap<usize, Vec<&StepRecord>> = BTreeMap::new();
    for step in &record.steps {
        groups.entry(step.index).or_default().push(step);
    }
    groups
}

fn scenario<'t>(
    differ: &Differ,
    left: &'t ScenarioRecord,
    right: &'t ScenarioRecord,
    kind: RightKind,
) -> Vec<(&'t StepRecord, Outcome)> {
    let (lefts, mut rights) = (by_index(left), by_index(right));
    let mut out = Vec::new();
    for (index, ls) in lefts {
        let rs = rights.remove(&index).unwrap_or_default();
        let intended = ls.first().and_then(|s| s.intended_difference.as_ref());
        match (kind, intended) {
            (RightKind::Identity, Some(d)) if d.eventually => {
                out.extend(eventually(differ, d, &ls, &rs))
            }
            (RightKind::Identity, Some(d)) => {
                for (i, l) in ls.iter().enumerate() {
                    let outcome = match rs.get(i) {
                        Some(r) => identity_outcome(d, r),
                        None => Outcome::Divergent(vec![
                            "no such request in the right transcript".into(),
                        ]),
                    };
                    out.push((*l, outcome));
                }
            }
            _ => {
                for (i, l) in ls.iter().enumerate() {
                    let outcome = match rs.get(i) {
                        Some(r) => pair(differ, l, r, true),
                        None => Outcome::Divergent(vec![
                            "no such request in the right transcript".into(),
                        ]),
                    };
                    out.push((*l, outcome));
                }
            }
        }
        for r in rs.iter().skip(ls.len()) {
            out.push((
                *r,
                Outcome::Divergent(vec!["no such request in the left transcript".into()]),
            ));
        }
    }
    for r in rights.into_values().flatten() {
        out.push((
            r,
            Outcome::Divergent(vec!["no such request in the left transcript".into()]),
        ));
    }
    out
}

/// Equality of two records: same request template, same normalised answer, no failed
/// check (the right side's checks only when `right_checks`).
fn pair(differ: &Differ, left: &StepRecord, right: &StepRecord, right_checks: bool) -> Outcome {
    let mut lines = Vec::new();
    if left.request != right.request {
        lines.push(
            "the requests differ: the transcripts come from different scenario files".to_owned(),
        );
    }
    let (l, r) = (left.response.to_value(), right.response.to_value());
    let diff = differ.diff(&l, &r);
    if !diff.is_empty() {
        lines.push(diff.render(RenderMode::Full).to_string());
    }
    let failed = |side: &str, step: &StepRecord| -> Vec<String> {
        step.failed_checks()
            .map(|c| {
                format!(
                    "{side} check failed: {} — {}",
                    c.what,
                    c.detail.as_deref().unwrap_or("")
                )
            })
            .collect()
    };
    lines.extend(failed("left", left));
    if right_checks {
        lines.extend(failed("right", right));
    }
    if lines.is_empty() {
        Outcome::Equal
    } else {
        Outcome::Divergent(lines)
    }
}

/// An intended-difference step on the identity side: it must answer as the step says.
fn identity_outcome(intended: &IntendedDifference, right: &StepRecord) -> Outcome {
    let failures: Vec<String> = expect_checks("identity", &intended.identity, &right.response)
        .into_iter()
        .filter(|c| !c.ok)
        .map(|c| {
            format!(
                "intended difference {}: {} — {}",
                intended.number,
                c.what,
                c.detail.unwrap_or_default()
            )
        })
        .collect();
    if failures.is_empty() {
        Outcome::Intended(intended.number)
    } else {
        Outcome::Divergent(failures)
    }
}

/// A repeated intended-difference step: each answer is either the legacy's or the
/// intended one, and the intended one comes at least once.
fn eventually<'t>(
    differ: &Differ,
    intended: &IntendedDifference,
    lefts: &[&'t StepRecord],
    rights: &[&'t StepRecord],
) -> Vec<(&'t StepRecord, Outcome)> {
    let mut outcomes = Vec::new();
    let mut seen_intended = false;
    for (i, l) in lefts.iter().enumerate() {
        let Some(r) = rights.get(i) else {
            outcomes.push((
                *l,
                Outcome::Divergent(vec!["no such request in the right transcript".into()]),
            ));
            continue;
        };
        let outcome = match identity_outcome(intended, r) {
            Outcome::Intended(n) => {
                seen_intended = true;
                Outcome::Intended(n)
            }
            _ => match pair(differ, l, r, false) {
                Outcome::Equal => Outcome::Equal,
                Outcome::Divergent(mut lines) => {
                    lines.insert(
                        0,
                        format!(
                            "neither the legacy answer nor intended difference {}:",
                            intended.number
                        ),
                    );
                    Outcome::Divergent(lines)
                }
                other => other,
            },
        };
        outcomes.push((*l, outcome));
    }
    if !seen_intended && let Some((_, outcome)) = outcomes.last_mut() {
        let line = format!(
            "intended difference {} never applied in {} attempts",
            intended.number,
            lefts.len()
        );
        match outcome {
            Outcome::Divergent(lines) => lines.push(line),
            _ => *outcome = Outcome::Divergent(vec![line]),
        }
    }
    outcomes
}

#[cfg(test)]
mod tests;
