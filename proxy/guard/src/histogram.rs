//! Latency histograms with log-linear bins: each power of two of microseconds is split
//! into 8 equal bins, so any percentile is known within 1/16 of its value (the bin's
//! middle is reported), from 1 µs to about 18 minutes, in a fixed 224 counters.

use std::time::Duration;

/// Bins per power of two (2^3).
const SUB_BITS: u32 = 3;
const SUB: u64 = 1 << SUB_BITS;
/// Largest latency told apart, in microseconds (2^30 µs ≈ 18 minutes); longer ones
/// fall in the last bin.
const MAX_MICROS: u64 = (1 << 30) - 1;
/// Number of bins.
pub(crate) const BINS: usize = bin(MAX_MICROS) + 1;

/// The bin of a latency in microseconds.
const fn bin(micros: u64) -> usize {
    let v = if micros > MAX_MICROS {
        MAX_MICROS
    } else {
        micros
    };
    if v < SUB {
        return v as usize;
    }
    let exp = 63 - v.leading_zeros();
    let sub = (v >> (exp - SUB_BITS)) & (SUB - 1);
    ((exp - SUB_BITS + 1) as u64 * SUB + sub) as usize
}

/// The middle of a bin, in microseconds.
fn bin_middle(index: usize) -> f64 {
    let index = index as u64;
    if index < SUB {
        return index as f64;
    }
    let exp = (index / SUB) as u32 + SUB_BITS - 1;
    let width = 1u64 << (exp - SUB_BITS);
    let lower = (SUB + index % SUB) * width;
    lower as f64 + (width as f64 - 1.0) / 2.0
}

/// One bucket's latencies: counters allocated on the first record, kept (zeroed) when
/// the bucket is reused.
#[derive(Clone, Debug, Default)]
pub(crate) struct Histogram {
    counts: Option<Box<[u32; BINS]>>,
}

impl Histogram {
    pub(crate) fn record(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let counts = self.counts.get_or_insert_with(|| Box::new([0; BINS]));
        let slot = &mut counts[bin(micros)];
        *slot = slot.saturating_add(1);
    }

    pub(crate) fn clear(&mut self) {
        if let Some(counts) = &mut self.counts {
            counts.fill(0);
        }
    }

    /// Adds this histogram's counts to `total`.
    pub(crate) fn add_to(&self, total: &mut Merged) {
        if let Some(counts) = &self.counts {
            for (sum, &n) in total.counts.iter_mut().zip(counts.iter()) {
                *sum += u64::from(n);
            }
            total.samples += counts.iter().map(|&n| u64::from(n)).sum::<u64>();
        }
    }
}

/// Several buckets' histograms added up.
#[derive(Clone, Debug)]
pub(crate) struct Merged {
    counts: Vec<u64>,
    samples: u64,
}

impl Default for Merged {
    fn default() -> Self {
        Self {
            counts: vec![0; BINS],
            samples: 0,
        }
    }
}

impl Merged {
    /// The `q` quantile (0 < q ≤ 1), in milliseconds; `None` without samples.
    pub(crate) fn quantile_ms(&self, q: f64) -> Option<f64> {
        if self.samples == 0 {
            return None;
        }
        let rank = ((q * self.samples as f64).ceil() as u64).clamp(1, self.samples);
        let mut seen = 0;
        for (index, &n) in self.counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(bin_middle(index) / 1000.0);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_are_contiguous_and_bounded() {
        assert_eq!(BINS, 224);
        let mut last = 0;
        for v in (0..5000).chain([MAX_MICROS - 1, MAX_MICROS, u64::MAX]) {
            let b = bin(v);
            assert!(
                b == last || b == last + 1 || v > 5000,
                "{v}: {b} after {last}"
            );
            assert!(b < BINS);
            last = b;
        }
        assert_eq!(bin(u64::MAX), BINS - 1);
    }

    #[test]
    fn middles_are_within_a_sixteenth() {
        for v in [
            1u64, 7, 8, 9, 15, 16, 100, 999, 1000, 12_345, 500_000, 60_000_000,
        ] {
            let middle = bin_middle(bin(v));
            assert!(
                (middle - v as f64).abs() <= v as f64 / 16.0 + 0.5,
                "{v}: {middle}"
            );
        }
    }

    #[test]
    fn quantiles() {
        let mut h = Histogram::default();
        for _ in 0..99 {
            h.record(Duration::from_millis(10));
        }
        h.record(Duration::from_millis(900));
        let mut m = Merged::default();
        h.add_to(&mut m);
        let p50 = m.quantile_ms(0.5).unwrap();
        let p99 = m.quantile_ms(0.99).unwrap();
        let p100 = m.quantile_ms(1.0).unwrap();
        assert!((p50 - 10.0).abs() < 0.7, "{p50}");
        assert!((p99 - 10.0).abs() < 0.7, "{p99}");
        assert!((p100 - 900.0).abs() < 60.0, "{p100}");
        assert_eq!(Merged::default().quantile_ms(0.99), None);
    }
}
