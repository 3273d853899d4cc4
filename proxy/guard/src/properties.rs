//! Property tests: the ring's memory never grows whatever the events and their order,
//! rates stay within [0, 1], and percentiles are within the histogram's precision.

use std::time::{Duration, Instant};

use proptest::prelude::*;
use shadow_compare::{Category, Side};

use crate::histogram::{Histogram, Merged};
use crate::window::Window;
use crate::{Guard, GuardConfig};

#[derive(Clone, Debug)]
enum Event {
    Request {
        side: Side,
        latency_us: u64,
        error: bool,
    },
    Comparison {
        category: Category,
        fields: Vec<String>,
    },
    Evaluate,
    Resume,
}

fn event() -> impl Strategy<Value = (u64, Event)> {
    let side = prop::sample::select(Side::ALL.to_vec());
    let category = prop::sample::select(Category::ALL.to_vec());
    let field = prop::sample::select(vec!["$.a", "$.b", "$.c", "$.d", "$.e", "status"]);
    let event = prop_oneof![
        6 => (side, 0u64..2_000_000, any::<bool>())
            .prop_map(|(side, latency_us, error)| Event::Request { side, latency_us, error }),
        3 => (category, prop::collection::vec(field.prop_map(String::from), 0..4))
            .prop_map(|(category, fields)| Event::Comparison { category, fields }),
        1 => Just(Event::Evaluate),
        1 => Just(Event::Resume),
    ];
    // Time offsets in ms over ~5 windows, not in order: late events happen.
    (0u64..20_000, event)
}

proptest! {
    #[test]
    fn the_ring_never_grows_and_rates_stay_in_range(
        events in prop::collection::vec(event(), 1..300),
        window_secs in 1u32..10,
        bucket_ms in prop::sample::select(vec![100u32, 250, 1000]),
    ) {
        let config = GuardConfig {
            window_secs, bucket_ms, min_requests: 5, min_comparisons: 5,
            fields_per_bucket: 3, ..GuardConfig::default()
        };
        let capacity = config.buckets() as usize;
        let guard = Guard::new(config).unwrap();
        let t0 = Instant::now();
        for (offset, event) in events {
            let now = t0 + Duration::from_millis(offset);
            match event {
                Event::Request { side, latency_us, error } => guard.record_request(
                    "r", side, Duration::from_micros(latency_us), error, now),
                Event::Comparison { category, fields } => {
                    guard.with_route("r", Some(now), |r| r.window.record_comparison(category, &fields, now));
                }
                Event::Evaluate => { guard.evaluate("r", now); }
                Event::Resume => { guard.resume("r", now); }
            }
            let bounds = guard.with_route("r", None, |r| (r.window.capacity(), r.window.max_fields_in_a_bucket()));
            if let Some((len, fields)) = bounds {
                prop_assert_eq!(len, capacity);
                prop_assert!(fields <= 3);
            }
            for s in guard.snapshot(now) {
                for side in [&s.legacy, &s.new] {
                    prop_assert!((0.0..=1.0).contains(&side.error_rate));
                    prop_assert!(side.errors <= side.requests);
                    if let (Some(p50), Some(p99)) = (side.p50_ms, side.p99_ms) {
                        prop_assert!(p50 <= p99);
                    }
                }
                prop_assert!((0.0..=1.0).contains(&s.mismatch_rate));
                prop_assert!(s.span_secs <= f64::from(window_secs) + 1e-9);
                prop_assert!(s.top_fields.len() <= 10);
            }
        }
    }

    #[test]
    fn quantiles_are_within_a_sixteenth(
        mut latencies in prop::collection::vec(1u64..100_000_000, 1..200),
        q in prop::sample::select(vec![0.5f64, 0.9, 0.99, 1.0]),
    ) {
        let mut h = Histogram::default();
        for &us in &latencies {
            h.record(Duration::from_micros(us));
        }
        let mut merged = Merged::default();
        h.add_to(&mut merged);
        latencies.sort_unstable();
        let rank = ((q * latencies.len() as f64).ceil() as usize).clamp(1, latencies.len());
        let exact_ms = latencies[rank - 1] as f64 / 1000.0;
        let estimate = merged.quantile_ms(q).unwrap();
        prop_assert!((estimate - exact_ms).abs() <= exact_ms / 16.0 + 0.001,
            "q{} estimate {} exact {}", q, estimate, exact_ms);
    }

    #[test]
    fn a_window_counts_exactly_what_is_inside_it(
        offsets in prop::collection::vec(0u64..30_000, 0..200),
        read_at in 0u64..40_000,
    ) {
        let config = GuardConfig { window_secs: 10, bucket_ms: 1000, ..GuardConfig::default() };
        let t0 = Instant::now();
        // The window is created at its first event, here 15 s in: earlier events (late
        // reports from other threads) are before its origin.
        let mut window = Window::new(&config, t0 + Duration::from_secs(15));
        // The model: an event is kept unless the newest tick seen so far (the origin's
        // at first) is 10 or more buckets ahead of it; a read counts the kept events
        // within 10 buckets of the later of the reading tick and the newest tick.
        let mut latest: u64 = 15;
        let mut kept = Vec::new();
        for &offset in &offsets {
            window.record_request(Side::New, Duration::from_millis(1), false, t0 + Duration::from_millis(offset));
            let tick = offset / 1000;
            if latest < tick + 10 {
                kept.push(tick);
                latest = latest.max(tick);
            }
        }
        let end = (read_at / 1000).max(latest);
        let expected = kept.iter().filter(|&&t| end - t < 10).count() as u64;
        let got = window.totals(t0 + Duration::from_millis(read_at)).side(Side::New).requests;
        prop_assert_eq!(got, expected);
    }
}
