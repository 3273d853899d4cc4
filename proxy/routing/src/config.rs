//! The proxy config: what Istio's schema cannot say. It maps the VirtualService's
//! destination hosts to addresses and roles, and holds the sticky key, the comparison
//! rules, the guard's thresholds, timeouts, listeners and the admin token.
//!
//! ```yaml
//! upstreams:
//!   legacy-api.members.svc.cluster.local: {address: "127.0.0.1:3000", role: legacy}
//!   identity.members.svc.cluster.local: {address: "127.0.0.1:8080", role: new}
//! sticky_key: jwt_sub            # or {header: x-member-id}, or {cookie: _member_session}
//! comparison: {ignore: ["$..updated_at"], noise_relative: 0.2}
//! guard: {max_error_rate: 0.01}
//! ```
//!
//! Every section but `upstreams` has defaults. Unknown settings are refused, so that a
//! misspelt threshold is not silently left at its default.

mod upstream;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use http::HeaderName;
use json_diff::PathPattern;
use serde::Deserialize;

pub use upstream::{
    AddressError, AdminToken, MIN_ADMIN_TOKEN_LEN, TokenTooShort, Upstream, UpstreamAddress,
};

use crate::duration;
use crate::split::StickyKeySource;

/// A proxy config that cannot be used; the message names the setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Not YAML, an unknown setting, or a value of the wrong form; the message carries
    /// the setting's path and line.
    #[error("malformed proxy config: {0}")]
    Malformed(String),
    /// A setting whose value is out of range.
    #[error("{setting} {problem}")]
    Invalid {
        /// The setting's path (`comparison.noise_relative`).
        setting: String,
        /// What is wrong, with the value found.
        problem: String,
    },
}

/// The proxy config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    /// Where the proxy serves client traffic (`0.0.0.0:8080`); absent: the binary's
    /// default.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    /// Where the admin API listens (`127.0.0.1:9901`); absent: the binary's default.
    #[serde(default)]
    pub admin_listen: Option<SocketAddr>,
    /// The `metadata.name` of the VirtualService to route by, needed only when the
    /// manifest holds several.
    #[serde(default)]
    pub virtual_service: Option<String>,
    /// Destination hosts as the VirtualService names them
    /// (`legacy-api.members.svc.cluster.local`), each with its address and its side.
    pub upstreams: BTreeMap<String, Upstream>,
    /// What identifies a user for the sticky split: `jwt_sub` (the default: the `sub`
    /// of a bearer JWT, else the bearer token, else the client address),
    /// `{header: NAME}` or `{cookie: NAME}` (each falling back to the default chain
    /// when the request lacks it).
    #[serde(default)]
    pub sticky_key: StickyKeySource,
    /// The bearer token the admin API requires; absent: the admin API refuses every
    /// change. Never printed.
    #[serde(default)]
    pub admin_token: Option<AdminToken>,
    /// How shadow answers are compared with served answers.
    #[serde(default)]
    pub comparison: Comparison,
    /// When the proxy drops the new side's weight to 0 by itself.
    #[serde(default)]
    pub guard: Guard,
    /// Timeouts for rules of the VirtualService that set none.
    #[serde(default)]
    pub timeouts: Timeouts,
}

/// How a shadow answer is compared with the answer served.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Comparison {
    /// JSON paths left out of the comparison, in json-diff's pattern syntax
    /// (`$..updated_at`, `$.users[*].token`).
    #[serde(deserialize_with = "patterns")]
    pub ignore: Vec<PathPattern>,
    /// Response headers compared besides status and body (names, case-insensitive).
    #[serde(deserialize_with = "header_names")]
    pub headers: Vec<HeaderName>,
    /// Bodies longer than this many bytes are not compared (counted as skipped).
    pub max_body_bytes: usize,
    /// Learned noise (Diffy's method, see `shadow-compare`): a field is noise on a route
    /// when, of the pairs of legacy answers to the same safe request in which it
    /// appears, at least this share differed there: above 0, at most 1.
    pub noise_relative: f64,
    /// ... and at least this many such pairs differed (one racing update must not make a
    /// field noise): at least 1.
    pub noise_absolute: u64,
    /// Whether the proxy measures noise by asking the serving side a second time
    /// (safe requests only); without it only `ignore` keeps noise out.
    pub learn_noise: bool,
}

impl Default for Comparison {
    fn default() -> Self {
        Comparison {
            ignore: Vec::new(),
            headers: vec![http::header::CONTENT_TYPE],
            max_body_bytes: 1024 * 1024,
            noise_relative: 0.2,
            noise_absolute: 5,
            learn_noise: true,
        }
    }
}

/// The thresholds past which the proxy sets every rule's new share to 0 by itself.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Guard {
    /// Length of the sliding window the rates are measured over, in seconds.
    pub window_secs: u64,
    /// Requests the new side must have served in the window before the guard judges.
    pub min_requests: u64,
    /// Highest fraction of the new side's requests in the window that may fail (a 5xx
    /// status or no answer): 0 to 1.
    pub max_error_rate: f64,
    /// Highest fraction of compared requests in the window that may mismatch, noise
    /// excluded: 0 to 1.
    pub max_mismatch_rate: f64,
    /// Highest ratio of the new side's 99th percentile latency to the legacy side's in
    /// the window: 1 or more.
    pub max_p99_ratio: f64,
}

impl Default for Guard {
    fn default() -> Self {
        Guard {
            window_secs: 60,
            min_requests: 100,
            max_error_rate: 0.01,
            max_mismatch_rate: 0.01,
            max_p99_ratio: 2.0,
        }
    }
}

/// Timeouts towards the upstreams.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Timeouts {
    /// Time to open a connection to an upstream (`2s`).
    #[serde(deserialize_with = "duration::deserialize")]
    pub connect: Duration,
    /// Time for a whole request, for rules without `timeout` (`15s`).
    #[serde(deserialize_with = "duration::deserialize")]
    pub request: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(2),
            request: Duration::from_secs(15),
        }
    }
}

impl ProxyConfig {
    /// Reads and validates a proxy config.
    pub fn from_yaml(text: &str) -> Result<ProxyConfig, ConfigError> {
        // Read as YAML first (syntax errors carry their line), then as the config, with
        // the path of any setting whose value is refused.
        let value: serde_yaml::Value = serde_yaml::from_str(text)
            .map_err(|error| ConfigError::Malformed(error.to_string()))?;
        let config: ProxyConfig = serde_path_to_error::deserialize(value).map_err(|error| {
            ConfigError::Malformed(match error.path().to_string().as_str() {
                "." => error.inner().to_string(),
                path => format!("{path}: {}", error.inner()),
            })
        })?;
        config.validate()?;
        Ok(config)
    }

    /// The upstream serving destination `host`, if any.
    pub fn upstream(&self, host: &str) -> Option<&Upstream> {
        self.upstreams.get(host)
    }

    /// Checks the ranges that the types do not.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.upstreams.is_empty() {
            return invalid("upstreams", "must name at least one destination host");
        }
        for host in self.upstreams.keys() {
            if host.is_empty() || host.contains(|c: char| c.is_whitespace() || c == ':' || c == '/')
            {
                return invalid(
                    "upstreams",
                    format!("key {host:?} is not a host name (the port belongs in `address`)"),
                );
            }
        }
        if self.virtual_service.as_deref() == Some("") {
            return invalid("virtual_service", "must not be empty");
        }
        if let (Some(listen), Some(admin)) = (self.listen, self.admin_listen)
            && listen == admin
            && listen.port() != 0
        {
            return invalid(
                "admin_listen",
                format!("must differ from listen, both are {listen}"),
            );
        }
        let comparison = &self.comparison;
        fraction("comparison.noise_relative", comparison.noise_relative)?;
        if comparison.noise_relative <= 0.0 {
            return invalid("comparison.noise_relative", "must be more than 0");
        }
        if comparison.noise_absolute == 0 {
            return invalid("comparison.noise_absolute", "must be at least 1");
        }
        if comparison.max_body_bytes == 0 {
            return invalid("comparison.max_body_bytes", "must be more than 0");
        }
        let guard = &self.guard;
        if guard.window_secs == 0 {
            return invalid("guard.window_secs", "must be more than 0");
        }
        if guard.min_requests == 0 {
            return invalid("guard.min_requests", "must be more than 0");
        }
        fraction("guard.max_error_rate", guard.max_error_rate)?;
        fraction("guard.max_mismatch_rate", guard.max_mismatch_rate)?;
        if !(guard.max_p99_ratio.is_finite() && guard.max_p99_ratio >= 1.0) {
            return invalid(
                "guard.max_p99_ratio",
                format!("must be a number of 1 or more, got {}", guard.max_p99_ratio),
            );
        }
        for (setting, value) in [
            ("timeouts.connect", self.timeouts.connect),
            ("timeouts.request", self.timeouts.request),
        ] {
            if value < Duration::from_millis(1) {
                return invalid(setting, format!("must be at least 1ms, got {value:?}"));
            }
        }
        Ok(())
    }
}

fn invalid(setting: &str, problem: impl Into<String>) -> Result<(), ConfigError> {
    Err(ConfigError::Invalid {
        setting: setting.to_owned(),
        problem: problem.into(),
    })
}

fn fraction(setting: &str, value: f64) -> Result<(), ConfigError> {
    if (0.0..=1.0).contains(&value) {
        Ok(())
    } else {
        invalid(setting, format!("must be between 0 and 1, got {value}"))
    }
}

/// One entry of `comparison.ignore`, parsed where it stands so that a refusal names
/// its index.
#[derive(Deserialize)]
#[serde(try_from = "String")]
struct Pattern(PathPattern);

impl TryFrom<String> for Pattern {
    type Error = json_diff::PatternError;

    fn try_from(source: String) -> Result<Self, Self::Error> {
        PathPattern::parse(&source).map(Pattern)
    }
}

fn patterns<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<PathPattern>, D::Error> {
    Ok(Vec::<Pattern>::deserialize(deserializer)?
        .into_iter()
        .map(|Pattern(pattern)| pattern)
        .collect())
}

/// One entry of `comparison.headers`, lowercased.
#[derive(Deserialize)]
#[serde(try_from = "String")]
struct Header(HeaderName);

impl TryFrom<String> for Header {
    type Error = String;

    fn try_from(name: String) -> Result<Self, Self::Error> {
        HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
            .map(Header)
            .map_err(|_| format!("{name:?} is not a header name"))
    }
}

fn header_names<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<HeaderName>, D::Error> {
    Ok(Vec::<Header>::deserialize(deserializer)?
        .into_iter()
        .map(|Header(name)| name)
        .collect())
}

#[cfg(test)]
mod tests;
