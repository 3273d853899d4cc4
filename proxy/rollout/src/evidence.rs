//! The evidence of a rollout step, from the proxies' own Prometheus counters: what each
//! replica counted of a route since the step began (a replica that restarted counts
//! from zero again, as Prometheus' `increase()` reads it), summed over the replicas.
//!
//! - **Reads compared**: `proxy_comparisons_total` of results `match`, `noise` and
//!   `mismatch` (a `transient` difference, gone when asked again, is neither; nor is a
//!   `lagging` one, the new side's record older when the time was up).
//! - **Write effects compared**: `proxy_writes_total{compared="effect"}` of results
//!   `match` and `mismatch` (`lagging`, `unresolved`, `unavailable` are no evidence).
//! - **Write answers compared**: `proxy_writes_total{compared="answer"}` of results
//!   `match`, `noise` and `mismatch`; shown, not held to the target (a log-in's tokens
//!   and a profile change's `updated_at` are the comparison rules' to ignore; their
//!   effects are what is held).
//! - **Requests and errors**: `proxy_requests_total` by serving side, errors its 5xx.
//! - **Latency**: `proxy_request_duration_seconds` by side (primaries and replays).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// One series: its name and labels, as Prometheus' text gives them.
#[derive(Debug, Clone, PartialEq)]
struct Series {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

impl Series {
    fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One replica's metrics, read once and judged for every route.
#[derive(Debug, Clone, Default)]
pub struct Scrape(Vec<Series>);

impl Scrape {
    /// Reads `name{a="x",b="y"} 12` lines; comments and anything unreadable are
    /// skipped.
    pub fn parse(text: &str) -> Scrape {
        Scrape(parse(text))
    }
}

fn parse(text: &str) -> Vec<Series> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(parse_line)
        .collect()
}

fn parse_line(line: &str) -> Option<Series> {
    let (name, rest) = match line.find('{') {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => {
            let (name, value) = line.split_once(' ')?;
            return Some(Series {
                name: name.to_owned(),
                labels: Vec::new(),
                value: value.split_whitespace().next()?.parse().ok()?,
            });
        }
    };
    let mut labels = Vec::new();
    let mut chars = rest.char_indices().peekable();
    let mut key = String::new();
    let close;
    loop {
        let (i, c) = chars.next()?;
        match c {
            '}' => {
                close = i;
                break;
            }
            ',' | ' ' => {}
            '=' => {
                if chars.next()?.1 != '"' {
                    return None;
                }
                let mut value = String::new();
                loop {
                    match chars.next()?.1 {
                        '"' => break,
                        '\\' => match chars.next()?.1 {
                            'n' => value.push('\n'),
                            other => value.push(other),
                        },
                        other => value.push(other),
                    }
                }
                labels.push((std::mem::take(&mut key), value));
            }
            other => key.push(other),
        }
    }
    let value = rest[close + 1..].split_whitespace().next()?.parse().ok()?;
    Some(Series {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// Compared pairs and the mismatches among them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Tally {
    pub compared: u64,
    pub mismatches: u64,
}

impl Tally {
    fn add(self, other: Tally) -> Tally {
        Tally {
            compared: self.compared + other.compared,
            mismatches: self.mismatches + other.mismatches,
        }
    }
}

/// What one replica counted of one route, cumulatively: each field a counter.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counters {
    reads: [u64; 2],
    effects: [u64; 2],
    answers: [u64; 2],
    /// Write effects not judged: lagging, unresolved, unavailable, skipped.
    effects_unjudged: u64,
    /// Reads whose answers stayed different while the new side's record was older.
    reads_lagging: u64,
    /// By side (legacy, new): requests answered, of them 5xx.
    requests: [u64; 2],
    errors: [u64; 2],
    /// By side: the latency histogram's cumulative buckets (upper bound, count).
    latency: [Vec<(f64, u64)>; 2],
}

fn side_index(side: &str) -> Option<usize> {
    match side {
        "legacy" => Some(0),
        "new" => Some(1),
        _ => None,
    }
}

impl Counters {
    /// `route`'s counters in one replica's metrics text.
    pub fn of_route(metrics: &str, route: &str) -> Counters {
        Counters::in_scrape(&Scrape::parse(metrics), route)
    }

    /// `route`'s counters in one replica's metrics, read.
    pub fn in_scrape(scrape: &Scrape, route: &str) -> Counters {
        let mut c = Counters::default();
        let mut buckets: [HashMap<u64, (f64, u64)>; 2] = Default::default();
        for s in &scrape.0 {
            if s.label("route") != Some(route) {
                continue;
            }
            let n = s.value.max(0.0) as u64;
            match s.name.as_str() {
                "proxy_comparisons_total" => match s.label("result") {
                    Some("match" | "noise") => c.reads[0] += n,
                    Some("mismatch") => c.reads[1] += n,
                    Some("lagging") => c.reads_lagging += n,
                    _ => {}
                },
                "proxy_writes_total" => {
                    let result = s.label("result");
                    match (s.label("compared"), result) {
                        (Some("effect"), Some("match")) => c.effects[0] += n,
                        (Some("effect"), Some("mismatch")) => c.effects[1] += n,
                        (Some("effect"), _) => c.effects_unjudged += n,
                        (Some("answer"), Some("match" | "noise")) => c.answers[0] += n,
                        (Some("answer"), Some("mismatch")) => c.answers[1] += n,
                        _ => {}
                    }
                }
                "proxy_requests_total" => {
                    if let Some(i) = s.label("side").and_then(side_index) {
                        c.requests[i] += n;
                        if s.label("code").is_some_and(|code| code.starts_with('5')) {
                            c.errors[i] += n;
                        }
                    }
                }
                "proxy_request_duration_seconds_bucket" => {
                    let (Some(i), Some(le)) = (
                        s.label("side").and_then(side_index),
                        s.label("le").and_then(|v| v.parse::<f64>().ok()),
                    ) else {
                        continue;
                    };
                    buckets[i].insert(le.to_bits(), (le, n));
                }
                _ => {}
            }
        }
        for (i, side) in buckets.into_iter().enumerate() {
            let mut v: Vec<(f64, u64)> = side.into_values().collect();
            v.sort_by(|a, b| a.0.total_cmp(&b.0));
            c.latency[i] = v;
        }
        c
    }

    /// What was counted since `before`; a counter lower than before was reset (the
    /// replica restarted) and counts from zero.
    pub fn since(&self, before: &Counters) -> Counters {
        let d = |now: u64, then: u64| if now >= then { now - then } else { now };
        let pair = |now: [u64; 2], then: [u64; 2]| [d(now[0], then[0]), d(now[1], then[1])];
        // A histogram resets as a whole: judged by its total.
        let latency = |i: usize| -> Vec<(f64, u64)> {
            let now = &self.latency[i];
            let then = &before.latency[i];
            let total = |v: &[(f64, u64)]| v.last().map_or(0, |b| b.1);
            if total(now) < total(then) {
                return now.clone();
            }
            now.iter()
                .map(|(le, n)| {
                    let old = then.iter().find(|(l, _)| l == le).map_or(0, |(_, n)| *n);
                    (*le, n.saturating_sub(old))
                })
                .collect()
        };
        Counters {
            reads: pair(self.reads, before.reads),
            effects: pair(self.effects, before.effects),
            answers: pair(self.answers, before.answers),
            effects_unjudged: d(self.effects_unjudged, before.effects_unjudged),
            reads_lagging: d(self.reads_lagging, before.reads_lagging),
            requests: pair(self.requests, before.requests),
            errors: pair(self.errors, before.errors),
            latency: [latency(0), latency(1)],
        }
    }

    /// The sum of two replicas' counts.
    pub fn plus(&self, other: &Counters) -> Counters {
        let pair = |a: [u64; 2], b: [u64; 2]| [a[0] + b[0], a[1] + b[1]];
        let latency = |i: usize| -> Vec<(f64, u64)> {
            let mut v = self.latency[i].clone();
            for (le, n) in &other.latency[i] {
                match v.iter_mut().find(|(l, _)| l == le) {
                    Some(b) => b.1 += n,
                    None => v.push((*le, *n)),
                }
            }
            v.sort_by(|a, b| a.0.total_cmp(&b.0));
            v
        };
        Counters {
            reads: pair(self.reads, other.reads),
            effects: pair(self.effects, other.effects),
            answers: pair(self.answers, other.answers),
            effects_unjudged: self.effects_unjudged + other.effects_unjudged,
            reads_lagging: self.reads_lagging + other.reads_lagging,
            requests: pair(self.requests, other.requests),
            errors: pair(self.errors, other.errors),
            latency: [latency(0), latency(1)],
        }
    }

    /// The figures of these counts.
    pub fn figures(&self) -> Figures {
        let tally = |p: [u64; 2]| Tally {
            compared: p[0] + p[1],
            mismatches: p[1],
        };
        let reads = tally(self.reads);
        let effects = tally(self.effects);
        let held = reads.add(effects);
        Figures {
            reads,
            write_effects: effects,
            write_answers: tally(self.answers),
            write_effects_unjudged: self.effects_unjudged,
            reads_lagging: self.reads_lagging,
            agreement: agreement(held),
            agreement_lower_95: lower_bound_95(held),
            requests: Sides {
                legacy: self.requests[0],
                new: self.requests[1],
            },
            errors: Sides {
                legacy: self.errors[0],
                new: self.errors[1],
            },
            p99_ms: OptSides {
                legacy: quantile_ms(&self.latency[0], 0.99),
                new: quantile_ms(&self.latency[1], 0.99),
            },
            latency_samples: Sides {
                legacy: self.latency[0].last().map_or(0, |b| b.1),
                new: self.latency[1].last().map_or(0, |b| b.1),
            },
        }
    }
}

/// A figure per side.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Sides {
    pub legacy: u64,
    pub new: u64,
}

/// A figure per side that may be unknown.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct OptSides {
    pub legacy: Option<f64>,
    pub new: Option<f64>,
}

/// A step's evidence.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Figures {
    pub reads: Tally,
    pub write_effects: Tally,
    pub write_answers: Tally,
    /// Write effects not judged (the sync lagging, a member not named, no answer).
    pub write_effects_unjudged: u64,
    /// Reads not judged: still different when the time was up, the new side's record
    /// older (the sync lagging).
    #[serde(default)]
    pub reads_lagging: u64,
    /// Reads and write effects that agreed, over those compared; `None` without any.
    pub agreement: Option<f64>,
    /// The agreement's lower bound at 95% confidence (Wilson score interval).
    pub agreement_lower_95: Option<f64>,
    /// Requests answered by each side.
    pub requests: Sides,
    /// Of those, 5xx.
    pub errors: Sides,
    /// p99 latency of each side, primaries and replays, in ms (a bucket's upper bound).
    pub p99_ms: OptSides,
    pub latency_samples: Sides,
}

impl Figures {
    /// Reads and write effects compared: what the target is held over.
    pub fn held(&self) -> Tally {
        self.reads.add(self.write_effects)
    }

    /// The sum of two steps' evidence (latency is not summed: it is per step).
    pub fn plus(&self, other: &Figures) -> Figures {
        let reads = self.reads.add(other.reads);
        let write_effects = self.write_effects.add(other.write_effects);
        let held = reads.add(write_effects);
        Figures {
            reads,
            write_effects,
            write_answers: self.write_answers.add(other.write_answers),
            write_effects_unjudged: self.write_effects_unjudged + other.write_effects_unjudged,
            reads_lagging: self.reads_lagging + other.reads_lagging,
            agreement: agreement(held),
            agreement_lower_95: lower_bound_95(held),
            requests: Sides {
                legacy: self.requests.legacy + other.requests.legacy,
                new: self.requests.new + other.requests.new,
            },
            errors: Sides {
                legacy: self.errors.legacy + other.errors.legacy,
                new: self.errors.new + other.errors.new,
            },
            p99_ms: OptSides::default(),
            latency_samples: Sides {
                legacy: self.latency_samples.legacy + other.latency_samples.legacy,
                new: self.latency_samples.new + other.latency_samples.new,
            },
        }
    }

    /// The new side's error ratio, and the legacy's.
    pub fn error_ratios(&self) -> (f64, f64) {
        let r = |e: u64, n: u64| if n == 0 { 0.0 } else { e as f64 / n as f64 };
        (
            r(self.errors.new, self.requests.new),
            r(self.errors.legacy, self.requests.legacy),
        )
    }
}

fn agreement(t: Tally) -> Option<f64> {
    (t.compared > 0).then(|| (t.compared - t.mismatches) as f64 / t.compared as f64)
}

/// The Wilson score interval's lower bound at 95% for agreements out of compared.
pub fn lower_bound_95(t: Tally) -> Option<f64> {
    if t.compared == 0 {
        return None;
    }
    let n = t.compared as f64;
    let p = (t.compared - t.mismatches) as f64 / n;
    let z = 1.959_963_984_540_054_f64;
    let z2 = z * z;
    let centre = p + z2 / (2.0 * n);
    let spread = z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    Some(((centre - spread) / (1.0 + z2 / n)).clamp(0.0, 1.0))
}

/// The `q` quantile of cumulative buckets, as the upper bound of the bucket it falls in,
/// in milliseconds; `None` without samples, infinite past the last bound.
fn quantile_ms(buckets: &[(f64, u64)], q: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    if total == 0 {
        return None;
    }
    let want = (q * total as f64).ceil() as u64;
    buckets
        .iter()
        .find(|(_, n)| *n >= want)
        .map(|(le, _)| le * 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP proxy_comparisons Shadow comparisons by route and result.
# TYPE proxy_comparisons counter
proxy_comparisons_total{route="users-me",result="match"} 90
proxy_comparisons_total{route="users-me",result="noise"} 5
proxy_comparisons_total{route="users-me",result="mismatch"} 1
proxy_comparisons_total{route="users-me",result="transient"} 7
proxy_comparisons_total{route="users-me",result="lagging"} 3
proxy_comparisons_total{route="users-me-read",result="mismatch"} 50
proxy_writes_total{route="users-me",kind="profile_update",compared="effect",result="match"} 20
proxy_writes_total{route="users-me",kind="profile_update",compared="effect",result="lagging"} 2
proxy_writes_total{route="users-me",kind="profile_update",compared="answer",result="mismatch"} 3
proxy_requests_total{route="users-me",side="legacy",code="200"} 100
proxy_requests_total{route="users-me",side="legacy",code="503"} 1
proxy_requests_total{route="users-me",side="new",code="500"} 2
proxy_request_duration_seconds_bucket{le="0.001",route="users-me",side="new"} 50
proxy_request_duration_seconds_bucket{le="0.002",route="users-me",side="new"} 99
proxy_request_duration_seconds_bucket{le="+Inf",route="users-me",side="new"} 100
proxy_upstream_errors_total{route="users-me",side="new",kind="timeout"} 4
"#;

    #[test]
    fn a_routes_counters_are_read_from_the_text() {
        let f = Counters::of_route(TEXT, "users-me").figures();
        assert_eq!(
            f.reads,
            Tally {
                compared: 96,
                mismatches: 1
            }
        );
        assert_eq!(
            f.write_effects,
            Tally {
                compared: 20,
                mismatches: 0
            }
        );
        assert_eq!(
            f.write_answers,
            Tally {
                compared: 3,
                mismatches: 3
            }
        );
        assert_eq!(f.write_effects_unjudged, 2);
        assert_eq!(f.reads_lagging, 3);
        assert_eq!(
            f.requests,
            Sides {
                legacy: 101,
                new: 2
            }
        );
        assert_eq!(f.errors, Sides { legacy: 1, new: 2 });
        assert_eq!(f.p99_ms.new, Some(2.0));
        assert_eq!(f.p99_ms.legacy, None);
        assert_eq!(f.agreement, Some(115.0 / 116.0));
    }

    #[test]
    fn a_restarted_replica_counts_from_zero() {
        let before = Counters::of_route(TEXT, "users-me");
        let restarted = Counters::of_route(
            r#"proxy_comparisons_total{route="users-me",result="match"} 4"#,
            "users-me",
        );
        assert_eq!(restarted.since(&before).figures().reads.compared, 4);
        let later = Counters::of_route(
            &TEXT.replace(r#"result="match"} 90"#, r#"result="match"} 100"#),
            "users-me",
        );
        let d = later.since(&before).figures();
        assert_eq!(
            d.reads,
            Tally {
                compared: 10,
                mismatches: 0
            }
        );
        assert_eq!(d.latency_samples.new, 0);
        assert_eq!(d.plus(&d).reads.compared, 20);
    }

    #[test]
    fn the_lower_bound_needs_many_comparisons_to_near_the_target() {
        let lb = |c, m| {
            lower_bound_95(Tally {
                compared: c,
                mismatches: m,
            })
            .unwrap()
        };
        assert!(lb(1000, 0) < 0.997 && lb(1000, 0) > 0.99);
        assert!(lb(400_000, 0) > 0.99999);
        assert!(lb(1000, 1) < lb(1000, 0));
        assert_eq!(lower_bound_95(Tally::default()), None);
    }

    #[test]
    fn escaped_labels_and_odd_lines_are_read_or_skipped() {
        let s = parse("a{x=\"q\\\"uo\",y=\"2\"} 3\nbad{ 1\nb 4 1700000000\n");
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].label("x"), Some("q\"uo"));
        assert_eq!(s[1].value, 4.0);
    }
}
