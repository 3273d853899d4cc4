//! Figures over the window: expiry of old buckets, late events, top fields and the
//! bounds on routes and fields.

use std::time::{Duration, Instant};

use shadow_compare::{Category, Outcome, Side, SkipReason};

use super::*;
use crate::{Decision, GuardConfig};

#[test]
fn old_buckets_expire() {
    let g = guard(small());
    let t0 = Instant::now();
    traffic(&g, Side::New, t0, 10, 100, 2, ms(5));
    let early = g
        .route_snapshot(ROUTE, t0 + Duration::from_secs(10))
        .unwrap();
    assert_eq!((early.new.requests, early.new.error_rate), (100, 0.5));
    assert_eq!(early.span_secs, 11.0);
    assert!((early.new.request_rate - 100.0 / 11.0).abs() < 1e-9);

    // At 64 s the window covers 5 s to 64 s: the first five seconds have left it.
    let mid = g
        .route_snapshot(ROUTE, t0 + Duration::from_secs(64))
        .unwrap();
    assert_eq!(
        mid.new.requests, 50,
        "the first 5 seconds have left the window"
    );
    let gone = g
        .route_snapshot(ROUTE, t0 + Duration::from_secs(70))
        .unwrap();
    assert_eq!(
        (gone.new.requests, gone.new.error_rate, gone.span_secs),
        (0, 0.0, 60.0)
    );
    assert_eq!(gone.new.p99_ms, None);

    // Healthy traffic afterwards is judged on its own.
    traffic(
        &g,
        Side::New,
        t0 + Duration::from_secs(70),
        10,
        100,
        0,
        ms(5),
    );
    assert_eq!(
        g.evaluate(ROUTE, t0 + Duration::from_secs(80)),
        Decision::Healthy
    );
}

#[test]
fn late_events_older_than_the_window_are_dropped() {
    let g = guard(small());
    let t0 = Instant::now();
    g.record_request(
        ROUTE,
        Side::New,
        ms(5),
        false,
        t0 + Duration::from_secs(100),
    );
    g.record_request(ROUTE, Side::New, ms(5), true, t0 + Duration::from_secs(40));
    g.record_request(ROUTE, Side::New, ms(5), true, t0 + Duration::from_secs(41));
    let s = g
        .route_snapshot(ROUTE, t0 + Duration::from_secs(100))
        .unwrap();
    assert_eq!(
        (s.new.requests, s.new.errors),
        (2, 1),
        "t0+40 s is out, t0+41 s is in"
    );
}

#[test]
fn top_fields_come_from_mismatch_outcomes_and_are_bounded() {
    let g = guard(GuardConfig {
        top_fields: 2,
        fields_per_bucket: 3,
        ..small()
    });
    let t0 = Instant::now();
    let mismatch = |fields: &[&str]| {
        let comparator = shadow_compare::Comparator::new(Default::default()).unwrap();
        let noise = comparator.noise_model();
        let request = shadow_compare::RequestMeta::new(ROUTE, "GET", "/api/v1/users/me");
        let legacy: serde_json::Map<String, serde_json::Value> =
            fields.iter().map(|f| (f.to_string(), 1.into())).collect();
        let new: serde_json::Map<String, serde_json::Value> =
            fields.iter().map(|f| (f.to_string(), 2.into())).collect();
        let outcome = comparator.compare(
            &request,
            Side::Legacy,
            &shadow_compare::Exchange::json(200, &legacy.into()),
            &shadow_compare::Exchange::json(200, &new.into()),
            &noise,
        );
        assert_eq!(outcome.category(), Category::Mismatch);
        outcome
    };
    for _ in 0..3 {
        g.record_outcome(ROUTE, &mismatch(&["nickname"]), t0);
    }
    g.record_outcome(
        ROUTE,
        &mismatch(&["nickname", "phone_number", "a", "b"]),
        t0,
    );
    g.record_outcome(
        ROUTE,
        &mismatch(&["phone_number"]),
        t0 + Duration::from_secs(1),
    );
    g.record_outcome(ROUTE, &Outcome::Skipped(SkipReason::ShadowFailed), t0);
    let s = g
        .route_snapshot(ROUTE, t0 + Duration::from_secs(1))
        .unwrap();
    let top: Vec<(&str, u64)> = s
        .top_fields
        .iter()
        .map(|f| (f.field.as_str(), f.count))
        .collect();
    assert_eq!(top, [("$.nickname", 4), ("$.phone_number", 2)]);
    assert_eq!(s.untracked_fields, 1, "$.b did not fit in the first bucket");
    assert_eq!((s.comparisons.mismatches, s.comparisons.skipped), (5, 1));
}

#[test]
fn routes_are_bounded_and_snapshots_sorted() {
    let g = guard(GuardConfig {
        max_routes: 2,
        ..small()
    });
    let t0 = Instant::now();
    for route in ["b", "a", "c"] {
        g.record_request(route, Side::New, ms(1), false, t0);
    }
    let routes: Vec<String> = g.snapshot(t0).into_iter().map(|s| s.route).collect();
    assert_eq!(routes, ["a", "b"]);
    assert!(g.route_snapshot("c", t0).is_none());
    assert_eq!(g.evaluate("c", t0), Decision::Healthy);
    let json = serde_json::to_value(g.snapshot(t0)).unwrap();
    assert_eq!(json[0]["state"]["state"], "running");
    assert_eq!(json[0]["new"]["requests"], 1);
}
