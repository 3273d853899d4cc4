//! Write effects compared: after a write that succeeded, the proxy asks the new side
//! whether the written member is now the same on both sides and as the request asked
//! (the identity service's `POST /internal/write-effects`, which reads both databases
//! and writes nothing). No other write is held against it, even one at the same
//! instant: the question says when the write came in and the `updated_at` the primary
//! answered with. A write served by the new side has reached the legacy before
//! its answer (the write-through); one served by the legacy reaches the new side with
//! the sync's lag: the question is asked again, at growing pauses, until the member
//! agrees or `comparison.write_effects_settle` has passed. Only a difference that
//! outlasts it counts, as a mismatch of the route (for the guard, the metrics and the
//! samples: field names, never values).

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, header};
use http_body_util::BodyExt;
use proxy_routing::Side;
use shadow_compare::{MaskedSample, Outcome, path_template};

use crate::Proxy;
use crate::forward;
use crate::replay::ReplayJob;
use crate::trace::OutgoingSpan;

/// The identity service's answer to the question.
const PATH: &str = "/internal/write-effects";

/// The mark the proxy strips from every client's request: only its own question
/// carries it.
const MARK: &str = "write-effects";

/// Largest answer read (a list of field names).
const MAX_ANSWER_BYTES: usize = 16 * 1024;

/// Most field names kept of one answer.
const MAX_FIELDS: usize = 32;

/// The first pause before the question is asked again, doubled each time up to
/// `MAX_PAUSE`.
const FIRST_PAUSE: Duration = Duration::from_millis(100);
const MAX_PAUSE: Duration = Duration::from_secs(1);

/// What one question found.
#[derive(Debug, PartialEq)]
enum Asked {
    Agreed,
    Differs(Vec<String>),
    /// Still different when the time was up, for a write the legacy served, but the
    /// identity service's row older than the legacy's (or not there): the sync had not
    /// caught up (its lag, watched on its own), so nothing is known of the write.
    Lagging,
    /// The question names no member (a legacy token whose row the write deleted).
    Unresolved,
    /// Nothing to compare with: the new side holds no legacy database (cut over).
    NotMigrating,
    /// No answer (the new side or a database failed, or timed out).
    Unavailable,
}

/// What a primary's answer says of the written member: its id and its `updated_at`,
/// of a member or of a session's `user`.
#[derive(Debug, Default, PartialEq)]
pub struct Answered {
    pub id: Option<i64>,
    pub updated_at: Option<String>,
}

pub fn member_in_answer(body: &[u8]) -> Answered {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return Answered::default();
    };
    let member = match value.get("user") {
        Some(user) if value.get("id").is_none() => user,
        _ => &value,
    };
    Answered {
        id: member.get("id").and_then(serde_json::Value::as_i64),
        updated_at: member
            .get("updated_at")
            .and_then(serde_json::Value::as_str)
            .filter(|t| t.len() <= 64)
            .map(str::to_owned),
    }
}

/// Compares the effect of the job's write (served, successfully, with `primary_body`),
/// and records it.
pub async fn compare(proxy: &Proxy, job: &ReplayJob, primary_body: &[u8]) {
    let (route, kind) = (job.route.name(), job.kind);
    let snap = proxy.live.snapshot();
    let settle = snap.config.write_effects_settle();
    let Some(address) = snap.config.address_of(&job.route, Side::New).cloned() else {
        return;
    };
    drop(snap);
    let answered = member_in_answer(primary_body);
    let mut member = answered.id;
    let deadline = Instant::now() + settle;
    let mut pause = FIRST_PAUSE;
    // Asked at once (a write-through is there already; a bearer still names its
    // member before the client's next request may end its session), then again.
    let asked = loop {
        let (asked, named, behind) =
            ask(proxy, &address, job, member, answered.updated_at.as_deref()).await;
        // The member the first answer found is the one asked about from then on.
        member = member.or(named);
        let settled = matches!(
            asked,
            Asked::Agreed | Asked::Unresolved | Asked::NotMigrating
        );
        if settled || Instant::now() + pause >= deadline {
            // Only the sync lags: what the new side served was written through.
            let lagging = behind && job.primary_side == Side::Legacy;
            break if lagging { Asked::Lagging } else { asked };
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(MAX_PAUSE);
    };
    let result = match &asked {
        Asked::Agreed => "match",
        Asked::Differs(_) => "mismatch",
        Asked::Lagging => "lagging",
        Asked::Unresolved => "unresolved",
        Asked::NotMigrating => "not_migrating",
        Asked::Unavailable => "unavailable",
    };
    proxy.metrics.count_write(route, kind, "effect", result);
    let outcome = match asked {
        Asked::Agreed => Outcome::Match,
        Asked::Differs(fields) => {
            let fields: Vec<String> = fields.into_iter().map(|f| format!("effect:{f}")).collect();
            tracing::info!(request_id = %job.inbound.request_id, route, kind, fields = ?fields, "write effect mismatch");
            let sample = sample(job, kind, &fields);
            proxy.samples.push(sample.clone());
            Outcome::Mismatch {
                fields,
                sample: Box::new(sample),
            }
        }
        // Not evidence either way.
        Asked::Lagging | Asked::Unresolved | Asked::NotMigrating | Asked::Unavailable => return,
    };
    proxy.guard.record_outcome(route, &outcome, Instant::now());
    proxy.evaluate_soon();
}

/// What the samples show of a write whose effect differs: its shape and the names of
/// the fields.
fn sample(job: &ReplayJob, kind: &str, fields: &[String]) -> MaskedSample {
    MaskedSample {
        route: job.route.name().to_owned(),
        method: job.inbound.method.as_str().to_owned(),
        path: path_template(job.inbound.path_and_query.as_str()),
        primary: job.primary_side,
        legacy_status: job.primary_status,
        new_status: job.primary_status,
        request_headers: Vec::new(),
        differences: fields
            .iter()
            .map(|f| format!("~ {kind} effect: {f}"))
            .collect(),
        truncated: false,
    }
}

/// Asks the new side once: its answer, the member it was about, and whether the
/// identity service's row was behind the legacy's.
async fn ask(
    proxy: &Proxy,
    address: &http::uri::Authority,
    job: &ReplayJob,
    member: Option<i64>,
    updated_at: Option<&str>,
) -> (Asked, Option<i64>, bool) {
    let mut req = Request::new(forward::full(job.body.clone()));
    *req.method_mut() = Method::POST;
    *req.uri_mut() = http::Uri::from_static(PATH);
    let headers = req.headers_mut();
    for name in [header::AUTHORIZATION, header::CONTENT_TYPE] {
        if let Some(v) = job.inbound.headers.get(&name) {
            headers.insert(name, v.clone());
        }
    }
    headers.insert("x-shadow", HeaderValue::from_static(MARK));
    headers.insert(
        "x-write-method",
        HeaderValue::from_str(job.inbound.method.as_str()).unwrap_or(HeaderValue::from_static("")),
    );
    if let Ok(v) = HeaderValue::from_str(job.inbound.path_and_query.as_str()) {
        headers.insert("x-write-path", v);
    }
    if let Some(id) = member {
        headers.insert("x-write-member", HeaderValue::from(id));
    }
    headers.insert("x-write-at", HeaderValue::from(job.received_at_micros));
    headers.insert(
        "x-write-answered-at",
        HeaderValue::from(job.answered_at_micros),
    );
    if let Some(v) = updated_at.and_then(|t| HeaderValue::from_str(t).ok()) {
        headers.insert("x-write-updated-at", v);
    }
    if let Ok(v) = HeaderValue::from_str(&job.inbound.request_id) {
        headers.insert("x-request-id", v);
    }
    let span = job.inbound.trace.as_ref().and_then(|cx| {
        let name = format!("write effects {} {kind}", job.route.name(), kind = job.kind);
        OutgoingSpan::linked(cx, name, Side::New, req.headers_mut())
    });
    let sent = proxy
        .upstreams
        .send(address, req, job.route.timeout())
        .await;
    if let Some(span) = &span {
        span.answered(sent.as_ref().ok().map(|r| r.status().as_u16()));
    }
    let Ok(resp) = sent else {
        return (Asked::Unavailable, None, false);
    };
    let status = resp.status().as_u16();
    let Ok(body) = http_body_util::Limited::new(resp.into_body(), MAX_ANSWER_BYTES)
        .collect()
        .await
        .map(|c| c.to_bytes())
    else {
        return (Asked::Unavailable, None, false);
    };
    read_answer(status, &body)
}

/// The answer, the member it was about, and whether the identity service was behind.
fn read_answer(status: u16, body: &Bytes) -> (Asked, Option<i64>, bool) {
    match status {
        200 => {}
        409 => return (Asked::NotMigrating, None, false),
        422 => return (Asked::Unresolved, None, false),
        _ => return (Asked::Unavailable, None, false),
    }
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return (Asked::Unavailable, None, false);
    };
    let member = value.get("member_id").and_then(serde_json::Value::as_i64);
    let behind = value.get("behind").and_then(serde_json::Value::as_bool) == Some(true);
    let Some(list) = value.get("differences").and_then(|d| d.as_array()) else {
        return (Asked::Unavailable, member, behind);
    };
    let fields: Vec<String> = list
        .iter()
        .filter_map(|f| f.as_str())
        .take(MAX_FIELDS)
        .map(|f| f.chars().take(64).collect())
        .collect();
    let asked = if list.is_empty() {
        Asked::Agreed
    } else {
        Asked::Differs(fields)
    };
    (asked, member, behind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_member_is_read_from_a_member_or_a_session() {
        let member = member_in_answer(br#"{"id":5,"updated_at":"2026-12-04T19:00:00.123Z"}"#);
        assert_eq!(member.id, Some(5));
        assert_eq!(
            member.updated_at.as_deref(),
            Some("2026-12-04T19:00:00.123Z")
        );
        let session = member_in_answer(br#"{"token":"t","user":{"id":7,"updated_at":"x"}}"#);
        assert_eq!(session.id, Some(7));
        assert_eq!(session.updated_at.as_deref(), Some("x"));
        assert_eq!(member_in_answer(b""), Answered::default());
        assert_eq!(member_in_answer(br#"{"errors":{}}"#), Answered::default());
    }

    #[test]
    fn answers_are_read_as_the_service_gives_them() {
        let ok = |s: &str| read_answer(200, &Bytes::from(s.to_owned()));
        assert_eq!(
            ok(r#"{"member_id":3,"differences":[],"behind":false}"#),
            (Asked::Agreed, Some(3), false)
        );
        assert_eq!(
            ok(r#"{"member_id":3,"differences":["legacy:phone_number"]}"#),
            (
                Asked::Differs(vec!["legacy:phone_number".into()]),
                Some(3),
                false
            )
        );
        assert_eq!(
            ok(r#"{"member_id":3,"differences":["nickname"],"behind":true}"#),
            (Asked::Differs(vec!["nickname".into()]), Some(3), true)
        );
        assert_eq!(ok("not json"), (Asked::Unavailable, None, false));
        assert_eq!(read_answer(409, &Bytes::new()).0, Asked::NotMigrating);
        assert_eq!(read_answer(422, &Bytes::new()).0, Asked::Unresolved);
        assert_eq!(read_answer(503, &Bytes::new()).0, Asked::Unavailable);
    }
}
