//! Noise learning: legacy pairs that make a field noise, the thresholds, skipped
//! pairs and the memory bound.

use serde_json::{Value, json};

use super::*;
use crate::{Comparator, CompareConfig, Exchange, LearnSkip, Learned, Outcome, RequestMeta, Side};

#[test]
fn legacy_pairs_teach_noise_and_noise_is_not_a_mismatch() {
    let comparator = Comparator::new(CompareConfig {
        noise: crate::NoiseConfig {
            absolute: 3,
            ..Default::default()
        },
        ..Default::default()
    })
    .unwrap();
    let noise = comparator.noise_model();
    // A legacy deployment that renders `updated_at` from the clock on every read.
    for i in 0..3 {
        let a = ok(&member(
            "bob",
            "2026-11-26T07:17:26.992Z",
            &format!("2026-11-26T09:00:0{i}.000Z"),
        ));
        let b = ok(&member(
            "bob",
            "2026-11-26T07:17:26.992Z",
            &format!("2026-11-26T09:00:0{i}.500Z"),
        ));
        let learned = noise.learn(ME, &a, &b);
        assert_eq!(
            learned,
            Learned::Pair {
                differing: vec!["$.updated_at".into()]
            }
        );
    }
    assert!(noise.is_noise_field(ME, "$.updated_at"));
    assert!(!noise.is_noise_field(ME, "$.created_at"));
    assert!(
        !noise.is_noise_field(USERS, "$.updated_at"),
        "noise is per route"
    );

    let legacy = ok(&member(
        "bob",
        "2026-11-26T07:17:26.992Z",
        "2026-11-26T09:01:00.000Z",
    ));
    let new = ok(&member(
        "bob",
        "2026-11-26T07:17:26.992Z",
        "2026-11-26T09:01:00.004Z",
    ));
    assert_eq!(
        comparator.compare(&me_request(), Side::New, &new, &legacy, &noise),
        Outcome::Noise {
            fields: vec!["$.updated_at".into()]
        }
    );
    // A stored value that the legacy renders the same every time is still compared.
    let shifted = ok(&member(
        "bob",
        "2026-11-26T16:17:26.992Z",
        "2026-11-26T09:01:00.004Z",
    ));
    let outcome = comparator.compare(&me_request(), Side::Legacy, &legacy, &shifted, &noise);
    assert_eq!(outcome.mismatch_fields(), ["$.created_at"]);
    assert_eq!(
        outcome.sample().unwrap().differences.len(),
        1,
        "noise is not listed"
    );
}

#[test]
fn noise_needs_both_thresholds_and_generalises_over_elements() {
    let (c, noise) = setup(); // relative 0.2, absolute 5
    let list = |stamp: &str| {
        ok(&json!({"users": [
            {"id": 1, "nickname": "al", "profile_image_url": null, "created_at": stamp},
            {"id": 2, "nickname": "bob", "profile_image_url": null, "created_at": "2026-11-26T07:17:26.992Z"}
        ]}))
    };
    // 4 differing pairs out of 4: relative met, absolute (5) not yet.
    for _ in 0..4 {
        noise.learn(
            USERS,
            &list("2026-01-01T00:00:00.000Z"),
            &list("2026-01-01T00:00:00.001Z"),
        );
    }
    assert!(!noise.is_noise_field(USERS, "$.users[*].created_at"));
    // 30 stable pairs: 4/34 is under 0.2 even once the fifth difference comes.
    for _ in 0..30 {
        noise.learn(
            USERS,
            &list("2026-01-01T00:00:00.000Z"),
            &list("2026-01-01T00:00:00.000Z"),
        );
    }
    noise.learn(
        USERS,
        &list("2026-01-01T00:00:00.000Z"),
        &list("2026-01-01T00:00:00.001Z"),
    );
    assert!(!noise.is_noise_field(USERS, "$.users[*].created_at"));
    let report = noise.report(USERS).unwrap();
    assert_eq!(report.pairs, 35);
    let field = report
        .fields
        .iter()
        .find(|f| f.field == "$.users[*].created_at")
        .unwrap();
    assert_eq!(
        (field.observed, field.differed, field.noise),
        (35, 5, false)
    );
    let request = RequestMeta::new(USERS, "GET", "/api/v1/users?ids=1,2");
    let outcome = c.compare(
        &request,
        Side::Legacy,
        &list("2026-01-01T00:00:00.000Z"),
        &list("2026-01-02T00:00:00.000Z"),
        &noise,
    );
    assert_eq!(outcome.mismatch_fields(), ["$.users[*].created_at"]);
    assert_eq!(outcome.sample().unwrap().path, "/api/v1/users?ids=:value");
}

#[test]
fn learning_skips_unstable_pairs() {
    let (_, noise) = setup();
    let body = ok(&member(
        "bob",
        "2026-11-26T07:17:26.992Z",
        "2026-11-26T07:17:26.992Z",
    ));
    assert_eq!(
        noise.learn(ME, &body, &Exchange::new(500)),
        Learned::Skipped(LearnSkip::StatusDiffers)
    );
    let html = Exchange::new(200).body("<html>a</html>");
    assert_eq!(
        noise.learn(ME, &html, &Exchange::new(200).body("<html>b</html>")),
        Learned::Skipped(LearnSkip::NotJson)
    );
    assert_eq!(noise.report(ME).unwrap().skipped, 2);
}

#[test]
fn noise_memory_is_bounded_per_route() {
    let comparator = Comparator::new(CompareConfig {
        noise: crate::NoiseConfig {
            max_paths_per_route: 8,
            max_routes: 2,
            ..Default::default()
        },
        ..Default::default()
    })
    .unwrap();
    let noise = comparator.noise_model();
    for i in 0..50 {
        let mut a = serde_json::Map::new();
        let mut b = serde_json::Map::new();
        a.insert(format!("f{i}"), json!(1));
        b.insert(format!("f{i}"), json!(i % 2));
        noise.learn(
            ME,
            &Exchange::json(200, &Value::Object(a)),
            &Exchange::json(200, &Value::Object(b)),
        );
    }
    let report = noise.report(ME).unwrap();
    assert!(report.fields.len() <= 8, "{}", report.fields.len());
    assert!(report.untracked > 0);
    let body = ok(&json!({}));
    assert!(matches!(
        noise.learn("b", &body, &body),
        Learned::Pair { .. }
    ));
    assert_eq!(
        noise.learn("c", &body, &body),
        Learned::Skipped(LearnSkip::TooManyRoutes)
    );
    assert_eq!(noise.routes(), [ME, "b"]);
}
