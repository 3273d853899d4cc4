//! The proxy config: what Istio's schema cannot say. It maps the VirtualService's
//! destination hosts to addresses and roles, and holds the sticky key, the comparison
//! rules, the guard's thresholds, timeouts, listeners, the admin token, the path
//! normalisation, the trusted forwarding hops and the limits every client is held to.
//!
//! ```yaml
//! upstreams:
//!   legacy-api.members.svc.cluster.local: {address: "127.0.0.1:3000", role: legacy}
//!   identity.members.svc.cluster.local: {address: "127.0.0.1:8080", role: new}
//! sticky_key: jwt_sub            # or {header: x-member-id}, or {cookie: _member_session}
//! comparison: {ignore: ["$..updated_at"], noise_relative: 0.2}
//! guard: {max_error_rate: 0.01, min_comparisons: 50}
//! path_normalization: merge_slashes
//! client_address: {trusted_hops: 1}
//! limits: {body_read_timeout: 30s, max_buffered_body_bytes: 16777216}
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
use crate::path::PathNormalization;
use crate::split::StickyKeySource;
use rollout_guard::GuardConfig;

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
    /// When the proxy drops the new side's weight to 0 by itself: the guard's own
    /// settings (`rollout_guard::GuardConfig`), one definition for the file and the guard.
    #[serde(default)]
    pub guard: GuardConfig,
    /// How the request path is normalised before it is matched and forwarded (Istio's
    /// `pathNormalization`): `none`, `base`, `merge_slashes` (the default) or
    /// `decode_and_merge_slashes`.
    #[serde(default)]
    pub path_normalization: PathNormalization,
    /// Where the client's address is read from (the sticky split's last resort).
    #[serde(default)]
    pub client_address: ClientAddress,
    /// Bounds on what clients and upstreams may hold: time, bytes, connections, streams.
    #[serde(default)]
    pub limits: Limits,
    /// Timeouts for rules of the VirtualService that set none.
    #[serde(default)]
    pub timeouts: Timeouts,
    /// Which side answers a safe request when the other fails it.
    #[serde(default)]
    pub fallback: Fallback,
}

/// Fallbacks between the sides, for safe requests (GET, HEAD, OPTIONS) only. The new
/// side failing one (no answer, or a 5xx) is always answered by the legacy; the other
/// way is chosen rule by rule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Fallback {
    /// Rules (by name) whose safe requests the legacy failed go to the new side, whose
    /// answer is served unless it fails too (the legacy's is served then): while the
    /// legacy or its database is down, a read the new side can answer from its own copy
    /// (public profiles, kept in sync) is answered. Such an answer is not compared.
    pub to_new: Vec<String>,
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
    /// Whether the effect of every write that succeeded is compared: once it has
    /// reached the other side, the written member as both databases hold it, and as the
    /// request asked (the new side answers `POST /internal/write-effects`; see the
    /// identity service's `effects`). Differences count as mismatches for the guard.
    pub write_effects: bool,
    /// How long a write's effect may take to reach the other side (the sync's lag, when
    /// the legacy served it) before a difference counts (`5s`): of a write's effect, and
    /// of a read that raced a write (asked again at growing pauses); at most half of
    /// `limits.replay_timeout`, within which the whole comparison runs.
    #[serde(deserialize_with = "duration::deserialize")]
    pub write_effects_settle: Duration,
    /// The fields that carry a record's version in the answers, newest first by nature
    /// (`[updated_at, created_at]`: a view without `updated_at` still shows when its
    /// record was created; one name is accepted too; empty: none). A read that still
    /// differs when `write_effects_settle` has passed, while the legacy's answer shows
    /// a newer version than the new side's, or a record the new side does not find
    /// (`404`), is counted `lagging` (the new side had not caught up: the sync's lag,
    /// watched on its own), neither a match nor a mismatch; when the version is a
    /// timestamp, only while it is at most `max_lag` old.
    #[serde(alias = "version_field", deserialize_with = "one_or_more")]
    pub version_fields: Vec<String>,
    /// The longest the new side may lag behind the legacy's records before a read that
    /// shows it counts as a mismatch (`60s`): a record the legacy changed longer ago
    /// that the new side still lacks, or holds older, is a difference clients see, not
    /// a moment of the sync's lag.
    #[serde(deserialize_with = "duration::deserialize")]
    pub max_lag: Duration,
    /// Writes whose answer is compared by a dry run sent to the new side *before* the
    /// legacy serves them, while the state they consume is still there (a refresh's
    /// token, a log-out's session), by rule: `{sessions: [refresh, log_out]}`. Each is a
    /// kind of `STATE_CONSUMING_WRITES`; the rule must be the VirtualService's. The
    /// client waits for that dry run (at most `replay_first_timeout`; past it the write
    /// goes on uncompared): a price in latency for an answer compared, on top of the
    /// effect compared anyway. Only for requests drawn for a replay, served by the
    /// legacy. Empty by default.
    pub replay_first: BTreeMap<String, Vec<String>>,
    /// The longest a client's write waits for its dry run of `replay_first` (`250ms`).
    #[serde(deserialize_with = "duration::deserialize")]
    pub replay_first_timeout: Duration,
}

/// The writes a replay after the primary cannot compare by their answer (the primary
/// consumed what they need), by the kind the proxy counts them as: the kinds
/// `comparison.replay_first` may name.
pub const STATE_CONSUMING_WRITES: [&str; 5] = [
    "sign_up",
    "refresh",
    "log_out",
    "password_change",
    "withdrawal",
];

impl Comparison {
    /// Whether `kind` of write on the rule `route` is replayed before the primary.
    pub fn replays_first(&self, route: &str, kind: &str) -> bool {
        self.replay_first
            .get(route)
            .is_some_and(|kinds| kinds.iter().any(|k| k == kind))
    }
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
            write_effects: true,
            write_effects_settle: Duration::from_secs(5),
            version_fields: vec!["updated_at".into(), "created_at".into()],
            max_lag: Duration::from_secs(60),
            replay_first: BTreeMap::new(),
            replay_first_timeout: Duration::from_millis(250),
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

/// Where the client's address comes from, for the sticky split of requests that carry
/// no user key (sign-up, log-in, public reads).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClientAddress {
    /// How many proxies in front of this one append the address of their peer to
    /// `X-Forwarded-For` and are trusted to: 0 (the default) takes the connection's peer
    /// and ignores the header (any client can write it); 1 takes the last entry (an
    /// Istio ingress gateway in front); 2 the one before it. A header with fewer entries
    /// than that falls back to the peer. `x-envoy-external-address` is never read: a
    /// client can send it past any hop that does not strip it.
    pub trusted_hops: usize,
    /// Whether a loopback peer is this pod's own mesh sidecar (Istio's Envoy delivers
    /// inbound traffic from 127.0.0.6), a local hop rather than the client or a proxy
    /// worth recording: its address is then not appended to `X-Forwarded-For` for the
    /// upstreams, so that the services behind count the same hops whether this proxy is
    /// in the path or not. A peer that is not loopback is appended all the same. Needs
    /// `trusted_hops` of at least 1: the client is in the header, written by the edge.
    pub peer_is_local_sidecar: bool,
}

impl ClientAddress {
    /// The peer to append to `X-Forwarded-For`, unless it is the local sidecar.
    pub fn recorded_peer(&self, peer: std::net::IpAddr) -> Option<std::net::IpAddr> {
        (!(self.peer_is_local_sidecar && peer.is_loopback())).then_some(peer)
    }

    /// The client's address: the `X-Forwarded-For` entry written by the outermost
    /// trusted hop, else `peer`.
    pub fn client(&self, headers: &http::HeaderMap, peer: std::net::IpAddr) -> std::net::IpAddr {
        if self.trusted_hops == 0 {
            return peer;
        }
        let entries: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        entries
            .len()
            .checked_sub(self.trusted_hops)
            .and_then(|i| entries[i].parse().ok())
            .unwrap_or(peer)
    }
}

/// What a client, or an upstream, may hold of the proxy: each bound has an answer when
/// it is hit, and together they keep memory bounded whatever clients do.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Time to receive a request's head (HTTP/1), also the longest a kept-alive
    /// connection may wait idle for its next request (`60s`). Past it the connection is
    /// closed.
    #[serde(deserialize_with = "duration::deserialize")]
    pub header_read_timeout: Duration,
    /// Time to receive a request's whole body once its head has arrived (`30s`). Past
    /// it the client gets `408` and the connection is closed.
    #[serde(deserialize_with = "duration::deserialize")]
    pub body_read_timeout: Duration,
    /// Longest a connection may stay open with no request in flight before it is closed
    /// (`120s`); covers HTTP/2 connections and connections that never send a request.
    #[serde(deserialize_with = "duration::deserialize")]
    pub idle_timeout: Duration,
    /// Bytes of request and answer bodies held in memory at once by the whole proxy
    /// (for retries, replays and comparisons). A body that does not fit is streamed
    /// through uncompared, and an answer not kept for comparison: never refused.
    pub max_buffered_body_bytes: usize,
    /// Open client connections; a connection over the bound is closed at once.
    pub max_connections: usize,
    /// Largest request head (HTTP/1 request line and headers, HTTP/2 header list), in
    /// bytes; a larger one gets `431`.
    pub max_header_bytes: usize,
    /// Streams an HTTP/2 client may open at once on one connection.
    pub http2_max_concurrent_streams: u32,
    /// Flow-control window of one HTTP/2 stream: bytes a client may send ahead of the
    /// proxy reading them.
    pub http2_stream_window_bytes: u32,
    /// Flow-control window of one HTTP/2 connection, all its streams together.
    pub http2_connection_window_bytes: u32,
    /// Longest a replay (its request, the wait for the served answer to finish, the
    /// second look at a differing read) may hold its slot; past it the slot is freed and
    /// the comparison counted `skipped_timeout` (`30s`).
    #[serde(deserialize_with = "duration::deserialize")]
    pub replay_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_read_timeout: Duration::from_secs(60),
            body_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(120),
            max_buffered_body_bytes: 16 * 1024 * 1024,
            max_connections: 8192,
            max_header_bytes: 32 * 1024,
            http2_max_concurrent_streams: 100,
            http2_stream_window_bytes: 64 * 1024,
            http2_connection_window_bytes: 512 * 1024,
            replay_timeout: Duration::from_secs(30),
        }
    }
}

impl Limits {
    fn validate(&self) -> Result<(), ConfigError> {
        for (setting, value, least) in [
            (
                "limits.max_buffered_body_bytes",
                self.max_buffered_body_bytes,
                1,
            ),
            ("limits.max_connections", self.max_connections, 1),
            ("limits.max_header_bytes", self.max_header_bytes, 8192),
            (
                "limits.http2_max_concurrent_streams",
                self.http2_max_concurrent_streams as usize,
                1,
            ),
            // RFC 9113 §6.9.2: no window below the default 65,535 bytes can be announced
            // for the connection; a stream's may be smaller, but not empty.
            (
                "limits.http2_stream_window_bytes",
                self.http2_stream_window_bytes as usize,
                1024,
            ),
            (
                "limits.http2_connection_window_bytes",
                self.http2_connection_window_bytes as usize,
                65_535,
            ),
        ] {
            if value < least {
                return invalid(setting, format!("must be at least {least}, got {value}"));
            }
        }
        // RFC 9113 §6.5.2: windows are 31-bit.
        for (setting, value) in [
            (
                "limits.http2_stream_window_bytes",
                self.http2_stream_window_bytes,
            ),
            (
                "limits.http2_connection_window_bytes",
                self.http2_connection_window_bytes,
            ),
        ] {
            if value > (1 << 31) - 1 {
                return invalid(setting, format!("must be at most 2147483647, got {value}"));
            }
        }
        Ok(())
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

    /// Where `route` sends `side`'s requests (`host:port`), if it has that side and an
    /// upstream serves its destination.
    pub fn address_of(
        &self,
        route: &crate::Route,
        side: crate::Side,
    ) -> Option<&http::uri::Authority> {
        route
            .upstream(side)
            .and_then(|u| self.upstream(&u.host))
            .map(|u| u.address.authority())
    }

    /// The time a write's effect may take to reach the other side, as used: the
    /// setting, at most half the replay's time.
    pub fn write_effects_settle(&self) -> Duration {
        self.comparison
            .write_effects_settle
            .min(self.limits.replay_timeout / 2)
    }

    /// Checks the settings that name the manifest's rules against `table`.
    pub fn check_rules(&self, table: &crate::RouteTable) -> Result<(), ConfigError> {
        if let Some(rule) = self
            .comparison
            .replay_first
            .keys()
            .find(|rule| table.get(rule).is_none())
        {
            return invalid(
                &format!("comparison.replay_first.{rule}"),
                format!(
                    "names no rule of the VirtualService {}",
                    table.virtual_service()
                ),
            );
        }
        if let Some(rule) = self.fallback.to_new.iter().find(|r| table.get(r).is_none()) {
            return invalid(
                "fallback.to_new",
                format!(
                    "{rule:?} names no rule of the VirtualService {}",
                    table.virtual_service()
                ),
            );
        }
        Ok(())
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
        if self.client_address.peer_is_local_sidecar && self.client_address.trusted_hops == 0 {
            return invalid(
                "client_address.peer_is_local_sidecar",
                "needs trusted_hops of at least 1: the sidecar is not the client, the hop in front of it writes the client",
            );
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
        self.guard.validate().map_err(|e| ConfigError::Invalid {
            setting: format!("guard.{}", e.setting),
            problem: e.reason,
        })?;
        for (setting, value) in [
            ("timeouts.connect", self.timeouts.connect),
            ("timeouts.request", self.timeouts.request),
            (
                "limits.header_read_timeout",
                self.limits.header_read_timeout,
            ),
            ("limits.body_read_timeout", self.limits.body_read_timeout),
            ("limits.idle_timeout", self.limits.idle_timeout),
            ("limits.replay_timeout", self.limits.replay_timeout),
            (
                "comparison.write_effects_settle",
                comparison.write_effects_settle,
            ),
            ("comparison.max_lag", comparison.max_lag),
        ] {
            if value < Duration::from_millis(1) {
                return invalid(setting, format!("must be at least 1ms, got {value:?}"));
            }
        }
        self.limits.validate()?;
        for (rule, kinds) in &comparison.replay_first {
            if let Some(kind) = kinds
                .iter()
                .find(|k| !STATE_CONSUMING_WRITES.contains(&k.as_str()))
            {
                return invalid(
                    &format!("comparison.replay_first.{rule}"),
                    format!(
                        "{kind:?} is not a write that consumes its state (one of {})",
                        STATE_CONSUMING_WRITES.join(", ")
                    ),
                );
            }
        }
        let wait = comparison.replay_first_timeout;
        if wait < Duration::from_millis(1) || wait > self.timeouts.request {
            return invalid(
                "comparison.replay_first_timeout",
                format!(
                    "must be at least 1ms and at most timeouts.request ({:?}), got {wait:?}",
                    self.timeouts.request
                ),
            );
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

/// A list of names, or one name alone.
fn one_or_more<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMore {
        One(String),
        More(Vec<String>),
    }
    Ok(match OneOrMore::deserialize(deserializer)? {
        OneOrMore::One(name) if name.is_empty() => Vec::new(),
        OneOrMore::One(name) => vec![name],
        OneOrMore::More(names) => names,
    })
}

#[cfg(test)]
mod tests;
