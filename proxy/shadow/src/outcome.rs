//! What one comparison concludes ([`Outcome`]) and its category ([`Category`]), the
//! label that per-route statistics and the rollout guard count.

use serde::{Deserialize, Serialize};

use crate::sample::MaskedSample;

/// Why a pair of answers was not compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// A body over the configured bound, or truncated by the proxy.
    BodyTooLarge,
    /// Bodies that differ but are not both JSON, so cannot be compared field by field.
    NotJson,
    /// The shadow call failed (connection, timeout): there is no second answer. The
    /// proxy records this outcome itself; the comparator never sees such a call.
    ShadowFailed,
    /// The replay did not finish within its time (a stalled side, or a client that did
    /// not read the served answer); its slot was freed. Recorded by the proxy.
    Timeout,
    /// The proxy's body budget had no room to keep the request or an answer.
    OverBudget,
    /// Too many replays were in flight already.
    Overload,
    /// The new side declined a dry run rather than take capacity from real requests
    /// (no hashing slot free at once).
    NewSideBusy,
}

impl SkipReason {
    /// A short stable name, suitable as a metric label.
    pub fn name(self) -> &'static str {
        match self {
            SkipReason::BodyTooLarge => "body_too_large",
            SkipReason::NotJson => "not_json",
            SkipReason::ShadowFailed => "shadow_failed",
            SkipReason::Timeout => "timeout",
            SkipReason::OverBudget => "over_budget",
            SkipReason::Overload => "overload",
            SkipReason::NewSideBusy => "new_side_busy",
        }
    }

    /// The result label of the proxy's comparison counter: `skipped_` and the name.
    pub fn label(self) -> &'static str {
        match self {
            SkipReason::BodyTooLarge => "skipped_body_too_large",
            SkipReason::NotJson => "skipped_not_json",
            SkipReason::ShadowFailed => "skipped_shadow_failed",
            SkipReason::Timeout => "skipped_timeout",
            SkipReason::OverBudget => "skipped_over_budget",
            SkipReason::Overload => "skipped_overload",
            SkipReason::NewSideBusy => "skipped_new_side_busy",
        }
    }
}

/// The conclusion of comparing the legacy's answer with the new side's.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Equal under the rules (differences handled by the built-in or configured rules
    /// are not differences).
    Match,
    /// Differences only in fields learned to be noise on this route.
    Noise {
        /// The noise fields that differed (generalised names).
        fields: Vec<String>,
    },
    /// Real differences.
    Mismatch {
        /// Differing fields (generalised names such as `$.user.nickname`, `status`,
        /// `header:content-type`, `body`), without the noise fields, in order, each once.
        fields: Vec<String>,
        /// What the admin API shows, values masked.
        sample: Box<MaskedSample>,
    },
    /// The legacy failed (5xx) where the new side refused the request (4xx): an intended
    /// difference of the contract, counted on its own, neither match nor mismatch.
    LegacyServerErrorNewClientError,
    /// Not compared.
    Skipped(SkipReason),
}

/// The category of an [`Outcome`], without its details.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// See [`Outcome::Match`].
    Match,
    /// See [`Outcome::Noise`].
    Noise,
    /// See [`Outcome::Mismatch`].
    Mismatch,
    /// See [`Outcome::LegacyServerErrorNewClientError`].
    #[serde(rename = "legacy_5xx_new_4xx")]
    LegacyServerErrorNewClientError,
    /// See [`Outcome::Skipped`].
    Skipped,
}

impl Category {
    /// Every category, in a stable order.
    pub const ALL: [Category; 5] = [
        Category::Match,
        Category::Noise,
        Category::Mismatch,
        Category::LegacyServerErrorNewClientError,
        Category::Skipped,
    ];

    /// A short stable name, suitable as a metric label.
    pub fn name(self) -> &'static str {
        match self {
            Category::Match => "match",
            Category::Noise => "noise",
            Category::Mismatch => "mismatch",
            Category::LegacyServerErrorNewClientError => "legacy_5xx_new_4xx",
            Category::Skipped => "skipped",
        }
    }

    /// The position of this category in [`Category::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

impl Outcome {
    /// The category.
    pub fn category(&self) -> Category {
        match self {
            Outcome::Match => Category::Match,
            Outcome::Noise { .. } => Category::Noise,
            Outcome::Mismatch { .. } => Category::Mismatch,
            Outcome::LegacyServerErrorNewClientError => Category::LegacyServerErrorNewClientError,
            Outcome::Skipped(_) => Category::Skipped,
        }
    }

    /// The result label of the proxy's comparison counter: the category's name, or
    /// `skipped_` and the reason.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Skipped(reason) => reason.label(),
            other => other.category().name(),
        }
    }

    /// The mismatching fields (empty unless a mismatch).
    pub fn mismatch_fields(&self) -> &[String] {
        match self {
            Outcome::Mismatch { fields, .. } => fields,
            _ => &[],
        }
    }

    /// The sample to keep (mismatches only).
    pub fn sample(&self) -> Option<&MaskedSample> {
        match self {
            Outcome::Mismatch { sample, .. } => Some(sample),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn category_indexes_follow_all() {
        for (i, c) in Category::ALL.iter().enumerate() {
            assert_eq!(c.index(), i);
        }
        assert_eq!(
            serde_json::to_string(&Category::LegacyServerErrorNewClientError).unwrap(),
            "\"legacy_5xx_new_4xx\""
        );
        assert_eq!(
            Outcome::Skipped(SkipReason::NotJson).category(),
            Category::Skipped
        );
    }
}
