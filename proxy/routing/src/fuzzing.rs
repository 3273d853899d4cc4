//! The body of the `parse` fuzz target, shared by the cargo-fuzz target
//! (`fuzz/fuzz_targets/parse.rs`) and the stable-toolchain runner
//! (`examples/fuzz_parse.rs`), so that both exercise the same code. Not part of the
//! API.
//!
//! An input is a VirtualService manifest and a proxy config, separated by
//! [`SEPARATOR`]; without it, the whole input is tried as each. Whatever parses is
//! taken further: the table is built (against a known-good config when the fuzzed
//! one is refused), requests are routed, overrides applied, and the input is also read
//! as a bearer token and a duration. Nothing may panic.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::OnceLock;

use http::{HeaderMap, HeaderValue};

use crate::{
    Bucket, Overrides, ProxyConfig, RouteTable, Side, StickyKey, StickyKeySource, VirtualService,
};

/// Separates the manifest from the config in an input.
pub const SEPARATOR: &[u8] = b"\n#--- proxy config ---\n";

/// A config that every host in the seed corpus resolves against.
const KNOWN_GOOD_CONFIG: &str = "
upstreams:
  legacy-api.members.svc.cluster.local: {address: \"127.0.0.1:3000\", role: legacy}
  identity.members.svc.cluster.local: {address: \"127.0.0.1:8080\", role: new}
sticky_key: {cookie: _member_session}
";

/// Runs one input through every parser; panics only on a bug. Returns whether a route
/// table was built, for the runner's statistics.
pub fn parse(data: &[u8]) -> bool {
    let (manifest, config) = match find(data, SEPARATOR) {
        Some(at) => (&data[..at], &data[at + SEPARATOR.len()..]),
        None => (data, data),
    };
    let manifest = String::from_utf8_lossy(manifest);
    let config = ProxyConfig::from_yaml(&String::from_utf8_lossy(config));
    let fallback = || {
        static CONFIG: OnceLock<ProxyConfig> = OnceLock::new();
        CONFIG
            .get_or_init(|| {
                ProxyConfig::from_yaml(KNOWN_GOOD_CONFIG).expect("the known-good config parses")
            })
            .clone()
    };
    let config = config.unwrap_or_else(|_| fallback());
    let mut built = false;
    if let Ok(all) = VirtualService::parse_all(&manifest) {
        for vs in &all {
            if let Ok(table) = RouteTable::build(vs, &config) {
                exercise(&table, data);
                built = true;
            }
        }
    }
    let text = String::from_utf8_lossy(data);
    let _ = crate::duration::parse_duration(&text);
    let _ = crate::split::jwt_subject(&text);
    let mut headers = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_bytes(&[b"Bearer ", data].concat()) {
        headers.insert(http::header::AUTHORIZATION, value);
    }
    if let Ok(value) = HeaderValue::from_bytes(data) {
        headers.insert(http::header::COOKIE, value);
    }
    let client = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let _ = StickyKey::from_request(&config.sticky_key, &headers, client);
    let _ = StickyKey::from_request(&StickyKeySource::JwtSub, &headers, client);
    built
}

fn exercise(table: &RouteTable, data: &[u8]) {
    let path = String::from_utf8_lossy(data);
    let mut headers = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_bytes(data) {
        headers.insert("x-fuzz", value.clone());
        headers.insert(http::header::AUTHORIZATION, value);
    }
    for (method, path) in [
        ("GET", "/api/v1/users/me"),
        ("POST", "/api/v1/sessions?x=1"),
        ("DELETE", "/"),
        ("GET", path.as_ref()),
    ] {
        if let Some(route) = table.route(method, path, &headers) {
            for bucket in [0, 4_999, 9_999] {
                let side = route.side_for(Bucket::new(bucket).expect("in range"));
                assert!(
                    route.upstream(side).is_some(),
                    "a route sent a key to a side it has no destination for"
                );
            }
            let _ = route.shadow(Side::Legacy);
            let _ = route.shadow_percent(Side::New);
        }
    }
    let mut overrides = Overrides::new();
    overrides.set_all(0).expect("0 is a share");
    let aborted = table
        .with_overrides(&overrides)
        .expect("set_all never fails");
    assert!(
        aborted
            .routes()
            .iter()
            .all(|route| route.new_share_basis_points() == 0 || route.legacy_upstream().is_none())
    );
    if let Some(route) = table.routes().first() {
        overrides
            .set_rule(route.name(), 5_000)
            .expect("5000 is a share");
        let _ = table.with_overrides(&overrides);
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}
