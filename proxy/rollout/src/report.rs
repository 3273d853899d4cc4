//! The decommission report: per route, the time at each step, the requests and the
//! comparisons by kind, the agreement with its 95% lower bound, the aborts and their
//! causes; and the final data verify. Built from the autopilot's journal (the evidence
//! each step was judged on), printed by `rollout report`, published on the proxies'
//! dashboards and read by `identity migrate cutover`, which refuses without a passing
//! one unless forced.
//!
//! A report passes when every route rolled out reached 100% and, since its last abort,
//! passed every step of the plan below 100% on evidence (an operator's manual step is
//! no evidence), when every route expected (the manifest's) is in it, when the final
//! data verify found no difference, and when every route is at 100% now, in the
//! manifest and on every replica, none aborted.

use serde::{Deserialize, Serialize};

use crate::autopilot::{Action, Decision, VerifyFigures};
use crate::evidence::Figures;
use crate::fleet::Fleet;

/// How long before the journal's first decision the final data verify starts: writes in
/// flight when the rollout began are the rollout's too.
const FINAL_VERIFY_MARGIN_MICROS: i64 = 60_000_000;

/// The final data verify: every member written since the rollout began, on both
/// databases, asked of the first replica that answers (through the journal's first
/// route). `None` without a journal.
pub async fn final_verify(
    fleet: &Fleet,
    journal: &[Decision],
) -> Result<Option<VerifyFigures>, String> {
    let Some(first) = journal.first() else {
        return Ok(None);
    };
    let since = first.at_micros.saturating_sub(FINAL_VERIFY_MARGIN_MICROS);
    fleet.verify(&first.route, since, &[]).await.map(Some)
}

/// One step of a route.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepReport {
    pub percent: u32,
    /// Seconds at the step.
    pub secs: f64,
    /// `advanced`, `completed` (to 100%), `aborted`, `gave_up` or `in_progress`.
    pub outcome: String,
    pub figures: Figures,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<VerifyFigures>,
}

/// An abort and its cause.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AbortReport {
    pub at: String,
    pub percent: u32,
    pub reason: String,
}

/// One route.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteReport {
    pub route: String,
    /// Where the route is now, as the journal last moved it.
    pub percent: u32,
    /// Reached 100% with every step below it passed since the last abort.
    pub passed: bool,
    pub steps: Vec<StepReport>,
    pub aborts: Vec<AbortReport>,
    /// Every step's evidence summed.
    pub totals: Figures,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub generated_at: String,
    pub generated_at_micros: i64,
    /// The target the steps were held to (the last decision's).
    pub target: f64,
    pub passed: bool,
    /// Why it does not pass (empty when it does).
    pub why_not: Vec<String>,
    pub routes: Vec<RouteReport>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_verify: Option<VerifyFigures>,
}

/// The report of the decisions in `journal`, with the final data verify if one was
/// made, expecting `expected` routes (none: only the journal's).
pub fn build(
    journal: &[Decision],
    final_verify: Option<VerifyFigures>,
    expected: &[String],
) -> Report {
    let now = member_contract::Timestamp::now_from_system();
    let mut names: Vec<String> = Vec::new();
    for d in journal {
        if !names.contains(&d.route) {
            names.push(d.route.clone());
        }
    }
    let routes: Vec<RouteReport> = names.iter().map(|r| route(journal, r)).collect();
    let mut why_not = Vec::new();
    for r in &routes {
        if !r.passed {
            why_not.push(format!(
                "{}: at {}%, not every step of the plan passed on evidence since its last abort",
                r.route, r.percent
            ));
        }
    }
    for e in expected {
        if !names.contains(e) {
            why_not.push(format!("{e}: never rolled out by the autopilot"));
        }
    }
    if routes.is_empty() {
        why_not.push("the journal holds no decision".into());
    }
    match &final_verify {
        None => why_not.push("no final data verify".into()),
        Some(v) if v.deviating > 0 => why_not.push(format!(
            "the final data verify found {} of {} members differing",
            v.deviating, v.compared
        )),
        Some(_) => {}
    }
    Report {
        generated_at: now.to_json_string(),
        generated_at_micros: now.as_micros(),
        target: journal.last().map_or(0.99999, |d| d.target),
        passed: why_not.is_empty(),
        why_not,
        routes,
        final_verify,
    }
}

/// Fails `report` unless every route it covers is at 100% now: in the manifest
/// (`manifest`: route and percent) and on every replica (`live`: each replica's routes,
/// or why it could not be read), none of them aborted. An abort or a lowered weight
/// after the autopilot finished undoes what the journal says.
pub fn require_live(
    report: &mut Report,
    manifest: &[(String, u32)],
    live: &[(
        String,
        Result<Vec<crate::status::RouteStatus>, crate::fleet::Failure>,
    )],
) {
    let mut why = Vec::new();
    for (route, percent) in manifest {
        if *percent != 100 {
            why.push(format!("{route}: the manifest says {percent}% now"));
        }
    }
    for (replica, routes) in live {
        let routes = match routes {
            Ok(routes) => routes,
            Err(e) => {
                why.push(format!("replica {replica} could not be asked: {e}"));
                continue;
            }
        };
        for r in routes
            .iter()
            .filter(|r| manifest.iter().any(|(m, _)| m == &r.name))
        {
            if r.state == "aborted" || r.share < 100.0 {
                why.push(format!(
                    "{}: {:.1}% on replica {replica} now{}",
                    r.name,
                    r.share,
                    if r.state == "aborted" {
                        format!(
                            ", aborted by the {}",
                            r.aborted_by.as_deref().unwrap_or("guard")
                        )
                    } else {
                        String::new()
                    }
                ));
            }
        }
    }
    if !why.is_empty() {
        report.passed = false;
        report.why_not.extend(why);
    }
}

fn route(journal: &[Decision], name: &str) -> RouteReport {
    let mine: Vec<&Decision> = journal.iter().filter(|d| d.route == name).collect();
    let mut steps: Vec<StepReport> = Vec::new();
    let mut aborts = Vec::new();
    let mut percent = 0;
    let mut open: Option<&Decision> = None;
    for d in &mine {
        percent = d.percent;
        let outcome = match d.action {
            Action::Start | Action::Hold | Action::Pause => {
                open = Some(d);
                continue;
            }
            Action::Advance => "advanced",
            Action::Done if d.to.is_none() => {
                // Taken over at 100%: nothing judged.
                open = None;
                continue;
            }
            Action::Done => "completed",
            Action::Abort => "aborted",
            Action::GiveUp => "gave_up",
        };
        open = None;
        if d.action == Action::Abort {
            aborts.push(AbortReport {
                at: d.at.clone(),
                percent: d.percent,
                reason: d.reason.clone(),
            });
        }
        percent = d.to.unwrap_or(d.percent);
        steps.push(StepReport {
            percent: d.percent,
            secs: d.step_secs,
            outcome: outcome.into(),
            figures: d.figures.clone(),
            verify: d.verify.clone(),
        });
    }
    if let Some(d) = open {
        steps.push(StepReport {
            percent: d.percent,
            secs: d.step_secs,
            outcome: "in_progress".into(),
            figures: d.figures.clone(),
            verify: None,
        });
    }
    let totals = steps
        .iter()
        .fold(Figures::default(), |sum, s| sum.plus(&s.figures));
    // Since the last abort, every step of the plan below 100 passed.
    let plan = mine.last().map(|d| d.plan.clone()).unwrap_or_default();
    let last_abort = steps.iter().rposition(|s| s.outcome == "aborted");
    let since: &[StepReport] = match last_abort {
        Some(i) => &steps[i + 1..],
        None => &steps,
    };
    let passed_at = |p: u32| {
        since
            .iter()
            .any(|s| s.percent == p && (s.outcome == "advanced" || s.outcome == "completed"))
    };
    let passed = percent == 100
        && since.iter().any(|s| s.outcome == "completed")
        && plan.iter().filter(|p| **p < 100).all(|p| passed_at(*p));
    RouteReport {
        route: name.to_owned(),
        percent,
        passed,
        steps,
        aborts,
        totals,
    }
}

/// The report for people.
pub fn text(r: &Report) -> String {
    let pct = |a: Option<f64>| a.map_or("-".to_owned(), |a| format!("{:.4}%", a * 100.0));
    let mut out = format!(
        "Decommission report, {} (target {} agreement)\n",
        r.generated_at,
        crate::autopilot::percent(r.target)
    );
    for route in &r.routes {
        let t = &route.totals;
        out.push_str(&format!(
            "\n{}: at {}%, {}\n  {} requests (legacy {}, new {}); reads {} compared, {} mismatched ({} lagging); write effects {} compared, {} mismatched ({} not judged); write answers {} compared, {} mismatched\n  agreement {} (≥ {} at 95% confidence)\n",
            route.route,
            route.percent,
            if route.passed { "PASSED" } else { "NOT PASSED" },
            t.requests.legacy + t.requests.new,
            t.requests.legacy,
            t.requests.new,
            t.reads.compared,
            t.reads.mismatches,
            t.reads_lagging,
            t.write_effects.compared,
            t.write_effects.mismatches,
            t.write_effects_unjudged,
            t.write_answers.compared,
            t.write_answers.mismatches,
            pct(t.agreement),
            pct(t.agreement_lower_95),
        ));
        out.push_str(&format!(
            "  {:>5} {:>8} {:<12} {:>9} {:>9} {:>10} {:>9} {:>12}\n",
            "STEP", "TIME", "OUTCOME", "REQUESTS", "READS", "EFFECTS", "VERIFIED", "AGREEMENT"
        ));
        for s in &route.steps {
            let f = &s.figures;
            out.push_str(&format!(
                "  {:>4}% {:>7.0}s {:<12} {:>9} {:>9} {:>10} {:>9} {:>12}\n",
                s.percent,
                s.secs,
                s.outcome,
                f.requests.legacy + f.requests.new,
                f.reads.compared,
                f.write_effects.compared,
                s.verify
                    .as_ref()
                    .map_or("-".to_owned(), |v| v.compared.to_string()),
                pct(f.agreement),
            ));
        }
        for a in &route.aborts {
            out.push_str(&format!(
                "  aborted at {}% ({}): {}\n",
                a.percent, a.at, a.reason
            ));
        }
    }
    match &r.final_verify {
        Some(v) => out.push_str(&format!(
            "\nfinal data verify: {} members compared, {} differing{}\n",
            v.compared,
            v.deviating,
            if v.fields.is_empty() {
                String::new()
            } else {
                format!(
                    " ({})",
                    v.fields.keys().cloned().collect::<Vec<_>>().join(", ")
                )
            }
        )),
        None => out.push_str("\nfinal data verify: not made\n"),
    }
    if r.passed {
        out.push_str(
            "PASSED: the legacy may be decommissioned (identity migrate cutover --report)\n",
        );
    } else {
        out.push_str("NOT PASSED:\n");
        for w in &r.why_not {
            out.push_str(&format!("  - {w}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::Tally;

    fn decision(route: &str, percent: u32, action: Action, to: Option<u32>) -> Decision {
        Decision {
            at: "2026-12-04T20:00:00.000Z".into(),
            at_micros: 0,
            route: route.into(),
            percent,
            action,
            to,
            reason: String::new(),
            step_secs: 10.0,
            figures: Figures {
                reads: Tally {
                    compared: 100,
                    mismatches: 0,
                },
                ..Figures::default()
            },
            verify: None,
            target: 0.99999,
            plan: vec![1, 50, 100],
        }
    }

    fn clean() -> Option<VerifyFigures> {
        Some(VerifyFigures {
            compared: 10,
            ..VerifyFigures::default()
        })
    }

    #[test]
    fn a_route_passes_only_through_every_step_since_its_last_abort() {
        let complete = vec![
            decision("r", 0, Action::Start, None),
            decision("r", 0, Action::Advance, Some(1)),
            decision("r", 1, Action::Advance, Some(50)),
            decision("r", 50, Action::Done, Some(100)),
        ];
        let r = build(&complete, clean(), &["r".into()]);
        assert!(r.passed, "{:?}", r.why_not);
        assert_eq!(r.routes[0].totals.reads.compared, 300);
        assert_eq!(r.routes[0].steps.len(), 3);

        // Aborted at 50%, then resumed by hand at 50% and completed: 1% was not passed
        // since the abort.
        let resumed = vec![
            decision("r", 0, Action::Advance, Some(1)),
            decision("r", 1, Action::Advance, Some(50)),
            decision("r", 50, Action::Abort, Some(0)),
            decision("r", 50, Action::Start, None),
            decision("r", 50, Action::Done, Some(100)),
        ];
        let r = build(&resumed, clean(), &[]);
        assert!(!r.passed);
        assert_eq!(r.routes[0].aborts.len(), 1);

        // Complete, but another route of the manifest never rolled out, or no verify.
        assert!(!build(&complete, clean(), &["r".into(), "other".into()]).passed);
        assert!(!build(&complete, None, &[]).passed);
        let dirty = Some(VerifyFigures {
            compared: 10,
            deviating: 1,
            ..VerifyFigures::default()
        });
        assert!(!build(&complete, dirty, &[]).passed);
        assert!(!build(&[], clean(), &[]).passed);
        assert!(text(&build(&complete, clean(), &[])).contains("PASSED"));
        assert!(text(&build(&complete, clean(), &[])).contains("(target 99.999% agreement)"));

        // Passing by the journal, but not now: lowered in the manifest, aborted on a
        // replica, or a replica that cannot be asked.
        let status = |share: f64, state: &str| crate::status::RouteStatus {
            name: "r".into(),
            share,
            manifest_share: 100.0,
            state: state.into(),
            legacy_rate: 0.0,
            new_rate: 0.0,
            new_error_rate: 0.0,
            mismatch_rate: 0.0,
            new_p99_ms: None,
            legacy_p99_ms: None,
            top_field: None,
            aborted_by: (state == "aborted").then(|| "operator".to_owned()),
            abort_message: None,
        };
        let at_100 = [("r".to_owned(), 100)];
        let live = |share, state: &str| vec![("a".to_owned(), Ok(vec![status(share, state)]))];
        let mut r = build(&complete, clean(), &[]);
        require_live(&mut r, &at_100, &live(100.0, "running"));
        assert!(r.passed, "{:?}", r.why_not);
        let mut r = build(&complete, clean(), &[]);
        require_live(&mut r, &[("r".to_owned(), 0)], &live(100.0, "running"));
        assert!(!r.passed && r.why_not[0].contains("the manifest says 0%"));
        let mut r = build(&complete, clean(), &[]);
        require_live(&mut r, &at_100, &live(0.0, "aborted"));
        assert!(
            !r.passed && r.why_not[0].contains("aborted by the operator"),
            "{:?}",
            r.why_not
        );
        let mut r = build(&complete, clean(), &[]);
        let away = vec![(
            "b".to_owned(),
            Err(crate::fleet::Failure::Unreachable("gone".into())),
        )];
        require_live(&mut r, &at_100, &away);
        assert!(!r.passed && r.why_not[0].contains("replica b could not be asked"));
        assert_eq!(crate::autopilot::percent(0.995), "99.5%");
    }
}
