//! The replay of a request to the other side, off the client's path: safe requests as
//! they are, writes only to the new side and marked `x-shadow: dry-run` (the legacy
//! cannot roll a write back, so writes served by the new side are not replayed). The
//! answers are compared (always legacy against new), noise is learned from a second
//! legacy answer to safe requests, and the outcome feeds the metrics, the samples and
//! the guard (whose mismatch rate counts safe requests only: see `run`).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderMap, Method};
use http_body_util::BodyExt;
use proxy_routing::{Route, Side};
use shadow_compare::{Exchange, Outcome, RequestMeta};
use tokio::sync::oneshot;

use crate::Proxy;
use crate::forward;
use crate::handler::{Inbound, build_request, is_safe};
use crate::tee::Captured;

/// Least time between two evaluations of a route by the guard.
const EVALUATION_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);

/// Of the replayed safe requests, how many per thousand also learn noise.
const LEARN_SAMPLE_PER_MILLE: u32 = 50;

/// A random draw that succeeds `per_mille` times in a thousand.
fn drawn(per_mille: u32) -> bool {
    let mut b = [0u8; 4];
    getrandom::fill(&mut b).is_ok() && u32::from_le_bytes(b) % 1000 < per_mille
}

/// How long a differing read waits before both sides are asked again.
const CONFIRM_DELAY: std::time::Duration = std::time::Duration::from_millis(400);

/// Everything the shadow task needs, moved off the request.
pub struct ShadowJob {
    pub route: std::sync::Arc<Route>,
    pub primary_side: Side,
    pub shadow_side: Side,
    pub primary_status: u16,
    pub primary_headers: HeaderMap,
    pub captured: oneshot::Receiver<Captured>,
    pub inbound: Inbound,
    pub body: Bytes,
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

    /// Lets the guard judge every route now (the periodic task, and `evaluate_soon`).
    pub fn evaluate_all(&self) {
        let now = Instant::now();
        let snap = self.live.snapshot();
        for route in snap.table.routes() {
            self.judge(route.name(), now);
        }
    }

    /// After an answer or a comparison: the guard judges every route if it has not in
    /// the last EVALUATION_INTERVAL. Merging the windows is not for every answer, and
    /// the check is one atomic load, no lock shared by the workers.
    pub fn evaluate_soon(&self) {
        let now_ms = self.started.elapsed().as_millis() as u64;
        let due = self.evaluation_due_ms.load(Ordering::Relaxed);
        if now_ms < due {
            return;
        }
        let next = now_ms + EVALUATION_INTERVAL.as_millis() as u64;
        if self
            .evaluation_due_ms
            .compare_exchange(due, next, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            self.evaluate_all();
        }
    }

    /// Applies the guard's decision for `route`: an abort sets the new share to 0.
    fn judge(&self, route: &str, now: Instant) {
        let decision = self.guard.evaluate(route, now);
        if let rollout_guard::Decision::Abort {
            reason,
            newly: true,
            ..
        } = decision
        {
            tracing::error!(route, reason = %reason, "rollout guard aborted the route: new share set to 0");
            self.metrics
                .guard_aborts
                .get_or_create(&crate::metrics::AbortLabels {
                    route: route.to_owned(),
                    reason: reason.metric(),
                })
                .inc();
            if let Err(e) = self
                .live
                .update_overrides(|o| o.set_rule(route, 0).map_err(|e| e.to_string()))
            {
                tracing::error!(route, error = %e, "could not apply the abort");
            }
            self.publish_route_gauges(crate::ShareCause::GuardAbort);
        }
    }
}

pub fn spawn_shadow(proxy: Arc<Proxy>, job: ShadowJob) {
    // Bounded: when too many replays are in flight, this one is skipped and counted.
    let Ok(permit) = Arc::clone(&proxy.shadow_permits).try_acquire_owned() else {
        proxy
            .metrics
            .comparisons
            .get_or_create(&crate::metrics::ComparisonLabels {
                route: job.route.name().to_owned(),
                result: "skipped_overload",
            })
            .inc();
        return;
    };
    let job = detached(job);
    tokio::spawn(async move {
        run(&proxy, job).await;
        drop(permit);
    });
}

/// The job with copies of its own of what it keeps of the request and the answer. The
/// parsed headers, path and body point into the connections' read buffers (8 KiB
/// each); a replay waiting for its comparison would keep a whole buffer alive for a
/// few hundred bytes. Measured with heaptrack under `bench/proxy.sh`'s shadow load:
/// read buffers held 4 of the 11 MiB peak heap.
fn detached(mut job: ShadowJob) -> ShadowJob {
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

async fn fetch(
    proxy: &Proxy,
    job: &ShadowJob,
    side: Side,
    mark: Option<&'static str>,
) -> Option<(Exchange, std::time::Duration, bool)> {
    let snap = proxy.live.snapshot();
    let address = job
        .route
        .upstream(side)
        .and_then(|u| snap.config.upstream(&u.host))
        .map(|u| u.address.authority().clone())?;
    let req = build_request(&job.inbound, forward::full(job.body.clone()), mark);
    let limit = snap.config.comparison.max_body_bytes;
    let started = Instant::now();
    let resp = proxy
        .upstreams
        .send(&address, req, job.route.timeout())
        .await;
    let elapsed = started.elapsed();
    match resp {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let (parts, body) = resp.into_parts();
            let mut buf = Vec::new();
            let mut truncated = false;
            let mut body = body;
            while let Some(frame) = body.frame().await {
                let Ok(frame) = frame else {
                    return Some((Exchange::new(502), elapsed, true));
                };
                if let Some(d) = frame.data_ref() {
                    let room = limit.saturating_sub(buf.len());
                    truncated |= d.len() > room;
                    buf.extend_from_slice(&d[..d.len().min(room)]);
                }
            }
            Some((
                exchange(status, &parts.headers, buf, truncated),
                elapsed,
                status >= 500,
            ))
        }
        Err(_) => None,
    }
}

async fn run(proxy: &Proxy, mut job: ShadowJob) {
    let route = job.route.name().to_owned();
    let safe = is_safe(&job.inbound.method);
    let mark = if safe { None } else { Some("dry-run") };
    proxy
        .metrics
        .shadow_requests
        .get_or_create(&crate::metrics::SideLabels {
            route: route.clone(),
            side: job.shadow_side.as_str(),
        })
        .inc();
    let shadow = fetch(proxy, &job, job.shadow_side, mark).await;
    let now = Instant::now();
    let Some((shadow_exchange, elapsed, failed)) = shadow else {
        proxy.guard.record_request(
            &route,
            job.shadow_side,
            std::time::Duration::ZERO,
            true,
            now,
        );
        count(
            proxy,
            &route,
            &Outcome::Skipped(shadow_compare::SkipReason::ShadowFailed),
        );
        proxy.evaluate_soon();
        return;
    };
    proxy
        .metrics
        .observe(&route, job.shadow_side.as_str(), elapsed);
    proxy
        .guard
        .record_request(&route, job.shadow_side, elapsed, failed, now);
    let Ok(mut captured) = (&mut job.captured).await else {
        return;
    };
    // A 204 or 304, or an answer to HEAD, has no body: the server never reads it to
    // its end, and an empty body is complete.
    let bodiless = matches!(job.primary_status, 204 | 304) || job.inbound.method == Method::HEAD;
    if bodiless && captured.bytes.is_empty() {
        captured.incomplete = false;
    }
    if captured.incomplete {
        count(
            proxy,
            &route,
            &Outcome::Skipped(shadow_compare::SkipReason::ShadowFailed),
        );
        return;
    }
    let primary = exchange(
        job.primary_status,
        &job.primary_headers,
        captured.bytes,
        captured.truncated,
    );
    let path = job.inbound.path_and_query.path().to_owned();
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
        RequestMeta::new(&route, job.inbound.method.as_str(), &path).with_headers(&request_headers);
    let comparator = proxy.comparator();
    let mut outcome = comparator.compare(
        &meta,
        job.primary_side,
        &primary,
        &shadow_exchange,
        &proxy.noise,
    );
    // A read that differs may have raced a write the other side has not seen yet (the
    // sync's lag while migrating): ask both sides again a moment later, and count a
    // mismatch only if it persists.
    if safe && matches!(outcome, Outcome::Mismatch { .. }) {
        tokio::time::sleep(CONFIRM_DELAY).await;
        let again = (
            fetch(proxy, &job, Side::Legacy, None).await,
            fetch(proxy, &job, Side::New, None).await,
        );
        if let (Some((legacy_again, _, _)), Some((new_again, _, _))) = again {
            let second =
                comparator.compare(&meta, Side::Legacy, &legacy_again, &new_again, &proxy.noise);
            if !matches!(second, Outcome::Mismatch { .. }) {
                proxy
                    .metrics
                    .comparisons
                    .get_or_create(&crate::metrics::ComparisonLabels {
                        route: route.clone(),
                        result: "transient",
                    })
                    .inc();
                return;
            }
            outcome = second;
        }
    }
    if let Some(sample) = outcome.sample() {
        tracing::info!(request_id = %job.inbound.request_id, route, fields = ?outcome.mismatch_fields(), "shadow mismatch");
        proxy.samples.push(sample.clone());
    }
    if safe {
        count(proxy, &route, &outcome);
        proxy.guard.record_outcome(&route, &outcome, Instant::now());
    } else {
        // A write's replay runs after the primary changed the shared legacy data (the
        // new side reads it while migrating), so its answer may rightly differ: a
        // replayed sign-up finds its email taken, a replayed refresh its token rotated.
        // Such comparisons are kept (metrics, samples) but do not count as mismatches;
        // the new side's errors on writes still count.
        count_write(proxy, &route, &outcome);
    }
    proxy.evaluate_soon();
    // Noise: a second legacy answer to the same safe request (Diffy's method), for a
    // sample of the replays: every pair costs the legacy one more request.
    if safe && comparator.config().noise.learn && drawn(LEARN_SAMPLE_PER_MILLE) {
        let legacy_first = if job.primary_side == Side::Legacy {
            primary
        } else {
            shadow_exchange
        };
        if let Some((second, _, _)) = fetch(proxy, &job, Side::Legacy, None).await {
            proxy.noise.learn(&route, &legacy_first, &second);
        }
    }
}

fn count_write(proxy: &Proxy, route: &str, outcome: &Outcome) {
    let result = match outcome.category() {
        shadow_compare::Category::Match => "write_match",
        shadow_compare::Category::Noise => "write_noise",
        shadow_compare::Category::Mismatch => "write_mismatch",
        shadow_compare::Category::LegacyServerErrorNewClientError => "write_legacy_5xx_new_4xx",
        shadow_compare::Category::Skipped => "write_skipped",
    };
    proxy
        .metrics
        .comparisons
        .get_or_create(&crate::metrics::ComparisonLabels {
            route: route.to_owned(),
            result,
        })
        .inc();
}

fn count(proxy: &Proxy, route: &str, outcome: &Outcome) {
    proxy
        .metrics
        .comparisons
        .get_or_create(&crate::metrics::ComparisonLabels {
            route: route.to_owned(),
            result: outcome.category().name(),
        })
        .inc();
}

#[cfg(test)]
mod tests {
    use super::*;

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
