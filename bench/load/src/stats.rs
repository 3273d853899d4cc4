//! Counting requests and their latencies.

use std::sync::Mutex;
use std::time::Duration;

#[derive(Default)]
pub struct Recorder {
    inner: Mutex<(Vec<u32>, u64)>,
}

impl Recorder {
    /// One request: its latency (µs) and whether it succeeded.
    pub fn record(&self, elapsed: Duration, ok: bool) {
        if let Ok(mut g) = self.inner.lock() {
            g.0.push(elapsed.as_micros().min(u32::MAX as u128) as u32);
            if !ok {
                g.1 += 1;
            }
        }
    }

    pub fn print(&self, name: &str, seconds: u64) {
        let Ok(mut g) = self.inner.lock() else { return };
        let errors = g.1;
        let lat = &mut g.0;
        lat.sort_unstable();
        let pct = |p: f64| {
            lat.get(((lat.len() as f64 - 1.0) * p) as usize)
                .copied()
                .unwrap_or(0) as f64
                / 1000.0
        };
        println!(
            "{name}: {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, {} requests, {errors} errors",
            lat.len() as f64 / seconds as f64,
            pct(0.5),
            pct(0.99),
            lat.len()
        );
    }
}
