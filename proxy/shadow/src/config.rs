//! The comparison's settings and their validation: what is ignored, which headers are
//! compared, how large a body may be, how noise is learned and what samples may show.
//!
//! Setting names in errors are paths inside [`CompareConfig`] (`noise.relative`); the
//! proxy prefixes them with its own section name when it reports them.

use serde::{Deserialize, Serialize};

use json_diff::{PathPattern, PatternError};

/// A setting that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A value out of its range.
    #[error("{setting}: {reason}")]
    Invalid {
        /// The setting, e.g. `noise.relative`.
        setting: &'static str,
        /// Why it is refused.
        reason: String,
    },
    /// An ignore rule that is not a valid JSON path pattern.
    #[error("{setting}: {source}")]
    Pattern {
        /// The setting (`ignore`).
        setting: &'static str,
        /// The parse error, naming the pattern.
        #[source]
        source: PatternError,
    },
}

impl ConfigError {
    /// The setting at fault.
    pub fn setting(&self) -> &'static str {
        match self {
            ConfigError::Invalid { setting, .. } | ConfigError::Pattern { setting, .. } => setting,
        }
    }

    fn invalid(setting: &'static str, reason: impl Into<String>) -> Self {
        ConfigError::Invalid {
            setting,
            reason: reason.into(),
        }
    }
}

/// Request headers that never appear in a sample, whatever `sample_headers` says.
pub const NEVER_SHOWN_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
];

/// How legacy and new answers are compared.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CompareConfig {
    /// JSON path patterns (json-diff syntax, e.g. `$..request_id`) never compared, on
    /// every route, on top of the built-in rules (see the `rules` module).
    pub ignore: Vec<String>,
    /// Response headers compared by value (lowercase names). Rails' per-request headers
    /// (`etag`, `x-request-id`, `x-runtime`) are deliberately not in the default.
    pub headers: Vec<String>,
    /// Largest body compared, per side, in bytes; a larger or truncated answer is not
    /// compared and counts as skipped (`BodyTooLarge`).
    pub max_body_bytes: usize,
    /// Most differences listed for one comparison (and shown in its sample).
    pub max_differences: usize,
    /// Request headers (lowercase) that a sample may show; `authorization`, cookies and
    /// `proxy-authorization` are never shown even if listed.
    pub sample_headers: Vec<String>,
    /// Learning noise from pairs of legacy answers.
    pub noise: NoiseConfig,
}

impl Default for CompareConfig {
    fn default() -> Self {
        Self {
            ignore: Vec::new(),
            headers: vec!["content-type".into(), "cache-control".into()],
            max_body_bytes: 256 * 1024,
            max_differences: 32,
            sample_headers: [
                "accept",
                "accept-encoding",
                "accept-language",
                "content-type",
                "content-length",
                "user-agent",
                "x-shadow",
            ]
            .map(String::from)
            .to_vec(),
            noise: NoiseConfig::default(),
        }
    }
}

/// Learned noise: a field is noise on a route when two answers of the legacy to the
/// same safe request differ there often enough (Diffy's primary/secondary method).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NoiseConfig {
    /// Whether legacy pairs are learned from and learned noise is applied.
    pub learn: bool,
    /// Fraction of a field's observations (legacy pairs in which it appears) in which
    /// the two legacy answers differed, from which on the field is noise; in (0, 1].
    pub relative: f64,
    /// Least number of differing legacy pairs before a field can be noise (one racing
    /// update must not make a field noise); at least 1.
    pub absolute: u64,
    /// Most field paths tracked per route; more are not tracked (memory bound).
    pub max_paths_per_route: usize,
    /// Most routes tracked; further routes learn nothing (memory bound).
    pub max_routes: usize,
    /// Observations of one field at which its counts are halved, so that old
    /// measurements fade and the counts stay bounded; at least 2 × `absolute`.
    pub decay_after: u64,
}

impl Default for NoiseConfig {
    fn default() -> Self {
        Self {
            learn: true,
            relative: 0.2,
            absolute: 5,
            max_paths_per_route: 256,
            max_routes: 256,
            decay_after: 10_000,
        }
    }
}

impl CompareConfig {
    /// Checks every setting; the error names the first one at fault.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for pattern in &self.ignore {
            PathPattern::parse(pattern).map_err(|source| ConfigError::Pattern {
                setting: "ignore",
                source,
            })?;
        }
        for name in &self.headers {
            check_header_name("headers", name)?;
        }
        for name in &self.sample_headers {
            check_header_name("sample_headers", name)?;
        }
        if self.max_body_bytes == 0 {
            return Err(ConfigError::invalid("max_body_bytes", "must be at least 1"));
        }
        if self.max_differences == 0 {
            return Err(ConfigError::invalid(
                "max_differences",
                "must be at least 1",
            ));
        }
        self.noise.validate()
    }
}

impl NoiseConfig {
    /// Checks every setting; the error names the first one at fault.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(self.relative > 0.0 && self.relative <= 1.0) {
            return Err(ConfigError::invalid(
                "noise.relative",
                format!("must be in (0, 1], got {}", self.relative),
            ));
        }
        if self.absolute == 0 {
            return Err(ConfigError::invalid("noise.absolute", "must be at least 1"));
        }
        if self.max_paths_per_route == 0 {
            return Err(ConfigError::invalid(
                "noise.max_paths_per_route",
                "must be at least 1",
            ));
        }
        if self.max_routes == 0 {
            return Err(ConfigError::invalid(
                "noise.max_routes",
                "must be at least 1",
            ));
        }
        if self.decay_after < self.absolute.saturating_mul(2) {
            return Err(ConfigError::invalid(
                "noise.decay_after",
                format!(
                    "must be at least twice noise.absolute ({}), got {}",
                    self.absolute.saturating_mul(2),
                    self.decay_after
                ),
            ));
        }
        Ok(())
    }
}

fn check_header_name(setting: &'static str, name: &str) -> Result<(), ConfigError> {
    let token =
        |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.!#$%&'*+^`|~".contains(c);
    if name.is_empty() || !name.chars().all(token) {
        return Err(ConfigError::invalid(
            setting,
            format!("{name:?} is not a lowercase header name"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        CompareConfig::default().validate().unwrap();
    }

    #[test]
    fn errors_name_the_setting() {
        let mut c = CompareConfig::default();
        c.noise.relative = 1.5;
        assert_eq!(c.validate().unwrap_err().setting(), "noise.relative");

        let mut c = CompareConfig::default();
        c.ignore.push("users[*]".into());
        let err = c.validate().unwrap_err();
        assert_eq!(err.setting(), "ignore");
        assert!(err.to_string().contains("users[*]"), "{err}");

        let mut c = CompareConfig::default();
        c.headers.push("Content-Type".into());
        assert_eq!(c.validate().unwrap_err().setting(), "headers");

        let c = CompareConfig {
            max_body_bytes: 0,
            ..CompareConfig::default()
        };
        assert_eq!(c.validate().unwrap_err().setting(), "max_body_bytes");

        let mut c = CompareConfig::default();
        c.noise.decay_after = 3;
        assert_eq!(c.validate().unwrap_err().setting(), "noise.decay_after");
    }

    #[test]
    fn unknown_settings_are_refused() {
        let err = serde_json::from_str::<CompareConfig>(r#"{"ignor": []}"#).unwrap_err();
        assert!(err.to_string().contains("ignor"));
        let c: CompareConfig = serde_json::from_str(r#"{"noise": {"absolute": 3}}"#).unwrap();
        assert_eq!(c.noise.absolute, 3);
        assert_eq!(c.noise.relative, 0.2);
    }
}
