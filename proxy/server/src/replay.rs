//! The replay of a request to the other side, off the client's path: safe requests as
//! they are, writes only to the new side and marked `x-shadow: dry-run` (the legacy
//! cannot roll a write back, so writes served by the new side are not replayed), and
//! only writes whose replay after the primary still means something (see `writes`),
//! or, for the kinds `comparison.replay_first` names, sent to the new side before the
//! legacy serves them (the client waits for that dry run, within its own bound).
//! The answers are compared (always legacy against new), noise is learned from a
//! second legacy answer to safe requests, and the outcome feeds the metrics, the
//! samples and the guard (whose mismatch rate counts the answers to safe requests, and
//! the effects of writes: see `effects`, which the same job runs after the answers).
//!
//! Every replay is bounded: at most `MAX_REPLAYS` at once (and `MAX_EFFECT_CHECKS`
//! write-effect questions, in slots of their own), its bodies within the body
//! budget, and its whole run (the shadow call, the wait for the served answer to end,
//! a second look) within `limits.replay_timeout`; past it the slot is freed and the
//! comparison counted `skipped_timeout`, so the guard keeps its view under attack.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method};
use http_body_util::BodyExt;
use proxy_routing::{ProxyConfig, Route, Side};
use shadow_compare::{Exchange, Outcome, RequestMeta, SkipReason};
use tokio::sync::oneshot;

use crate::Proxy;
use crate::forward;
use crate::limits::Reservation;
use crate::request::{Inbound, build_request, is_safe};
use crate::tee::Captured;
use crate::trace::OutgoingSpan;

/// Of the replayed safe requests, how many per thousand also learn noise.
const LEARN_SAMPLE_PER_MILLE: u32 = 50;

/// How long a differing read first waits before both sides are asked again (doubled
/// each time after).
const CONFIRM_DELAY: Duration = Duration::from_millis(400);

/// The header with which the new side declines a dry run it could only serve by taking
/// capacity from real requests (see the identity service's dry runs).
const DECLINED_HEADER: &str = "x-shadow-skipped";

/// A random draw that succeeds `per_mille` times in a thousand.
fn drawn(per_mille: u32) -> bool {
    let mut b = [0u8; 4];
    getrandom::fill(&mut b).is_ok() && u32::from_le_bytes(b) % 1000 < per_mille
}

/// Everything the replay needs, moved off the request.
pub struct ReplayJob {
    pub route: Arc<Route>,
    pub primary_side: Side,
    /// The side the request is replayed to for its answer, if drawn for one.
    pub shadow_side: Option<Side>,
    /// The write's kind (`writes::kind`; `other` for a read), for the metrics.
    pub kind: &'static str,
    /// Whether the write's effect is compared (see `effects`).
    pub effects: bool,
    /// When the request came in, in microseconds since the epoch.
    pub received_at_micros: i64,
    /// When the primary's answer came back (its head), in microseconds since the epoch.
    pub answered_at_micros: i64,
    pub primary_status: u16,
    pub primary_headers: HeaderMap,
    pub captured: oneshot::Receiver<Captured>,
    pub inbound: Inbound,
    pub body: Bytes,
    /// The budget the job's copies of the request hold.
    pub reservation: Reservation,
    /// The new side's answer to the dry run sent before the primary
    /// (`comparison.replay_first`), compared instead of a replay after it.
    pub early: Option<Early>,
}

/// A dry run's answer fetched before the primary served the write, and the budget it
/// holds.
pub struct Early {
    fetched: Fetched,
    reservation: Reservation,
}

/// What a replay sends: the client's request as the proxy took it.
#[derive(Clone, Copy)]
pub struct Replayed<'a> {
    pub route: &'a Route,
    pub inbound: &'a Inbound,
    pub body: &'a Bytes,
}

impl ReplayJob {
    fn replayed(&self) -> Replayed<'_> {
        Replayed {
            route: &self.route,
            inbound: &self.inbound,
            body: &self.body,
        }
    }
}

fn exchange(status: u16, headers: &HeaderMap, body: Vec<u8>, truncated: bool) -> Exchange {
    Exchange {
        status,
        headers: headers
            .iter()
            .filter_map(|(k, v)| {
                v.to_str()
                    .ok()
                    .map(|v| (k.as_str().to_owned(), v.to_owned()))
            })
            .collect(),
        body: Bytes::from(body),
        truncated,
    }
}

impl Proxy {
    /// The side a request served by `primary` is replayed to, if it is drawn for a
    /// replay at the rule's mirror percentage and may be replayed at all.
    pub fn shadow_target(&self, route: &Route, primary: Side, method: &Method) -> Option<Side> {
        let shadow = route.shadow(primary)?;
        if !is_safe(method) && shadow.side != Side::New {
            return None;
        }
        let mut draw = [0u8; 4];
        getrandom::fill(&mut draw).ok()?;
        shadow
            .percentage
            .includes(u32::from_le_bytes(draw) % 1_000_000)
            .then_some(shadow.side)
    }

    /// A write of a kind `comparison.replay_first` names for its rule, about to be
    /// served by the legacy and drawn for a replay: its dry run on the new side now,
    /// while the state the legacy will consume is still there, and the replay slot it
    /// holds. The client waits for it at most `comparison.replay_first_timeout`; past
    /// it, or without a free slot, the write goes on uncompared (counted skipped).
    pub async fn replay_first(
        &self,
        config: &ProxyConfig,
        replayed: Replayed<'_>,
        primary: Side,
    ) -> Option<(Early, tokio::sync::OwnedSemaphorePermit)> {
        let Replayed { route, inbound, .. } = replayed;
        // Most rules name nothing: no write is parsed for them.
        if primary != Side::Legacy
            || is_safe(&inbound.method)
            || !config.comparison.replay_first.contains_key(route.name())
        {
            return None;
        }
        let write = crate::writes::write_of(inbound.method.as_str(), inbound.path_and_query.path());
        if !config
            .comparison
            .replays_first(route.name(), crate::writes::kind(write))
        {
            return None;
        }
        let side = self.shadow_target(route, primary, &inbound.method)?;
        let slot = self.replay_slot(route.name())?;
        let mut reservation = self.budget.reservation();
        let wait = config.comparison.replay_first_timeout;
        match tokio::time::timeout(wait, replay_to(self, replayed, side, &mut reservation)).await {
            Ok(Some(fetched)) => Some((
                Early {
                    fetched,
                    reservation,
                },
                slot,
            )),
            // Counted by `replay_to`.
            Ok(None) => None,
            Err(_) => {
                self.skip(route.name(), SkipReason::Timeout);
                None
            }
        }
    }

    /// A slot for a replay of `route`, or `None` (counted `skipped_overload`) when
    /// every slot is taken.
    pub fn replay_slot(&self, route: &str) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let permit = Arc::clone(&self.shadow_permits).try_acquire_owned().ok();
        if permit.is_none() {
            self.metrics
                .count_comparison(route, SkipReason::Overload.label());
        }
        permit
    }

    /// A slot for the question after a write of `route` (see `effects`), or `None`
    /// (counted `skipped_overload`) when every slot is taken.
    pub fn effect_slot(
        &self,
        route: &str,
        kind: &'static str,
    ) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let permit = Arc::clone(&self.effect_permits).try_acquire_owned().ok();
        if permit.is_none() {
            self.metrics
                .count_write(route, kind, "effect", "skipped_overload");
        }
        permit
    }

    /// Counts a comparison that did not happen, for the metrics and the guard.
    fn skip(&self, route: &str, reason: SkipReason) {
        let outcome = Outcome::Skipped(reason);
        self.metrics.count_comparison(route, outcome.label());
        self.guard.record_outcome(route, &outcome, Instant::now());
    }
}

/// The slots a job holds: a replay's (freed once the answers are compared), a
/// write-effect question's (freed when the job ends).
pub struct Slots {
    pub answer: Option<tokio::sync::OwnedSemaphorePermit>,
    pub effect: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// Runs the replay in the background, within the replay timeout; its slots are freed
/// when it ends either way.
pub fn spawn_replay(proxy: Arc<Proxy>, job: ReplayJob, slots: Slots, timeout: Duration) {
    let job = detached(job);
    tokio::spawn(async move {
        let route = job.route.name().to_owned();
        if tokio::time::timeout(timeout, run(&proxy, job, slots.answer))
            .await
            .is_err()
        {
            tracing::info!(route, "replay timed out: slot freed");
            proxy.skip(&route, SkipReason::Timeout);
            proxy.evaluate_soon();
        }
        drop(slots.effect);
    });
}

/// The job with copies of its own of what it keeps of the request and the answer. The
/// parsed headers, path and body point into the connections' read buffers (8 KiB
/// each); a replay waiting for its comparison would keep a whole buffer alive for a
/// few hundred bytes. Measured with heaptrack under `bench/proxy.sh`'s shadow load:
/// read buffers held 4 of the 11 MiB peak heap.
fn detached(mut job: ReplayJob) -> ReplayJob {
    job.inbound.headers = copied(&job.inbound.headers);
    job.primary_headers = copied(&job.primary_headers);
    if let Ok(path) = job.inbound.path_and_query.as_str().parse() {
        job.inbound.path_and_query = path;
    }
    job.body = Bytes::copy_from_slice(&job.body);
    job
}

fn copied(headers: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let mut copy =
            http::HeaderValue::from_bytes(value.as_bytes()).unwrap_or_else(|_| value.clone());
        copy.set_sensitive(value.is_sensitive());
        out.append(name.clone(), copy);
    }
    out
}

/// One answer of a side to the replayed request.
struct Fetched {
    exchange: Exchange,
    elapsed: Duration,
    failed: bool,
    /// The side declined the dry run (no capacity to spare).
    declined: bool,
    /// The budget could not hold the whole body.
    over_budget: bool,
}

/// Sends the job's request to `side` and reads the answer, its body kept within the
/// comparison's bound and the budget (`reservation` grows as it arrives).
async fn fetch(
    proxy: &Proxy,
    replayed: Replayed<'_>,
    side: Side,
    mark: Option<&'static str>,
    reservation: &mut Reservation,
) -> Option<Fetched> {
    let Replayed {
        route,
        inbound,
        body,
    } = replayed;
    let snap = proxy.live.snapshot();
    let address = snap.config.address_of(route, side)?.clone();
    let mut req = build_request(inbound, forward::full(body.clone()), mark);
    let span = inbound.trace.as_ref().and_then(|cx| {
        let name = format!("replay {} {}", route.name(), side.as_str());
        OutgoingSpan::linked(cx, name, side, req.headers_mut())
    });
    let limit = snap.config.comparison.max_body_bytes;
    let started = Instant::now();
    let resp = proxy.upstreams.send(&address, req, route.timeout()).await;
    let elapsed = started.elapsed();
    if let Some(span) = &span {
        span.answered(resp.as_ref().ok().map(|r| r.status().as_u16()));
    }
    let resp = resp.ok()?;
    let status = resp.status().as_u16();
    let (parts, mut body) = resp.into_parts();
    let declined = mark.is_some() && parts.headers.contains_key(DECLINED_HEADER);
    let mut buf: Vec<u8> = Vec::new();
    let mut truncated = false;
    let mut over_budget = false;
    let base = reservation.bytes();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return Some(Fetched {
                exchange: Exchange::new(502),
                elapsed,
                failed: true,
                declined: false,
                over_budget: false,
            });
        };
        if let Some(d) = frame.data_ref() {
            if truncated {
                continue;
            }
            let take = d.len().min(limit.saturating_sub(buf.len()));
            if !reservation.cover(base + buf.len() + take) {
                (truncated, over_budget) = (true, true);
                continue;
            }
            if take < d.len() {
                truncated = true;
            }
            buf.extend_from_slice(&d[..take]);
        }
    }
    Some(Fetched {
        exchange: exchange(status, &parts.headers, buf, truncated),
        elapsed,
        failed: status >= 500 && !declined,
        declined,
        over_budget,
    })
}

async fn run(
    proxy: &Proxy,
    mut job: ReplayJob,
    answer_slot: Option<tokio::sync::OwnedSemaphorePermit>,
) {
    let route = job.route.name().to_owned();
    let mut reservation = std::mem::replace(&mut job.reservation, proxy.budget.reservation());
    // An answer fetched before the primary keeps its budget until the comparison ends.
    let (shadow, _early_budget) = match (job.early.take(), job.shadow_side) {
        (Some(early), _) => (Some(early.fetched), Some(early.reservation)),
        (None, Some(side)) => (
            replay_to(proxy, job.replayed(), side, &mut reservation).await,
            None,
        ),
        (None, None) => (None, None),
    };
    let Ok(mut captured) = (&mut job.captured).await else {
        return;
    };
    // A 204 or 304, or an answer to HEAD, has no body: the server never reads it to
    // its end, and an empty body is complete.
    let bodiless = matches!(job.primary_status, 204 | 304) || job.inbound.method == Method::HEAD;
    if bodiless && captured.bytes.is_empty() {
        captured.incomplete = false;
    }
    let primary = (!captured.incomplete && !captured.over_budget).then(|| {
        exchange(
            job.primary_status,
            &job.primary_headers,
            std::mem::take(&mut captured.bytes),
            captured.truncated,
        )
    });
    if let Some(shadow) = shadow {
        match &primary {
            None if captured.incomplete => proxy.skip(&route, SkipReason::ShadowFailed),
            None => proxy.skip(&route, SkipReason::OverBudget),
            Some(_) if shadow.over_budget => proxy.skip(&route, SkipReason::OverBudget),
            Some(primary) => compare_answers(proxy, &job, primary, shadow.exchange).await,
        }
    }
    // The answers are done with: a question waiting out the sync's lag holds no
    // replay's slot.
    drop(answer_slot);
    if job.effects
        && let Some(primary) = &primary
    {
        crate::effects::compare(proxy, &job, &primary.body).await;
    }
}

/// Replays the job's request to `side` (a write as a dry run) and records the call;
/// `None` when there is no answer to compare (counted).
async fn replay_to(
    proxy: &Proxy,
    replayed: Replayed<'_>,
    side: Side,
    reservation: &mut Reservation,
) -> Option<Fetched> {
    let route = replayed.route.name();
    let mark = if is_safe(&replayed.inbound.method) {
        None
    } else {
        Some("dry-run")
    };
    proxy
        .metrics
        .shadow_requests
        .get_or_create(&crate::metrics::SideLabels {
            route: route.to_owned(),
            side: side.as_str(),
        })
        .inc();
    let shadow = fetch(proxy, replayed, side, mark, reservation).await;
    let now = Instant::now();
    let Some(shadow) = shadow else {
        proxy
            .guard
            .record_request(route, side, Duration::ZERO, true, now);
        proxy.skip(route, SkipReason::ShadowFailed);
        proxy.evaluate_soon();
        return None;
    };
    if shadow.declined {
        // Not an answer: the new side kept its capacity for real requests.
        proxy.skip(route, SkipReason::NewSideBusy);
        return None;
    }
    proxy.metrics.observe(route, side.as_str(), shadow.elapsed);
    proxy
        .guard
        .record_request(route, side, shadow.elapsed, shadow.failed, now);
    Some(shadow)
}

/// The served answer and the replay's, compared and counted.
async fn compare_answers(proxy: &Proxy, job: &ReplayJob, primary: &Exchange, shadow: Exchange) {
    let route = job.route.name();
    let safe = is_safe(&job.inbound.method);
    let path = job.inbound.path_and_query.path();
    let request_headers: Vec<(String, String)> = job
        .inbound
        .headers
        .iter()
        .filter_map(|(k, v)| {
            v.to_str()
                .ok()
                .map(|v| (k.as_str().to_owned(), v.to_owned()))
        })
        .collect();
    let meta =
        RequestMeta::new(route, job.inbound.method.as_str(), path).with_headers(&request_headers);
    let comparator = proxy.comparator();
    let mut outcome = comparator.compare(&meta, job.primary_side, primary, &shadow, &proxy.noise);
    // A read that differs may have raced a write the other side has not seen yet (the
    // sync's lag while migrating, a member written again and again): ask both sides
    // again, at pauses that grow, until they agree or the time a write may take to reach
    // the other side (`comparison.write_effects_settle`) has passed; count a mismatch
    // only if it persists that long.
    if safe && matches!(outcome, Outcome::Mismatch { .. }) {
        let (settle, version_fields, max_lag) = {
            let snap = proxy.live.snapshot();
            let c = &snap.config;
            (
                c.write_effects_settle(),
                c.comparison.version_fields.clone(),
                c.comparison.max_lag,
            )
        };
        let deadline = Instant::now() + settle;
        let mut pause = CONFIRM_DELAY;
        loop {
            tokio::time::sleep(pause).await;
            let mut again = proxy.budget.reservation();
            let legacy_again = fetch(proxy, job.replayed(), Side::Legacy, None, &mut again).await;
            let new_again = fetch(proxy, job.replayed(), Side::New, None, &mut again).await;
            let (Some(legacy_again), Some(new_again)) = (legacy_again, new_again) else {
                break;
            };
            let next = comparator.compare(
                &meta,
                Side::Legacy,
                &legacy_again.exchange,
                &new_again.exchange,
                &proxy.noise,
            );
            if !matches!(next, Outcome::Mismatch { .. }) {
                proxy.metrics.count_comparison(route, "transient");
                return;
            }
            outcome = next;
            pause *= 2;
            if Instant::now() + pause > deadline {
                // Still different, the new side's record older or not there yet: it
                // has not caught up, unless the legacy's is older than `max_lag`.
                let lagging = shadow_compare::lagging_version(
                    &legacy_again.exchange,
                    &new_again.exchange,
                    &version_fields,
                );
                if lagging.is_some_and(|version| within_lag(&version, max_lag)) {
                    proxy.metrics.count_comparison(route, "lagging");
                    return;
                }
                break;
            }
        }
    }
    if let Some(sample) = outcome.sample() {
        tracing::info!(request_id = %job.inbound.request_id, route, fields = ?outcome.mismatch_fields(), "shadow mismatch");
        proxy.samples.push(sample.clone());
    }
    if safe {
        proxy.metrics.count_comparison(route, outcome.label());
        proxy.guard.record_outcome(route, &outcome, Instant::now());
    } else {
        // Only writes whose replay after the primary still means something are
        // replayed (see `writes`), or sent first; their answers are counted apart from the reads'
        // (a log-in's tokens, a profile change's `updated_at` are the rules' to ignore)
        // and their effects judged by `effects`.
        proxy
            .metrics
            .count_write(route, job.kind, "answer", outcome.label());
        proxy.metrics.count_comparison(route, write_label(&outcome));
    }
    proxy.evaluate_soon();
    // Noise: a second legacy answer to the same safe request (Diffy's method), for a
    // sample of the replays: every pair costs the legacy one more request.
    if safe && comparator.config().noise.learn && drawn(LEARN_SAMPLE_PER_MILLE) {
        let legacy_first = if job.primary_side == Side::Legacy {
            primary
        } else {
            &shadow
        };
        let mut again = proxy.budget.reservation();
        if let Some(second) = fetch(proxy, job.replayed(), Side::Legacy, None, &mut again).await {
            proxy.noise.learn(route, legacy_first, &second.exchange);
        }
    }
}

/// Whether the record at `version` changed at most `max_lag` ago, by the proxy's
/// clock; a version that is no timestamp is not judged by age.
fn within_lag(version: &str, max_lag: Duration) -> bool {
    let Some(changed) = member_contract::Timestamp::parse_db_text(version) else {
        return true;
    };
    let age = member_contract::Timestamp::now_from_system().as_micros() - changed.as_micros();
    age <= max_lag.as_micros() as i64
}

fn write_label(outcome: &Outcome) -> &'static str {
    match outcome.category() {
        shadow_compare::Category::Match => "write_match",
        shadow_compare::Category::Noise => "write_noise",
        shadow_compare::Category::Mismatch => "write_mismatch",
        shadow_compare::Category::LegacyServerErrorNewClientError => "write_legacy_5xx_new_4xx",
        shadow_compare::Category::Skipped => "write_skipped",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_is_lag_while_it_is_younger_than_the_lag_allowed() {
        let minute = Duration::from_secs(60);
        let now = member_contract::Timestamp::now_from_system();
        let ago = |secs: i64| now.plus_secs(-secs).to_json_string();
        assert!(within_lag(&ago(1), minute));
        assert!(within_lag(&ago(-5), minute), "a clock a little ahead");
        assert!(!within_lag(&ago(61), minute));
        assert!(!within_lag(&ago(3600), minute));
        // A version that is no timestamp is not judged by age.
        assert!(within_lag("17", minute));
    }

    #[test]
    fn copied_headers_are_equal_and_hold_no_part_of_the_original_buffer() {
        let buffer = Bytes::from_static(b"Bearer abc123xyz");
        let mut headers = HeaderMap::new();
        let mut auth = http::HeaderValue::from_maybe_shared(buffer.clone()).unwrap();
        auth.set_sensitive(true);
        headers.insert(http::header::AUTHORIZATION, auth);
        headers.append("x-tag", http::HeaderValue::from_static("a"));
        headers.append("x-tag", http::HeaderValue::from_static("b"));
        let copy = copied(&headers);
        assert_eq!(copy, headers);
        assert!(copy[http::header::AUTHORIZATION].is_sensitive());
        let range = buffer.as_ptr_range();
        assert!(
            !range.contains(&copy[http::header::AUTHORIZATION].as_bytes().as_ptr()),
            "the copy points into the original buffer"
        );
    }
}
