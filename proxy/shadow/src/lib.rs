//! Shadow comparison for the migration proxy: the answer that the client got and the
//! other side's answer to the replayed request are compared (always legacy against
//! new), and the result is one [`Outcome`]: a match, learned noise, a mismatch with a
//! masked sample, the legacy's 5xx against a new 4xx, or a skipped comparison.
//!
//! - [`Comparator`] holds the compiled rules: the built-in ones for the member API
//!   (tokens and issuance times by rule, see [`rules`]), the configured ignore
//!   patterns, the compared headers and the body bound ([`CompareConfig`]).
//! - [`NoiseModel`] learns, per route, which fields differ between two answers of the
//!   legacy to the same safe request (Diffy's method) and keeps them out of mismatches.
//! - [`MaskedSample`] is what the admin API may show of a mismatch; [`Samples`] keeps
//!   the recent ones per route. No value, token, password or personal data is in it.
//!
//! Pure logic: no networking, no clock, no randomness; the proxy calls it off the
//! client's path.
//!
//! ```
//! use shadow_compare::{Comparator, CompareConfig, Exchange, Outcome, RequestMeta, Side};
//! use serde_json::json;
//!
//! let comparator = Comparator::new(CompareConfig::default()).unwrap();
//! let noise = comparator.noise_model();
//! let request = RequestMeta::new("GET /api/v1/users/:id", "GET", "/api/v1/users/2");
//! let legacy = Exchange::json(200, &json!({"id": 2, "nickname": "bob"}));
//! let new = Exchange::json(200, &json!({"id": 2, "nickname": "bobby"}));
//! let outcome = comparator.compare(&request, Side::Legacy, &legacy, &new, &noise);
//! let Outcome::Mismatch { fields, sample } = outcome else { panic!() };
//! assert_eq!(fields, ["$.nickname"]);
//! assert_eq!(sample.differences, ["~ $.nickname: string(3) != string(5)"]);
//! ```

mod compare;
mod config;
mod exchange;
mod fields;
mod noise;
mod outcome;
pub mod rules;
mod sample;
mod version;

pub use compare::Comparator;
pub use config::{CompareConfig, ConfigError, NEVER_SHOWN_HEADERS, NoiseConfig};
pub use exchange::{Exchange, RequestMeta, Side};
pub use fields::field_name;
pub use noise::{LearnSkip, Learned, NoiseField, NoiseModel, NoiseReport};
pub use outcome::{Category, Outcome, SkipReason};
pub use sample::{MaskedSample, Samples, path_template};
pub use version::{lagging_version, newest_version};

#[cfg(test)]
mod tests;
