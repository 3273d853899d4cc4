//! Tests of the transcript comparison on hand-made transcripts.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{RightKind, Summary, compare};
use crate::scenario::{Expect, IntendedDifference};
use crate::transcript::{
    CheckRecord, FORMAT, RequestRecord, ResponseRecord, ScenarioRecord, StepRecord, Transcript,
};

fn step(index: usize, status: u16, body: Value) -> StepRecord {
    StepRecord {
        index,
        repetition: None,
        note: None,
        request: RequestRecord {
            method: "POST".into(),
            path: "/api/v1/users".into(),
            headers: BTreeMap::new(),
            body_kind: None,
            body: None,
            content_type: None,
        },
        response: ResponseRecord {
            status,
            headers: BTreeMap::from([(
                "content-type".into(),
                "application/json; charset=utf-8".into(),
            )]),
            body_kind: if body.is_null() {
                "empty".into()
            } else {
                "json".into()
            },
            body: if body.is_null() {
                json!("<empty>")
            } else {
                body
            },
        },
        checks: Vec::new(),
        intended_difference: None,
    }
}

fn transcript(steps: Vec<StepRecord>) -> Transcript {
    Transcript {
        format: FORMAT,
        target: "http://test".into(),
        scenarios: vec![ScenarioRecord {
            name: "demo".into(),
            steps,
        }],
    }
}

fn intended(number: u8, status: u16, eventually: bool) -> Option<IntendedDifference> {
    Some(IntendedDifference {
        number,
        identity: Expect {
            status: Some(status),
            body_has: vec!["error".into()],
            ..Expect::default()
        },
        eventually,
        note: None,
    })
}

fn summary(steps: usize, equal: usize, intended: usize, divergent: usize) -> Summary {
    Summary {
        scenarios: 1,
        steps,
        equal,
        intended,
        divergent,
    }
}

#[test]
fn equal_transcripts() {
    let t = transcript(vec![
        step(0, 201, json!({"id": "<member:1>"})),
        step(1, 204, Value::Null),
    ]);
    let report = compare(&t, &t.clone(), RightKind::Legacy);
    assert_eq!(report.summary, summary(2, 2, 0, 0));
    assert_eq!(report.text, "");
}

#[test]
fn divergent_steps_show_field_differences() {
    let left = transcript(vec![step(0, 200, json!({"nickname": "bob"}))]);
    let right = transcript(vec![step(0, 200, json!({"nickname": "bobby"}))]);
    let report = compare(&left, &right, RightKind::Legacy);
    assert_eq!(report.summary, summary(1, 0, 0, 1));
    assert_eq!(
        report.text,
        "scenario demo\n  step 0: DIVERGENT — POST /api/v1/users\n      ~ $.body.nickname: \"bob\" != \"bobby\"\n"
    );
}

#[test]
fn intended_differences_only_for_the_identity_service() {
    let mut legacy = step(0, 500, Value::Null);
    legacy.intended_difference = intended(1, 400, false);
    let left = transcript(vec![legacy.clone()]);
    let good = transcript(vec![step(0, 400, json!({"error": "bad request"}))]);
    let bad = transcript(vec![step(0, 422, json!({"errors": {}}))]);

    let report = compare(&left, &good, RightKind::Identity);
    assert_eq!(report.summary, summary(1, 0, 1, 0));
    assert!(
        report
            .text
            .contains("step 0: intended difference 1 applies"),
        "{}",
        report.text
    );

    let report = compare(&left, &bad, RightKind::Identity);
    assert_eq!(report.summary, summary(1, 0, 0, 1));
    assert!(
        report.text.contains("identity status is 400 — got 422"),
        "{}",
        report.text
    );

    // Against another legacy, the step must be equal like any other.
    assert_eq!(
        compare(&left, &good, RightKind::Legacy).summary,
        summary(1, 0, 0, 1)
    );
    assert_eq!(
        compare(&left, &left.clone(), RightKind::Legacy).summary,
        summary(1, 1, 0, 0)
    );
}

fn repeated(statuses: &[u16]) -> Vec<StepRecord> {
    statuses
        .iter()
        .enumerate()
        .map(|(i, status)| {
            let mut s = step(0, *status, json!({"error": if *status == 429 { "Too many attempts" } else { "Invalid email or password" }}));
            s.repetition = Some(i as u32 + 1);
            s.intended_difference = intended(4, 429, true);
            s
        })
        .collect()
}

#[test]
fn eventually_intended_differences() {
    let left = transcript(repeated(&[401, 401, 401, 401]));
    let throttled = transcript(repeated(&[401, 401, 429, 429]));
    assert_eq!(
        compare(&left, &throttled, RightKind::Identity).summary,
        summary(4, 2, 2, 0)
    );

    let never = transcript(repeated(&[401, 401, 401, 401]));
    let report = compare(&left, &never, RightKind::Identity);
    assert_eq!(report.summary, summary(4, 3, 0, 1));
    assert!(
        report
            .text
            .contains("intended difference 4 never applied in 4 attempts"),
        "{}",
        report.text
    );

    let odd = transcript(repeated(&[401, 500, 429, 429]));
    assert_eq!(
        compare(&left, &odd, RightKind::Identity).summary,
        summary(4, 1, 2, 1)
    );
}

#[test]
fn failed_checks_and_missing_parts_diverge() {
    let mut failing = step(0, 201, json!({}));
    failing
        .checks
        .push(CheckRecord::fail("contract status is 422", "got 201"));
    let left = transcript(vec![failing.clone(), step(1, 200, json!({}))]);
    let right = transcript(vec![failing]);
    let report = compare(&left, &right, RightKind::Legacy);
    assert_eq!(report.summary, summary(2, 0, 0, 2));
    assert!(
        report
            .text
            .contains("left check failed: contract status is 422 — got 201")
    );
    assert!(report.text.contains("right check failed"));
    assert!(
        report
            .text
            .contains("no such request in the right transcript")
    );

    let mut other = right.clone();
    other.scenarios[0].name = "other".into();
    let report = compare(&left, &other, RightKind::Legacy);
    assert_eq!(report.summary.scenarios, 2);
    assert_eq!(report.summary.divergent, 3);
}
