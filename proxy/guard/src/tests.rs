//! Scenarios with time driven explicitly: the helpers that drive a guard, then aborts
//! and what prevents them (`aborts`) and the figures and their bounds (`figures`).

mod aborts;
mod figures;

use std::time::{Duration, Instant};

use shadow_compare::{Category, Side};

use crate::{Guard, GuardConfig};

const ROUTE: &str = "GET /api/v1/users/me";

fn guard(config: GuardConfig) -> Guard {
    Guard::new(config).unwrap()
}

fn small() -> GuardConfig {
    GuardConfig {
        min_requests: 20,
        min_comparisons: 20,
        max_error_rate: 0.1,
        max_mismatch_rate: 0.05,
        ..GuardConfig::default()
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// `n` requests to `side` spread over `secs` seconds from `from`, every `error_every`th
/// an error (0: none), each taking `latency`.
fn traffic(
    g: &Guard,
    side: Side,
    from: Instant,
    secs: u64,
    n: u64,
    error_every: u64,
    latency: Duration,
) {
    for i in 0..n {
        let at = from + Duration::from_millis(i * secs * 1000 / n.max(1));
        let error = error_every > 0 && i % error_every == 0;
        g.record_request(ROUTE, side, latency, error, at);
    }
}

fn comparisons(g: &Guard, t0: Instant, counts: &[(Category, u64)]) {
    for &(category, n) in counts {
        for i in 0..n {
            g.record_comparison(ROUTE, category, t0 + Duration::from_millis(i * 10));
        }
    }
}
