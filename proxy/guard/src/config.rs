//! The guard's thresholds and window shape, and their validation: an error names the
//! setting (a field of [`GuardConfig`]; the proxy prefixes its own section name).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Most buckets in a window (memory bound: a bucket holds two latency histograms).
pub const MAX_BUCKETS: u64 = 3600;

/// A setting out of its range.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{setting}: {reason}")]
pub struct ConfigError {
    /// The setting, e.g. `max_error_rate`.
    pub setting: &'static str,
    /// Why it is refused.
    pub reason: String,
}

fn invalid(setting: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        setting,
        reason: reason.into(),
    }
}

/// When a route's rollout aborts, and how much is measured to decide.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GuardConfig {
    /// Length of the sliding window, in seconds.
    pub window_secs: u32,
    /// Width of one bucket of the window, in milliseconds; the window is a ring of
    /// `window / bucket` buckets (at most 3600), and expires a bucket at a time.
    pub bucket_ms: u32,
    /// New-side requests needed in the window before its error rate or latency can
    /// abort the route (and legacy requests needed for the latency ratio).
    pub min_requests: u64,
    /// Compared pairs (match, noise, mismatch) needed in the window before the mismatch
    /// rate can abort the route.
    pub min_comparisons: u64,
    /// New side's error rate (5xx, connection failures, timeouts; not 4xx) at or above
    /// which the route aborts; in (0, 1].
    pub max_error_rate: f64,
    /// When true, the new side's error rate must be at least `max_error_rate` above the
    /// legacy's over the same window: failures that both sides share (a common
    /// dependency down, such as the legacy's database, which the new side writes
    /// through to while migrating) are not the new side's fault, and moving users back
    /// would not help them.
    pub error_rate_relative_to_legacy: bool,
    /// New-side failures in a row (no success between them) at which the route aborts,
    /// whatever `min_requests`: a route with little traffic can fail every request and
    /// never reach `min_requests` in the window. 0: off.
    pub max_consecutive_errors: u64,
    /// Mismatch rate (mismatches over compared pairs, noise not a mismatch) at or above
    /// which the route aborts; in (0, 1].
    pub max_mismatch_rate: f64,
    /// Ratio of the new side's p99 latency to the legacy's at or above which the route
    /// aborts; at least 1.
    pub max_p99_ratio: f64,
    /// New-side p99 latency, in milliseconds, under which latency never aborts (a 2 ms
    /// answer is fine even if the legacy took 0.5 ms).
    pub p99_floor_ms: f64,
    /// Differing fields listed in a snapshot, most frequent first.
    pub top_fields: usize,
    /// Distinct differing fields counted per bucket (memory bound); further ones are
    /// counted as untracked.
    pub fields_per_bucket: usize,
    /// Most routes tracked; events of further routes are ignored (memory bound).
    pub max_routes: usize,
}

impl Default for GuardConfig {
    fn default() -> Self {
        Self {
            window_secs: 60,
            bucket_ms: 1000,
            min_requests: 100,
            min_comparisons: 50,
            max_error_rate: 0.05,
            error_rate_relative_to_legacy: true,
            max_consecutive_errors: 10,
            max_mismatch_rate: 0.01,
            max_p99_ratio: 2.0,
            p99_floor_ms: 50.0,
            top_fields: 10,
            fields_per_bucket: 16,
            max_routes: 1024,
        }
    }
}

impl GuardConfig {
    /// Checks every setting; the error names the first one at fault.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.window_secs == 0 {
            return Err(invalid("window_secs", "must be at least 1"));
        }
        if self.bucket_ms == 0 {
            return Err(invalid("bucket_ms", "must be at least 1"));
        }
        let window_ms = u64::from(self.window_secs) * 1000;
        if u64::from(self.bucket_ms) > window_ms {
            return Err(invalid("bucket_ms", "must not be longer than the window"));
        }
        if self.buckets() > MAX_BUCKETS {
            return Err(invalid(
                "bucket_ms",
                format!(
                    "the window would hold {} buckets, more than {MAX_BUCKETS}",
                    self.buckets()
                ),
            ));
        }
        for (setting, rate) in [
            ("max_error_rate", self.max_error_rate),
            ("max_mismatch_rate", self.max_mismatch_rate),
        ] {
            if !(rate > 0.0 && rate <= 1.0) {
                return Err(invalid(setting, format!("must be in (0, 1], got {rate}")));
            }
        }
        if !(self.max_p99_ratio >= 1.0 && self.max_p99_ratio.is_finite()) {
            return Err(invalid(
                "max_p99_ratio",
                format!("must be at least 1, got {}", self.max_p99_ratio),
            ));
        }
        if !(self.p99_floor_ms >= 0.0 && self.p99_floor_ms.is_finite()) {
            return Err(invalid(
                "p99_floor_ms",
                format!("must be a non-negative number, got {}", self.p99_floor_ms),
            ));
        }
        if self.min_requests == 0 {
            return Err(invalid("min_requests", "must be at least 1"));
        }
        if self.min_comparisons == 0 {
            return Err(invalid("min_comparisons", "must be at least 1"));
        }
        if self.max_routes == 0 {
            return Err(invalid("max_routes", "must be at least 1"));
        }
        Ok(())
    }

    /// How many buckets the window holds.
    pub fn buckets(&self) -> u64 {
        (u64::from(self.window_secs) * 1000).div_ceil(u64::from(self.bucket_ms.max(1)))
    }

    /// The width of one bucket.
    pub fn bucket(&self) -> Duration {
        Duration::from_millis(u64::from(self.bucket_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let c = GuardConfig::default();
        c.validate().unwrap();
        assert_eq!(c.buckets(), 60);
    }

    #[test]
    fn errors_name_the_setting() {
        type Breaker = fn(&mut GuardConfig);
        let cases: [(&str, Breaker); 7] = [
            ("window_secs", |c| c.window_secs = 0),
            ("bucket_ms", |c| c.bucket_ms = 61_000),
            ("bucket_ms", |c| c.bucket_ms = 1),
            ("max_error_rate", |c| c.max_error_rate = 0.0),
            ("max_mismatch_rate", |c| c.max_mismatch_rate = f64::NAN),
            ("max_p99_ratio", |c| c.max_p99_ratio = 0.5),
            ("min_requests", |c| c.min_requests = 0),
        ];
        for (setting, break_it) in cases {
            let mut c = GuardConfig::default();
            break_it(&mut c);
            let err = c.validate().unwrap_err();
            assert_eq!(err.setting, setting);
            assert!(err.to_string().starts_with(setting), "{err}");
        }
    }

    #[test]
    fn unknown_settings_are_refused() {
        assert!(serde_json::from_str::<GuardConfig>(r#"{"max_error": 0.1}"#).is_err());
        let c: GuardConfig = serde_json::from_str(r#"{"max_error_rate": 0.1}"#).unwrap();
        assert_eq!((c.max_error_rate, c.window_secs), (0.1, 60));
    }
}
