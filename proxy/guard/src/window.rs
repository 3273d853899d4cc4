//! A route's sliding window: a fixed ring of time buckets (by default 60 of one
//! second). An event goes to the bucket of its instant; a bucket is reused, and so
//! forgotten, when its slot comes round again; reading adds up the buckets still inside
//! the window. Memory is fixed when the window is created: the ring never grows, and
//! each bucket holds at most `fields_per_bucket` distinct differing fields.
//!
//! Instants are measured from the window's origin (its first event) in whole buckets
//! ("ticks"). The window ends at the newest tick recorded or at the reading instant,
//! whichever is later. An event older than the window (a slow thread reporting late)
//! is dropped rather than counted in a newer bucket, and so is one older than the last
//! reset.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use shadow_compare::{Category, Side};

use crate::config::GuardConfig;
use crate::histogram::{Histogram, Merged};

/// The tick of the window's origin. Ticks are counted from far above zero so that an
/// instant before the origin (an event from another thread that read the clock a little
/// earlier) has a tick of its own.
const ORIGIN_TICK: u64 = 1 << 40;

/// One side's events in one bucket.
#[derive(Clone, Debug, Default)]
struct SideBucket {
    requests: u64,
    errors: u64,
    latency: Histogram,
}

/// The events of one time slice.
#[derive(Clone, Debug, Default)]
struct Bucket {
    /// The tick this bucket holds, if it has been used.
    tick: Option<u64>,
    sides: [SideBucket; 2],
    comparisons: [u64; Category::ALL.len()],
    fields: Vec<(String, u64)>,
    untracked_fields: u64,
}

impl Bucket {
    fn reset(&mut self, tick: u64) {
        self.tick = Some(tick);
        for side in &mut self.sides {
            side.requests = 0;
            side.errors = 0;
            side.latency.clear();
        }
        self.comparisons = [0; Category::ALL.len()];
        self.fields.clear();
        self.untracked_fields = 0;
    }
}

/// One side's figures over the window.
#[derive(Clone, Debug, Default)]
pub(crate) struct SideTotals {
    pub(crate) requests: u64,
    pub(crate) errors: u64,
    pub(crate) latency: Merged,
}

impl SideTotals {
    /// Errors over requests; 0 without requests.
    pub(crate) fn error_rate(&self) -> f64 {
        ratio(self.errors, self.requests)
    }
}

/// Everything inside the window, added up.
#[derive(Clone, Debug, Default)]
pub(crate) struct Totals {
    pub(crate) sides: [SideTotals; 2],
    pub(crate) comparisons: [u64; Category::ALL.len()],
    pub(crate) fields: HashMap<String, u64>,
    pub(crate) untracked_fields: u64,
    /// How much time the figures cover: the window, or less for a young window.
    pub(crate) span: Duration,
}

impl Totals {
    pub(crate) fn side(&self, side: Side) -> &SideTotals {
        &self.sides[side.index()]
    }

    pub(crate) fn count(&self, category: Category) -> u64 {
        self.comparisons[category.index()]
    }

    /// Comparisons that were compared field by field: matches, noise and mismatches.
    pub(crate) fn compared(&self) -> u64 {
        self.count(Category::Match) + self.count(Category::Noise) + self.count(Category::Mismatch)
    }

    /// Mismatches over compared pairs; 0 without any.
    pub(crate) fn mismatch_rate(&self) -> f64 {
        ratio(self.count(Category::Mismatch), self.compared())
    }
}

/// `part / whole` in [0, 1]; 0 when `whole` is 0.
pub(crate) fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        (part.min(whole) as f64) / whole as f64
    }
}

/// The ring of buckets; see the module documentation.
#[derive(Clone, Debug)]
pub(crate) struct Window {
    buckets: Vec<Bucket>,
    bucket: Duration,
    origin: Instant,
    /// Events before this tick are dropped (set by a reset).
    since: u64,
    /// The earliest tick the figures may cover: the creation's or an earlier event's,
    /// or the last reset's (for the span that rates are computed over).
    start: u64,
    /// The newest tick recorded: the window ends there or at the reading instant,
    /// whichever is later, so that a reader racing a writer sees the same window.
    latest: u64,
    fields_per_bucket: usize,
}

impl Window {
    pub(crate) fn new(config: &GuardConfig, now: Instant) -> Self {
        let n = usize::try_from(config.buckets()).unwrap_or(1).max(1);
        Self {
            buckets: vec![Bucket::default(); n],
            bucket: config.bucket(),
            origin: now,
            since: 0,
            start: ORIGIN_TICK,
            latest: ORIGIN_TICK,
            fields_per_bucket: config.fields_per_bucket,
        }
    }

    /// The number of buckets, fixed at creation.
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.buckets.len()
    }

    /// The tick of an instant: [`ORIGIN_TICK`] for the origin's bucket, fewer before.
    fn tick(&self, now: Instant) -> u64 {
        let width = self.bucket.as_nanos().max(1);
        let ticks = |d: Duration, round_up: bool| {
            let n =
                d.as_nanos() / width + u128::from(round_up && !d.as_nanos().is_multiple_of(width));
            u64::try_from(n).unwrap_or(ORIGIN_TICK)
        };
        match now.checked_duration_since(self.origin) {
            Some(ahead) => ORIGIN_TICK.saturating_add(ticks(ahead, false)),
            None => ORIGIN_TICK.saturating_sub(ticks(self.origin - now, true)),
        }
    }

    /// The bucket for an event at `now`, or `None` when the event is too old.
    fn bucket_at(&mut self, now: Instant) -> Option<&mut Bucket> {
        let tick = self.tick(now);
        let n = self.buckets.len() as u64;
        if tick < self.since || self.latest.saturating_sub(tick) >= n {
            return None;
        }
        self.latest = self.latest.max(tick);
        self.start = self.start.min(tick);
        let bucket = &mut self.buckets[(tick % n) as usize];
        match bucket.tick {
            Some(held) if held == tick => {}
            Some(held) if held > tick => return None,
            _ => bucket.reset(tick),
        }
        Some(bucket)
    }

    pub(crate) fn record_request(
        &mut self,
        side: Side,
        latency: Duration,
        error: bool,
        now: Instant,
    ) {
        if let Some(bucket) = self.bucket_at(now) {
            let side = &mut bucket.sides[side.index()];
            side.requests += 1;
            side.errors += u64::from(error);
            side.latency.record(latency);
        }
    }

    pub(crate) fn record_comparison(
        &mut self,
        category: Category,
        fields: &[String],
        now: Instant,
    ) {
        let cap = self.fields_per_bucket;
        if let Some(bucket) = self.bucket_at(now) {
            bucket.comparisons[category.index()] += 1;
            for field in fields {
                if let Some((_, count)) = bucket.fields.iter_mut().find(|(name, _)| name == field) {
                    *count += 1;
                } else if bucket.fields.len() < cap {
                    bucket.fields.push((field.clone(), 1));
                } else {
                    bucket.untracked_fields += 1;
                }
            }
        }
    }

    /// The buckets inside the window at `now`, added up.
    pub(crate) fn totals(&self, now: Instant) -> Totals {
        let end = self.tick(now).max(self.latest);
        let n = self.buckets.len() as u64;
        let mut totals = Totals::default();
        let live = self
            .buckets
            .iter()
            .filter(|b| b.tick.is_some_and(|t| t >= self.since && end - t < n));
        for bucket in live {
            for (total, side) in totals.sides.iter_mut().zip(&bucket.sides) {
                total.requests += side.requests;
                total.errors += side.errors;
                side.latency.add_to(&mut total.latency);
            }
            for (total, count) in totals.comparisons.iter_mut().zip(bucket.comparisons) {
                *total += count;
            }
            for (field, count) in &bucket.fields {
                *totals.fields.entry(field.clone()).or_default() += count;
            }
            totals.untracked_fields += bucket.untracked_fields;
        }
        let ticks = (end.saturating_sub(self.start) + 1).min(n);
        totals.span = self.bucket * u32::try_from(ticks).unwrap_or(u32::MAX);
        totals
    }

    /// Forgets every event; events before `now` are not counted any more.
    pub(crate) fn reset(&mut self, now: Instant) {
        self.since = self.tick(now);
        self.start = self.since;
        self.latest = self.latest.max(self.since);
        for bucket in &mut self.buckets {
            bucket.tick = None;
        }
    }

    /// The most distinct fields any bucket holds (for the memory-bound tests).
    #[cfg(test)]
    pub(crate) fn max_fields_in_a_bucket(&self) -> usize {
        self.buckets
            .iter()
            .map(|b| b.fields.len())
            .max()
            .unwrap_or(0)
    }
}
