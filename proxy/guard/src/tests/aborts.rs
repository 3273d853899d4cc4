//! Aborts on each metric, and what keeps a route running: too little traffic, errors
//! shared with the legacy, fast answers, noise, legacy crashes; resuming.

use std::time::{Duration, Instant};

use shadow_compare::{Category, Side};

use super::*;
use crate::{AbortReason, Decision, GuardConfig, RouteState, StateFigures};

#[test]
fn new_side_errors_abort_within_the_window() {
    let g = guard(small());
    let t0 = Instant::now();
    traffic(&g, Side::Legacy, t0, 10, 100, 0, ms(5));
    traffic(&g, Side::New, t0, 10, 100, 5, ms(5)); // 20% errors
    let at = t0 + Duration::from_secs(10);
    let Decision::Abort {
        reason,
        at: when,
        newly,
    } = g.evaluate(ROUTE, at)
    else {
        panic!("expected an abort");
    };
    assert!(newly);
    assert_eq!(when, at);
    assert_eq!(
        reason,
        AbortReason::ErrorRate {
            new: 0.2,
            legacy: 0.0,
            threshold: 0.1
        }
    );
    // It stays aborted, even once the errors have left the window.
    let later = t0 + Duration::from_secs(600);
    let again = g.evaluate(ROUTE, later);
    assert_eq!(
        again,
        Decision::Abort {
            reason: reason.clone(),
            at,
            newly: false
        }
    );
    assert_eq!(g.state(ROUTE), RouteState::Aborted { reason, at });
    let snapshot = g.route_snapshot(ROUTE, later).unwrap();
    let StateFigures::Aborted {
        secs_ago, message, ..
    } = snapshot.state
    else {
        panic!()
    };
    assert_eq!(secs_ago, 590.0);
    assert!(message.contains("20.00%"), "{message}");
}

#[test]
fn nothing_aborts_before_min_requests() {
    let g = guard(GuardConfig {
        max_consecutive_errors: 0,
        ..small()
    });
    let t0 = Instant::now();
    traffic(&g, Side::New, t0, 5, 19, 1, ms(5)); // every request fails, but only 19
    assert_eq!(
        g.evaluate(ROUTE, t0 + Duration::from_secs(5)),
        Decision::Healthy
    );
    g.record_request(ROUTE, Side::New, ms(5), true, t0 + Duration::from_secs(5));
    assert!(g.evaluate(ROUTE, t0 + Duration::from_secs(5)).is_abort());
}

#[test]
fn errors_shared_with_the_legacy_do_not_abort_unless_configured() {
    let t0 = Instant::now();
    for (relative, expect_abort) in [(true, false), (false, true)] {
        let g = guard(GuardConfig {
            error_rate_relative_to_legacy: relative,
            ..small()
        });
        traffic(&g, Side::Legacy, t0, 10, 100, 3, ms(5)); // 34% errors
        traffic(&g, Side::New, t0, 10, 100, 5, ms(5)); // 20% errors
        assert_eq!(
            g.evaluate(ROUTE, t0 + Duration::from_secs(10)).is_abort(),
            expect_abort
        );
    }
}

/// A dependency both sides share fails (the legacy's database, which the new side
/// writes through to): the new side fails a little more than the legacy, not by the
/// threshold: no abort; by the threshold beyond the legacy's: abort.
#[test]
fn only_the_errors_beyond_the_legacys_are_the_new_sides() {
    let t0 = Instant::now();
    for (new_every, expect_abort) in [(6, false), (3, true)] {
        let g = guard(small()); // max_error_rate 10%
        traffic(&g, Side::Legacy, t0, 10, 120, 8, ms(5)); // 12.5% errors
        traffic(&g, Side::New, t0, 10, 120, new_every, ms(5)); // 16.7%, then 33%
        assert_eq!(
            g.evaluate(ROUTE, t0 + Duration::from_secs(10)).is_abort(),
            expect_abort,
            "new side failing one in {new_every}"
        );
    }
}

/// A quiet route (sign-ups at a small share) never reaches `min_requests`: every one
/// of its requests failing aborts it all the same, after `max_consecutive_errors`; a
/// success between resets the count, and a legacy failing too (a shared dependency)
/// holds it back.
#[test]
fn a_quiet_route_failing_every_request_aborts_after_so_many_in_a_row() {
    let t0 = Instant::now();
    let config = GuardConfig {
        max_consecutive_errors: 5,
        min_requests: 1000,
        ..small()
    };
    let g = guard(config.clone());
    for i in 0..4 {
        g.record_request(ROUTE, Side::New, ms(5), true, t0 + ms(i));
    }
    g.record_request(ROUTE, Side::New, ms(5), false, t0 + ms(4));
    for i in 0..4 {
        g.record_request(ROUTE, Side::New, ms(5), true, t0 + ms(5 + i));
    }
    assert_eq!(g.evaluate(ROUTE, t0 + ms(10)), Decision::Healthy);
    g.record_request(ROUTE, Side::Legacy, ms(5), true, t0 + ms(10));
    g.record_request(ROUTE, Side::New, ms(5), true, t0 + ms(11));
    assert_eq!(
        g.evaluate(ROUTE, t0 + ms(12)),
        Decision::Healthy,
        "the legacy fails too"
    );
    g.record_request(ROUTE, Side::Legacy, ms(5), false, t0 + ms(12));
    g.record_request(ROUTE, Side::New, ms(5), true, t0 + ms(13));
    let Decision::Abort { reason, .. } = g.evaluate(ROUTE, t0 + ms(14)) else {
        panic!("expected an abort");
    };
    assert_eq!(
        reason,
        AbortReason::ConsecutiveErrors {
            count: 6,
            threshold: 5
        }
    );
    assert_eq!(reason.metric(), "consecutive_errors");
    assert!(AbortReason::METRICS.contains(&reason.metric()));
    // Off: never.
    let g = guard(GuardConfig {
        max_consecutive_errors: 0,
        ..config
    });
    for i in 0..100 {
        g.record_request(ROUTE, Side::New, ms(5), true, t0 + ms(i));
    }
    assert_eq!(g.evaluate(ROUTE, t0 + ms(100)), Decision::Healthy);
}

#[test]
fn resume_clears_the_abort_and_the_window() {
    let g = guard(small());
    let t0 = Instant::now();
    traffic(&g, Side::New, t0, 10, 100, 2, ms(5));
    let t1 = t0 + Duration::from_secs(10);
    assert!(g.evaluate(ROUTE, t1).is_abort());
    assert!(g.resume(ROUTE, t1));
    assert!(!g.resume(ROUTE, t1), "already running");
    assert_eq!(g.state(ROUTE), RouteState::Running);
    assert_eq!(
        g.evaluate(ROUTE, t1),
        Decision::Healthy,
        "old errors are forgotten"
    );
    assert_eq!(g.route_snapshot(ROUTE, t1).unwrap().new.requests, 0);
    // A late event from before the resume does not count either.
    g.record_request(ROUTE, Side::New, ms(5), true, t0 + Duration::from_secs(5));
    assert_eq!(g.route_snapshot(ROUTE, t1).unwrap().new.requests, 0);
    // New failures abort it again.
    traffic(&g, Side::New, t1, 5, 50, 2, ms(5));
    let Decision::Abort { newly, .. } = g.evaluate(ROUTE, t1 + Duration::from_secs(5)) else {
        panic!("expected an abort");
    };
    assert!(newly);
    assert!(!g.resume("never seen", t1));
}

#[test]
fn slow_p99_relative_to_the_legacy_aborts() {
    let g = guard(small());
    let t0 = Instant::now();
    traffic(&g, Side::Legacy, t0, 10, 200, 0, ms(40));
    traffic(&g, Side::New, t0, 10, 196, 0, ms(40));
    let now = t0 + Duration::from_secs(10);
    assert_eq!(g.evaluate(ROUTE, now), Decision::Healthy);
    for _ in 0..4 {
        g.record_request(ROUTE, Side::New, ms(400), false, now); // 2% of requests: p99
    }
    let Decision::Abort {
        reason:
            AbortReason::LatencyP99 {
                new_ms,
                legacy_ms,
                ratio,
                threshold,
            },
        ..
    } = g.evaluate(ROUTE, now)
    else {
        panic!("expected a latency abort");
    };
    assert!((new_ms - 400.0).abs() < 25.0, "{new_ms}");
    assert!((legacy_ms - 40.0).abs() < 2.5, "{legacy_ms}");
    assert!(ratio > 9.0 && ratio < 11.0, "{ratio}");
    assert_eq!(threshold, 2.0);
}

#[test]
fn fast_answers_never_abort_on_latency() {
    let g = guard(small()); // floor 50 ms
    let t0 = Instant::now();
    traffic(&g, Side::Legacy, t0, 10, 100, 0, Duration::from_micros(500));
    traffic(&g, Side::New, t0, 10, 100, 0, ms(20)); // 40x slower but 20 ms
    assert_eq!(
        g.evaluate(ROUTE, t0 + Duration::from_secs(10)),
        Decision::Healthy
    );
    let s = g
        .route_snapshot(ROUTE, t0 + Duration::from_secs(10))
        .unwrap();
    assert!((s.new.p50_ms.unwrap() - 20.0).abs() < 1.3);
}

#[test]
fn noise_is_not_a_mismatch() {
    let now = Instant::now() + Duration::from_secs(5);
    let t0 = now - Duration::from_secs(5);
    let g = guard(small());
    comparisons(
        &g,
        t0,
        &[
            (Category::Noise, 60),
            (Category::Match, 38),
            (Category::Mismatch, 2),
        ],
    );
    assert_eq!(g.evaluate(ROUTE, now), Decision::Healthy, "2% < 5%");
    assert_eq!(g.route_snapshot(ROUTE, now).unwrap().mismatch_rate, 0.02);

    let g = guard(small());
    comparisons(
        &g,
        t0,
        &[
            (Category::Noise, 60),
            (Category::Match, 34),
            (Category::Mismatch, 6),
        ],
    );
    let Decision::Abort { reason, .. } = g.evaluate(ROUTE, now) else {
        panic!()
    };
    assert_eq!(
        reason,
        AbortReason::MismatchRate {
            rate: 0.06,
            threshold: 0.05
        }
    );
}

#[test]
fn legacy_crashes_and_skips_are_not_compared_pairs() {
    let now = Instant::now() + Duration::from_secs(5);
    let t0 = now - Duration::from_secs(5);
    let g = guard(small());
    comparisons(
        &g,
        t0,
        &[
            (Category::LegacyServerErrorNewClientError, 100),
            (Category::Skipped, 100),
            (Category::Match, 19),
            (Category::Mismatch, 1),
        ],
    );
    let s = g.route_snapshot(ROUTE, now).unwrap();
    assert_eq!(s.mismatch_rate, 0.05);
    assert_eq!(
        (s.comparisons.legacy_5xx_new_4xx, s.comparisons.skipped),
        (100, 100)
    );
    assert!(
        g.evaluate(ROUTE, now).is_abort(),
        "20 compared pairs reach min_comparisons"
    );

    let g = guard(small());
    comparisons(
        &g,
        t0,
        &[
            (Category::Match, 18),
            (Category::Mismatch, 1),
            (Category::Skipped, 50),
        ],
    );
    assert_eq!(
        g.evaluate(ROUTE, now),
        Decision::Healthy,
        "19 compared pairs are too few"
    );
}

#[test]
fn new_thresholds_apply_when_reconfigured() {
    let g = guard(small());
    let t0 = Instant::now();
    traffic(&g, Side::Legacy, t0, 10, 100, 0, ms(5));
    traffic(&g, Side::New, t0, 10, 100, 20, ms(5)); // 5% errors: under 10%
    let at = t0 + Duration::from_secs(10);
    assert_eq!(g.evaluate(ROUTE, at), Decision::Healthy);
    // The same thresholds again: nothing to do.
    assert_eq!(g.reconfigure(small(), at), Ok(false));
    // An invalid one is refused, the previous one stays.
    let invalid = GuardConfig {
        max_error_rate: 0.0,
        ..small()
    };
    assert!(g.reconfigure(invalid, at).is_err());
    assert_eq!(g.config(), small());
    // A stricter threshold judges the same window.
    let strict = GuardConfig {
        max_error_rate: 0.04,
        ..small()
    };
    assert_eq!(g.reconfigure(strict, at), Ok(true));
    assert!(matches!(
        g.evaluate(ROUTE, at),
        Decision::Abort { newly: true, .. }
    ));
    // A new window shape starts every window afresh; the abort stays.
    let longer = GuardConfig {
        window_secs: 120,
        max_error_rate: 0.04,
        ..small()
    };
    assert_eq!(g.reconfigure(longer, at), Ok(true));
    assert!(g.state(ROUTE).is_aborted());
    let figures = g.route_snapshot(ROUTE, at).unwrap();
    assert_eq!(figures.new.requests, 0, "{figures:?}");
}
