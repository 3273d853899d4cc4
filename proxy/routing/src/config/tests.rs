use std::time::Duration;

use super::*;
use crate::path::PathNormalization;
use crate::split::Side;

const LOCAL: &str = include_str!("../../../config/local.yaml");

const MINIMAL: &str = "
upstreams:
  legacy-api.members.svc.cluster.local: {address: \"127.0.0.1:3000\", role: legacy}
";

fn with(extra: &str) -> Result<ProxyConfig, ConfigError> {
    ProxyConfig::from_yaml(&format!("{MINIMAL}{extra}"))
}

fn error(extra: &str) -> String {
    with(extra).unwrap_err().to_string()
}

#[test]
fn reads_the_local_config() {
    let config = ProxyConfig::from_yaml(LOCAL).unwrap();
    let identity = config
        .upstream("identity.members.svc.cluster.local")
        .unwrap();
    assert_eq!(identity.role, Side::New);
    assert_eq!(identity.address.to_string(), "127.0.0.1:8080");
    assert_eq!(config.virtual_service.as_deref(), Some("member-api"));
    assert_eq!(config.sticky_key, StickyKeySource::JwtSub);
    assert_eq!(config.comparison.ignore[0].as_str(), "$..created_at");
    assert_eq!(config.comparison.headers[1], http::header::CACHE_CONTROL);
    assert_eq!(config.guard.min_requests, 20);
    assert_eq!(config.timeouts.connect, Duration::from_secs(1));
    assert!(
        config
            .admin_token
            .unwrap()
            .verify("local-admin-token-not-for-production")
    );
}

#[test]
fn defaults_fill_every_section_but_upstreams() {
    let config = with("").unwrap();
    assert_eq!(config.comparison, Comparison::default());
    assert_eq!(config.guard, GuardConfig::default());
    assert_eq!(config.limits, Limits::default());
    assert_eq!(config.path_normalization, PathNormalization::MergeSlashes);
    assert_eq!(config.client_address.trusted_hops, 0);
    assert_eq!(config.timeouts.request, Duration::from_secs(15));
    assert_eq!(config.sticky_key, StickyKeySource::JwtSub);
    assert!(config.admin_token.is_none() && config.listen.is_none());
    let partial = with("guard: {max_error_rate: 0.05}\ncomparison: {learn_noise: false}").unwrap();
    assert_eq!(partial.guard.max_error_rate, 0.05);
    assert_eq!(partial.guard.window_secs, 60);
    assert!(!partial.comparison.learn_noise);
    assert_eq!(partial.comparison.max_body_bytes, 1024 * 1024);
}

#[test]
fn version_fields_are_a_list_or_one_name() {
    let fields = |extra: &str| with(extra).unwrap().comparison.version_fields;
    assert_eq!(fields(""), ["updated_at", "created_at"]);
    assert_eq!(fields("comparison: {version_field: version}"), ["version"]);
    assert_eq!(fields("comparison: {version_fields: [a, b]}"), ["a", "b"]);
    assert!(fields("comparison: {version_field: \"\"}").is_empty());
    assert_eq!(
        with("comparison: {max_lag: 2m}")
            .unwrap()
            .comparison
            .max_lag,
        Duration::from_secs(120)
    );
}

#[test]
fn sticky_keys_are_a_word_or_a_header_or_a_cookie() {
    assert_eq!(
        with("sticky_key: {header: X-Member-Id}")
            .unwrap()
            .sticky_key,
        StickyKeySource::Header(HeaderName::from_static("x-member-id"))
    );
    assert_eq!(
        with("sticky_key: {cookie: _member_session}")
            .unwrap()
            .sticky_key,
        StickyKeySource::Cookie("_member_session".into())
    );
    assert_eq!(
        with("sticky_key: jwt_sub").unwrap().sticky_key,
        StickyKeySource::JwtSub
    );
    let message = error("sticky_key: {cookie: \"a;b\"}");
    assert!(
        message.starts_with("malformed proxy config: sticky_key: \"a;b\" is not a cookie name"),
        "{message}"
    );
    let message = error("sticky_key: {header: \"a b\"}");
    assert!(
        message.starts_with("malformed proxy config: sticky_key: \"a b\" is not a header name"),
        "{message}"
    );
    assert_eq!(
        error("sticky_key: ip"),
        "malformed proxy config: sticky_key: expected `jwt_sub`, `{header: NAME}` or `{cookie: NAME}`"
    );
    assert_eq!(
        error("sticky_key: {header: a, cookie: b}"),
        "malformed proxy config: sticky_key: expected `jwt_sub`, `{header: NAME}` or `{cookie: NAME}`"
    );
}

#[test]
fn the_admin_token_is_never_printed() {
    let config = with("admin_token: s3cr3t-s3cr3t-s3cr3t").unwrap();
    let printed = format!("{config:?}");
    assert!(!printed.contains("s3cr3t"), "{printed}");
    assert!(printed.contains("AdminToken([redacted])"));
    let token = config.admin_token.unwrap();
    assert!(token.verify("s3cr3t-s3cr3t-s3cr3t"));
    assert!(!token.verify("s3cr3t-s3cr3t-s3cr3T"));
    assert!(!token.verify("s3cr3t"));
    let message = error("admin_token: short");
    assert!(
        message.starts_with(
            "malformed proxy config: admin_token: must be at least 16 characters long"
        ),
        "{message}"
    );
}

#[test]
fn ranges_are_checked_with_the_setting_named() {
    for (extra, expected) in [
        (
            "comparison: {noise_relative: 1.5}",
            "comparison.noise_relative must be between 0 and 1, got 1.5",
        ),
        (
            "comparison: {noise_absolute: 0}",
            "comparison.noise_absolute must be at least 1",
        ),
        (
            "comparison: {max_body_bytes: 0}",
            "comparison.max_body_bytes must be more than 0",
        ),
        (
            "guard: {window_secs: 0}",
            "guard.window_secs must be at least 1",
        ),
        (
            "guard: {min_requests: 0}",
            "guard.min_requests must be at least 1",
        ),
        (
            "guard: {max_error_rate: 2}",
            "guard.max_error_rate must be in (0, 1], got 2",
        ),
        (
            "guard: {max_error_rate: 0}",
            "guard.max_error_rate must be in (0, 1], got 0",
        ),
        (
            "guard: {max_mismatch_rate: .nan}",
            "guard.max_mismatch_rate must be in (0, 1], got NaN",
        ),
        (
            "guard: {max_p99_ratio: 0.5}",
            "guard.max_p99_ratio must be at least 1, got 0.5",
        ),
        (
            "limits: {max_buffered_body_bytes: 0}",
            "limits.max_buffered_body_bytes must be at least 1, got 0",
        ),
        (
            "limits: {http2_connection_window_bytes: 1000}",
            "limits.http2_connection_window_bytes must be at least 65535, got 1000",
        ),
        (
            "limits: {body_read_timeout: 0s}",
            "limits.body_read_timeout must be at least 1ms, got 0ns",
        ),
        (
            "timeouts: {connect: 0s}",
            "timeouts.connect must be at least 1ms, got 0ns",
        ),
        (
            "comparison: {write_effects_settle: 0s}",
            "comparison.write_effects_settle must be at least 1ms, got 0ns",
        ),
        (
            "comparison: {max_lag: 0s}",
            "comparison.max_lag must be at least 1ms, got 0ns",
        ),
        ("virtual_service: \"\"", "virtual_service must not be empty"),
        (
            "listen: 0.0.0.0:8080\nadmin_listen: 0.0.0.0:8080",
            "admin_listen must differ from listen, both are 0.0.0.0:8080",
        ),
    ] {
        assert_eq!(error(extra), expected, "{extra}");
    }
    assert_eq!(
        ProxyConfig::from_yaml("upstreams: {}")
            .unwrap_err()
            .to_string(),
        "upstreams must name at least one destination host"
    );
    assert_eq!(
        ProxyConfig::from_yaml("upstreams: {\"legacy:3000\": {address: \"a:1\", role: legacy}}")
            .unwrap_err()
            .to_string(),
        "upstreams key \"legacy:3000\" is not a host name (the port belongs in `address`)"
    );
}

#[test]
fn values_of_the_wrong_form_are_malformed_with_their_path() {
    for (extra, expected) in [
        (
            "timeouts: {request: 5 seconds}",
            "timeouts.request: invalid duration \"5 seconds\": expected a unit: h, m, s, ms, us or ns",
        ),
        (
            "comparison: {ignore: [\"$.users[\"]}",
            "comparison.ignore[0]: invalid JSON path pattern \"$.users[\"",
        ),
        (
            "comparison: {headers: [\"content type\"]}",
            "comparison.headers[0]: \"content type\" is not a header name",
        ),
        (
            "guard: {max_eror_rate: 0.1}",
            "guard.max_eror_rate: unknown field `max_eror_rate`",
        ),
        ("listen: localhost", "listen: invalid socket address syntax"),
        ("colour: blue", "colour: unknown field `colour`"),
    ] {
        let message = error(extra);
        let expected = format!("malformed proxy config: {expected}");
        assert!(message.starts_with(&expected), "{message}\n!=\n{expected}");
    }
    assert!(
        ProxyConfig::from_yaml("upstreams: [")
            .unwrap_err()
            .to_string()
            .starts_with("malformed proxy config: ")
    );
}

#[test]
fn the_client_is_the_entry_of_the_outermost_trusted_hop() {
    let peer: std::net::IpAddr = [10, 0, 0, 1].into();
    let mut headers = http::HeaderMap::new();
    headers.append(
        "x-forwarded-for",
        "203.0.113.9, 198.51.100.7".parse().unwrap(),
    );
    headers.append("x-forwarded-for", "192.0.2.4".parse().unwrap());
    headers.insert("x-envoy-external-address", "192.0.2.66".parse().unwrap());
    let at = |headers: &http::HeaderMap, hops| {
        ClientAddress {
            trusted_hops: hops,
            ..ClientAddress::default()
        }
        .client(headers, peer)
        .to_string()
    };
    assert_eq!(at(&headers, 0), "10.0.0.1");
    assert_eq!(at(&headers, 1), "192.0.2.4");
    assert_eq!(at(&headers, 2), "198.51.100.7");
    assert_eq!(at(&headers, 3), "203.0.113.9");
    assert_eq!(at(&headers, 4), "10.0.0.1");
    headers.insert("x-forwarded-for", "not-an-address".parse().unwrap());
    assert_eq!(at(&headers, 1), "10.0.0.1");
    let config = with("client_address: {trusted_hops: 1}\npath_normalization: none").unwrap();
    assert_eq!(config.client_address.trusted_hops, 1);
    assert_eq!(config.path_normalization, PathNormalization::None);
    assert!(error("path_normalization: squeeze").contains("path_normalization: unknown variant"));
}

#[test]
fn a_local_sidecar_peer_is_not_recorded_and_needs_a_hop_in_front() {
    let config = with("client_address: {trusted_hops: 1, peer_is_local_sidecar: true}").unwrap();
    let c = &config.client_address;
    // Istio's inbound source: a local hop, not appended.
    assert_eq!(c.recorded_peer("127.0.0.6".parse().unwrap()), None);
    assert_eq!(c.recorded_peer("::1".parse().unwrap()), None);
    // Anything else came past the sidecar: appended all the same.
    let other: std::net::IpAddr = "10.1.2.3".parse().unwrap();
    assert_eq!(c.recorded_peer(other), Some(other));
    // Without the setting, every peer is recorded.
    let plain = ClientAddress::default();
    let local: std::net::IpAddr = "127.0.0.6".parse().unwrap();
    assert_eq!(plain.recorded_peer(local), Some(local));
    // The sidecar is never the client: some hop in front must write it.
    let e = error("client_address: {peer_is_local_sidecar: true}");
    assert!(e.contains("client_address.peer_is_local_sidecar"), "{e}");
}

#[test]
fn upstream_addresses_are_host_and_port() {
    for good in [
        "127.0.0.1:3000",
        "legacy-api:3000",
        "legacy_api.members.svc:80",
        "[::1]:8080",
    ] {
        let address: UpstreamAddress = good.parse().unwrap();
        assert_eq!(address.to_string(), good);
    }
    assert_eq!(
        "[::1]:8080".parse::<UpstreamAddress>().unwrap().host(),
        "::1"
    );
    for (bad, reason) in [
        ("legacy-api", "expected host:port"),
        ("legacy-api:0", "the port must be a number from 1 to 65535"),
        (
            "legacy-api:http",
            "the port must be a number from 1 to 65535",
        ),
        (":3000", "the host must be a name or an IP address"),
        (
            "http://legacy:3000",
            "the host must be a name or an IP address",
        ),
        ("[::1:80", "unclosed '['"),
        ("[zz]:80", "invalid IPv6 address"),
    ] {
        let error = bad.parse::<UpstreamAddress>().unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("invalid upstream address {bad:?}: {reason}")
        );
    }
    let message =
        ProxyConfig::from_yaml("upstreams: {legacy: {address: \"legacy\", role: legacy}}")
            .unwrap_err()
            .to_string();
    assert!(
        message.starts_with(
            "malformed proxy config: upstreams.legacy.address: invalid upstream address"
        ),
        "{message}"
    );
    let message = ProxyConfig::from_yaml("upstreams: {legacy: {address: \"a:1\", role: old}}")
        .unwrap_err()
        .to_string();
    assert!(
        message
            .contains("upstreams.legacy.role: unknown variant `old`, expected `legacy` or `new`"),
        "{message}"
    );
}
