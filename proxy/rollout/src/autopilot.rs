//! `rollout auto`: each route moved along the plan by the evidence, with no human step.
//!
//! A route stays at each step for the bake time, then advances when, over the whole
//! step and across every replica:
//!
//! - its agreement (reads compared and write effects compared, see `evidence`) is at or
//!   above the target, over at least `min_comparisons` of them (fewer: it pauses and
//!   waits for evidence; a quiet route cannot pass on luck);
//! - the new side's error ratio and p99 latency are within their limits;
//! - the data verify of the members written during the step (both databases, through
//!   the proxy's admin API and the identity service) finds no difference.
//!
//! A breach at any moment aborts the route (every replica at once, and the manifest at
//! 0%) and stops the autopilot: agreement that can no longer reach the target, errors or
//! latency over their limits, a difference in the data verify, or the guard of any
//! replica aborting the route on its own. The manifest stays the source of truth: a step
//! is a weight written into it and reloaded by every replica, as `rollout step` does.
//! Every decision is recorded with its figures in the journal; the last step, 100%,
//! completes the route (there is nothing left to compare with once the legacy serves no
//! one; what is written keeps being compared by its effects).

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::evidence::{Counters, Figures, Scrape};
pub use crate::fleet::VerifyFigures;
use crate::fleet::{Failure, Fleet};
use crate::journal::Journal;
use crate::{plan, report};

/// How the autopilot judges.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The plan's steps, ascending, ending at 100.
    pub plan: Vec<u32>,
    /// Least time at each step before it may advance.
    pub bake: Duration,
    /// How often the evidence is read.
    pub interval: Duration,
    /// Agreement a step must reach, in (0, 1] (0.99999 is 99.999%).
    pub target: f64,
    /// Reads and write effects compared a step needs before it may advance.
    pub min_comparisons: u64,
    /// Requests a side needs in the step before its errors or latency are judged.
    pub min_requests: u64,
    /// Highest error ratio (5xx) of the new side, when above the legacy's.
    pub max_error_rate: f64,
    /// Highest ratio of the new side's p99 to the legacy's.
    pub max_p99_ratio: f64,
    /// New-side p99, in ms, under which latency is never a breach.
    pub p99_floor_ms: f64,
    /// Whether each step ends with the data verify of the members it wrote.
    pub verify: bool,
    /// How long a step may wait for evidence before the autopilot gives up (the route
    /// stays where it is); `None`: it waits.
    pub max_pause: Option<Duration>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            plan: vec![1, 5, 10, 25, 50, 100],
            bake: Duration::from_secs(600),
            interval: Duration::from_secs(10),
            target: 0.99999,
            min_comparisons: 1000,
            min_requests: 100,
            max_error_rate: 0.01,
            max_p99_ratio: 2.0,
            p99_floor_ms: 50.0,
            verify: true,
            max_pause: None,
        }
    }
}

impl Settings {
    /// Why these settings cannot be used, if they cannot.
    pub fn invalid(&self) -> Option<String> {
        if !(self.target > 0.0 && self.target <= 1.0) {
            return Some("--target: a percentage above 0 and at most 100".into());
        }
        if self.interval.is_zero() {
            return Some("--interval: must be above 0".into());
        }
        if !(self.max_error_rate > 0.0 && self.max_error_rate <= 1.0) {
            return Some("--max-error-rate: a fraction above 0 and at most 1".into());
        }
        if self.max_p99_ratio.is_nan() || self.max_p99_ratio < 1.0 {
            return Some("--max-p99-ratio: at least 1".into());
        }
        if self.min_comparisons == 0 {
            return Some("--min-comparisons: at least 1".into());
        }
        None
    }
}

/// What the autopilot decided of a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// The route's step began (the autopilot started, or took it over).
    Start,
    /// Still baking.
    Hold,
    /// Baked, but the evidence is short (or could not be read, or verified).
    Pause,
    /// The step passed: the next one is applied.
    Advance,
    /// The step before 100% passed and 100% is applied: the route is complete.
    Done,
    /// A breach: the route is aborted and the autopilot stops.
    Abort,
    /// The evidence stayed short past `max_pause`, or the manifest's weight was changed
    /// outside the autopilot: it stops, the route stays where it is.
    GiveUp,
}

/// One decision, with the figures it was taken on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// When, RFC 3339 (UTC, milliseconds).
    pub at: String,
    /// When, microseconds since the epoch.
    pub at_micros: i64,
    pub route: String,
    /// The step the route was at.
    pub percent: u32,
    pub action: Action,
    /// The step applied (advance, done) or 0 (abort).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<u32>,
    pub reason: String,
    /// Seconds the route had been at the step.
    pub step_secs: f64,
    /// The step's evidence so far.
    pub figures: Figures,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<VerifyFigures>,
    /// The target and plan it was judged by.
    pub target: f64,
    pub plan: Vec<u32>,
}

/// How the autopilot ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Every route reached 100%.
    Complete,
    /// A route was aborted, for this reason.
    Aborted { route: String, reason: String },
    /// A route's evidence stayed short, or its weight was changed outside the autopilot.
    GaveUp { route: String, reason: String },
}

/// Pause before a step's verify starts counting, before the step itself: a write
/// committed as the step was applied is the step's too.
const VERIFY_MARGIN: Duration = Duration::from_secs(2);

/// A hold is logged at most this often (every other decision always).
const HOLD_LOG_EVERY: Duration = Duration::from_secs(60);

/// One route under way.
struct Under {
    route: String,
    percent: u32,
    started: Instant,
    started_micros: i64,
    /// Each replica's counters when the step began (`None`: not read yet).
    baseline: Vec<Option<Counters>>,
    /// When a hold or pause was last logged, and which.
    logged: Option<(Instant, Action)>,
    /// Since when the evidence has been short.
    short_since: Option<Instant>,
    complete: bool,
}

/// What one tick read of the replicas.
struct Reading {
    /// Per replica: its routes' status, or why it could not be read.
    status: Vec<Result<Vec<crate::status::RouteStatus>, String>>,
    metrics: Vec<Result<Scrape, String>>,
}

async fn read(fleet: &Fleet) -> Result<Reading, Failure> {
    let mut reading = Reading {
        status: Vec::new(),
        metrics: Vec::new(),
    };
    for replica in fleet.replicas() {
        reading.status.push(match fleet.routes(replica).await {
            Ok(r) => Ok(r),
            Err(Failure::Unreachable(e)) => Err(e),
            Err(other) => return Err(other),
        });
        reading.metrics.push(match fleet.metrics(replica).await {
            Ok(text) => Ok(Scrape::parse(&text)),
            Err(e) => Err(e.to_string()),
        });
    }
    Ok(reading)
}

fn now_micros() -> i64 {
    member_contract::Timestamp::now_from_system().as_micros()
}

impl Under {
    fn new(route: &str, percent: u32, reading: &Reading) -> Self {
        Self {
            route: route.to_owned(),
            percent,
            started: Instant::now(),
            started_micros: now_micros(),
            baseline: reading
                .metrics
                .iter()
                .map(|m| m.as_ref().ok().map(|m| Counters::in_scrape(m, route)))
                .collect(),
            logged: None,
            short_since: None,
            complete: false,
        }
    }

    /// The step's evidence over every replica, and the replicas that could not be
    /// read. A replica first read now counts from now.
    fn evidence(&mut self, reading: &Reading, fleet: &Fleet) -> (Figures, Vec<String>) {
        let mut sum = Counters::default();
        let mut missing = Vec::new();
        for (i, metrics) in reading.metrics.iter().enumerate() {
            match metrics {
                Ok(scrape) => {
                    let now = Counters::in_scrape(scrape, &self.route);
                    let base = self.baseline[i].get_or_insert_with(|| now.clone());
                    sum = sum.plus(&now.since(base));
                }
                Err(_) => missing.push(fleet.replicas()[i].clone()),
            }
        }
        (sum.figures(), missing)
    }

    fn decision(&self, action: Action, reason: String, figures: Figures, s: &Settings) -> Decision {
        let micros = now_micros();
        Decision {
            at: member_contract::Timestamp::from_micros(micros).to_json_string(),
            at_micros: micros,
            route: self.route.clone(),
            percent: self.percent,
            action,
            to: None,
            reason,
            step_secs: self.started.elapsed().as_secs_f64(),
            figures,
            verify: None,
            target: s.target,
            plan: s.plan.clone(),
        }
    }
}

/// Why the step's evidence is a breach, if it is.
pub fn breach(f: &Figures, s: &Settings) -> Option<String> {
    let held = f.held();
    let allowed = ((held.compared as f64) * (1.0 - s.target)).floor() as u64;
    if held.mismatches > allowed {
        return Some(format!(
            "agreement {:.4}% is below the target {} ({} mismatches of {} compared: reads {}/{}, write effects {}/{})",
            f.agreement.unwrap_or(0.0) * 100.0,
            percent(s.target),
            held.mismatches,
            held.compared,
            f.reads.mismatches,
            f.reads.compared,
            f.write_effects.mismatches,
            f.write_effects.compared
        ));
    }
    let (new_errors, legacy_errors) = f.error_ratios();
    if f.requests.new >= s.min_requests
        && new_errors > s.max_error_rate
        && new_errors > legacy_errors
    {
        return Some(format!(
            "the new side's error ratio {:.2}% is above {:.2}% (legacy {:.2}%)",
            new_errors * 100.0,
            s.max_error_rate * 100.0,
            legacy_errors * 100.0
        ));
    }
    if let (Some(new), Some(legacy)) = (f.p99_ms.new, f.p99_ms.legacy)
        && f.latency_samples.new >= s.min_requests
        && f.latency_samples.legacy >= s.min_requests
        && new > s.p99_floor_ms
        && new > legacy * s.max_p99_ratio
    {
        return Some(format!(
            "the new side's p99 {new:.1} ms is above {}× the legacy's {legacy:.1} ms",
            s.max_p99_ratio
        ));
    }
    None
}

/// Runs the autopilot on `routes` until every one is complete, one is aborted, or one
/// waits for evidence past `max_pause`. `on_decision` sees every decision as it is
/// recorded (to print it); the report built from the journal is published to every
/// replica's dashboard after each one that is not a hold.
pub async fn run(
    fleet: &Fleet,
    routes: &[String],
    s: &Settings,
    journal: &mut Journal,
    on_decision: &mut (dyn FnMut(&Decision) + Send),
) -> Result<Outcome, Failure> {
    if let Some(why) = s.invalid() {
        return Err(Failure::Usage(why));
    }
    if routes.is_empty() {
        return Err(Failure::Usage("name at least one route".into()));
    }
    let reading = read(fleet).await?;
    let mut under = Vec::new();
    for route in routes {
        let percent = fleet.current(route)?;
        if !s.plan.contains(&percent) && percent != 0 {
            return Err(Failure::Usage(format!(
                "{route} is at {percent}%, which is no step of the plan ({:?}): set a step first",
                s.plan
            )));
        }
        for (i, status) in reading.status.iter().enumerate() {
            let Ok(status) = status else { continue };
            let Some(r) = status.iter().find(|r| &r.name == route) else {
                return Err(Failure::Usage(format!(
                    "the proxy at {} has no route `{route}`",
                    fleet.replicas()[i]
                )));
            };
            if r.state == "aborted" {
                return Err(Failure::Refused(format!(
                    "{route} is aborted on {}: resume it first",
                    fleet.replicas()[i]
                )));
            }
        }
        let mut u = Under::new(route, percent, &reading);
        let (figures, _) = u.evidence(&reading, fleet);
        let (action, reason) = if percent == 100 {
            u.complete = true;
            (
                Action::Done,
                "already at 100%: the plan is complete".to_owned(),
            )
        } else {
            (
                Action::Start,
                format!(
                    "at {percent}%: baking {}s, then advancing at {} agreement over at least {} comparisons",
                    s.bake.as_secs_f64(),
                    self::percent(s.target),
                    s.min_comparisons
                ),
            )
        };
        let d = u.decision(action, reason, figures, s);
        record(fleet, journal, on_decision, d).await?;
        under.push(u);
    }
    loop {
        if under.iter().all(|u| u.complete) {
            return Ok(Outcome::Complete);
        }
        tokio::time::sleep(s.interval).await;
        let reading = read(fleet).await?;
        // One data verify serves every route judged in this reading: it covers the
        // members written since the earliest step began.
        let since = under
            .iter()
            .filter(|u| !u.complete)
            .map(|u| u.started_micros)
            .min()
            .unwrap_or_else(now_micros);
        let mut verified = Verified {
            since: since - VERIFY_MARGIN.as_micros() as i64,
            answer: None,
        };
        for u in under.iter_mut().filter(|u| !u.complete) {
            let judged = judge(fleet, u, &reading, &mut verified, s, journal, on_decision);
            if let Some(outcome) = judged.await? {
                return Ok(outcome);
            }
        }
    }
}

/// The data verify of one reading, asked once when a route first needs it.
struct Verified {
    since: i64,
    answer: Option<Result<VerifyFigures, String>>,
}

/// One route judged on one reading: `Some` when the autopilot must stop.
async fn judge(
    fleet: &Fleet,
    u: &mut Under,
    reading: &Reading,
    verified: &mut Verified,
    s: &Settings,
    journal: &mut Journal,
    on_decision: &mut (dyn FnMut(&Decision) + Send),
) -> Result<Option<Outcome>, Failure> {
    let (figures, missing) = u.evidence(reading, fleet);
    // The manifest is the source of truth: a weight changed outside the autopilot (an
    // SRE's step or abort, a second autopilot) is not overwritten; it stops there.
    let now = fleet.current(&u.route)?;
    if now != u.percent {
        let reason = format!(
            "the manifest's weight of {} changed outside the autopilot ({}% → {now}%); nothing was written: run it again to take over from there",
            u.route, u.percent
        );
        let d = u.decision(Action::GiveUp, reason.clone(), figures, s);
        record(fleet, journal, on_decision, d).await?;
        return Ok(Some(Outcome::GaveUp {
            route: u.route.clone(),
            reason,
        }));
    }
    // A replica's guard aborted the route: every replica follows, and the autopilot stops.
    let aborted = reading.status.iter().enumerate().find_map(|(i, st)| {
        let r = st.as_ref().ok()?.iter().find(|r| r.name == u.route)?;
        (r.state == "aborted").then(|| {
            format!(
                "aborted on {} by its {}{}",
                fleet.replicas()[i],
                r.aborted_by.as_deref().unwrap_or("guard"),
                r.abort_message
                    .as_deref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            )
        })
    });
    if let Some(reason) = aborted.or_else(|| breach(&figures, s)) {
        // The fields the replicas' guards saw differ most (names, never values).
        let mut fields: Vec<String> = reading
            .status
            .iter()
            .filter_map(|st| {
                st.as_ref()
                    .ok()?
                    .iter()
                    .find(|r| r.name == u.route)?
                    .top_field
                    .clone()
            })
            .collect();
        fields.dedup();
        let reason = if fields.is_empty() {
            reason
        } else {
            format!("{reason}; differing most: {}", fields.join(", "))
        };
        return abort(fleet, u, reason, figures, None, s, journal, on_decision).await;
    }
    let hold = |u: &mut Under, action: Action, reason: String, figures: Figures| {
        let due = match u.logged {
            Some((at, last)) => last != action || at.elapsed() >= HOLD_LOG_EVERY,
            None => true,
        };
        due.then(|| {
            u.logged = Some((Instant::now(), action));
            u.decision(action, reason, figures, s)
        })
    };
    if u.started.elapsed() < s.bake {
        let reason = format!(
            "baking: {:.0}s of {:.0}s",
            u.started.elapsed().as_secs_f64(),
            s.bake.as_secs_f64()
        );
        if let Some(d) = hold(u, Action::Hold, reason, figures) {
            record(fleet, journal, on_decision, d).await?;
        }
        return Ok(None);
    }
    let short = if !missing.is_empty() {
        Some(format!(
            "replicas not read ({}): their evidence is missing",
            missing.join(", ")
        ))
    } else if figures.held().compared < s.min_comparisons {
        Some(format!(
            "evidence short: {} of {} comparisons",
            figures.held().compared,
            s.min_comparisons
        ))
    } else {
        None
    };
    let verified = match (&short, s.verify) {
        (None, true) => match match &verified.answer {
            Some(answer) => answer.clone(),
            None => {
                let answer = verify(fleet, &u.route, verified.since, reading).await;
                verified.answer = Some(answer.clone());
                answer
            }
        } {
            Ok(v) if v.deviating > 0 => {
                let fields: Vec<&str> = v.fields.keys().map(String::as_str).collect();
                let reason = format!(
                    "data verify: {} of {} members written since the step began differ ({})",
                    v.deviating,
                    v.compared,
                    fields.join(", ")
                );
                return abort(fleet, u, reason, figures, Some(v), s, journal, on_decision).await;
            }
            Ok(v) => Ok(Some(v)),
            Err(why) => Err(format!("data verify not done: {why}")),
        },
        (None, false) => Ok(None),
        (Some(why), _) => Err(why.clone()),
    };
    let verify = match verified {
        Ok(v) => v,
        Err(reason) => {
            let since = *u.short_since.get_or_insert_with(Instant::now);
            if s.max_pause.is_some_and(|max| since.elapsed() >= max) {
                let d = u.decision(Action::GiveUp, reason.clone(), figures, s);
                record(fleet, journal, on_decision, d).await?;
                return Ok(Some(Outcome::GaveUp {
                    route: u.route.clone(),
                    reason,
                }));
            }
            if let Some(d) = hold(u, Action::Pause, reason, figures) {
                record(fleet, journal, on_decision, d).await?;
            }
            return Ok(None);
        }
    };
    let next = plan::next(&s.plan, u.percent).unwrap_or(100);
    let lines = fleet.apply(&u.route, next).await?;
    let held = figures.held();
    let mut d = u.decision(
        if next == 100 {
            Action::Done
        } else {
            Action::Advance
        },
        format!(
            "{}% agreement over {} comparisons (≥{} needed) in {:.0}s{}; applied: {}",
            figures.agreement.unwrap_or(1.0) * 100.0,
            held.compared,
            s.min_comparisons,
            u.started.elapsed().as_secs_f64(),
            verify
                .as_ref()
                .map(|v| format!(", {} members written verified", v.compared))
                .unwrap_or_default(),
            lines.join("; ")
        ),
        figures,
        s,
    );
    d.to = Some(next);
    d.verify = verify;
    record(fleet, journal, on_decision, d).await?;
    if next == 100 {
        u.complete = true;
    } else {
        let fresh = read(fleet).await?;
        *u = Under::new(&u.route, next, &fresh);
    }
    Ok(None)
}

/// The data verify of the members written since `since`, asked through `route` of a
/// replica that answered this reading.
async fn verify(
    fleet: &Fleet,
    route: &str,
    since: i64,
    reading: &Reading,
) -> Result<VerifyFigures, String> {
    let unread: Vec<&str> = fleet
        .replicas()
        .iter()
        .zip(&reading.status)
        .filter(|(_, st)| st.is_err())
        .map(|(r, _)| r.as_str())
        .collect();
    fleet.verify(route, since, &unread).await
}

#[allow(clippy::too_many_arguments)]
async fn abort(
    fleet: &Fleet,
    u: &mut Under,
    reason: String,
    figures: Figures,
    verify: Option<VerifyFigures>,
    s: &Settings,
    journal: &mut Journal,
    on_decision: &mut (dyn FnMut(&Decision) + Send),
) -> Result<Option<Outcome>, Failure> {
    let (lines, result) = fleet.abort(&u.route).await;
    let mut d = u.decision(
        Action::Abort,
        format!("{reason}; {}", lines.join("; ")),
        figures,
        s,
    );
    d.to = Some(0);
    d.verify = verify;
    record(fleet, journal, on_decision, d).await?;
    result?;
    Ok(Some(Outcome::Aborted {
        route: u.route.clone(),
        reason,
    }))
}

/// Records a decision, shows it, and publishes the report on the dashboards.
async fn record(
    fleet: &Fleet,
    journal: &mut Journal,
    on_decision: &mut (dyn FnMut(&Decision) + Send),
    d: Decision,
) -> Result<(), Failure> {
    journal.record(&d)?;
    on_decision(&d);
    if d.action != Action::Hold {
        let report = report::build(journal.decisions(), None, &[]);
        if let Ok(value) = serde_json::to_value(&report) {
            // The dashboard's copy: a replica that misses it gets the next one.
            let _ = fleet
                .on_every_replica(reqwest::Method::PUT, "/admin/report", Some(&value))
                .await;
        }
    }
    Ok(())
}

/// A target as people write it: 99.999%.
pub fn percent(fraction: f64) -> String {
    let text = format!("{:.6}", fraction * 100.0);
    format!("{}%", text.trim_end_matches('0').trim_end_matches('.'))
}

/// A decision as one line for people.
pub fn line(d: &Decision) -> String {
    let f = &d.figures;
    format!(
        "{} {:<14} {:>3}% {:<8} reads {}/{} mismatched, write effects {}/{}, agreement {}, new 5xx {}/{}; {}",
        d.at,
        d.route,
        d.percent,
        format!("{:?}", d.action).to_lowercase(),
        f.reads.mismatches,
        f.reads.compared,
        f.write_effects.mismatches,
        f.write_effects.compared,
        f.agreement
            .map_or("-".to_owned(), |a| format!("{:.4}%", a * 100.0)),
        f.errors.new,
        f.requests.new,
        d.reason
    )
}
