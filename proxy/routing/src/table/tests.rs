use std::time::Duration;

use http::{HeaderMap, HeaderValue};

use crate::{ProxyConfig, RetryOn, RouteTable, RoutingError, Side, VirtualService};

const EXAMPLE: &str = include_str!("../../../../istio/virtualservice-member-api.yaml");

const CONFIG: &str = "
upstreams:
  legacy-api.members.svc.cluster.local: {address: \"127.0.0.1:3000\", role: legacy}
  identity.members.svc.cluster.local: {address: \"127.0.0.1:8080\", role: new}
  identity-canary.members.svc.cluster.local: {address: \"127.0.0.1:8081\", role: new}
timeouts: {request: 30s}
";

fn config() -> ProxyConfig {
    ProxyConfig::from_yaml(CONFIG).unwrap()
}

/// A VirtualService named `member-api` in `members` with the given `http` rules.
fn manifest(http: &str) -> String {
    let indented: String = http.lines().map(|line| format!("  {line}\n")).collect();
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\n\
         metadata: {{name: member-api, namespace: members}}\n\
         spec:\n  hosts: [member-api.members.svc.cluster.local]\n  http:\n{indented}"
    )
}

fn build(http: &str) -> Result<RouteTable, RoutingError> {
    let vs = VirtualService::parse(&manifest(http), None)?;
    RouteTable::build(&vs, &config())
}

fn error(http: &str) -> String {
    build(http).unwrap_err().to_string()
}

const TWO_SIDES: &str = "route:
  - destination: {host: legacy-api}
    weight: 90
  - destination: {host: identity}
    weight: 10";

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    map
}

#[test]
fn builds_the_example_manifest() {
    let vs = VirtualService::parse(EXAMPLE, Some("member-api")).unwrap();
    let table = RouteTable::build(&vs, &config()).unwrap();
    let names: Vec<_> = table.routes().iter().map(|route| route.name()).collect();
    assert_eq!(
        names,
        [
            "sessions",
            "users-me-read",
            "users-me",
            "users-read",
            "users",
            "default"
        ]
    );
    let sessions = table.get("sessions").unwrap();
    assert_eq!(sessions.new_share_basis_points(), 100);
    assert_eq!(
        sessions.legacy_upstream().unwrap().host,
        "legacy-api.members.svc.cluster.local"
    );
    assert_eq!(sessions.new_upstream().unwrap().weight, 1);
    assert_eq!(sessions.shadow_percent(Side::Legacy), 100.0);
    assert_eq!(
        sessions.shadow(Side::Legacy).unwrap().host,
        "identity.members.svc.cluster.local"
    );
    assert!(
        sessions.shadow(Side::New).is_none(),
        "identity's answers are not replayed to legacy"
    );
    assert_eq!(sessions.timeout(), Duration::from_secs(5));
    assert!(sessions.retries().is_none());
    let read = table.get("users-me-read").unwrap().retries().unwrap();
    assert_eq!(read.attempts, 2);
    assert_eq!(read.per_try_timeout, Some(Duration::from_secs(2)));
    assert_eq!(
        read.retry_on,
        [
            RetryOn::ConnectFailure,
            RetryOn::RefusedStream,
            RetryOn::Status(503)
        ]
    );
    let fallback = table.get("default").unwrap();
    assert_eq!(fallback.new_share_basis_points(), 0);
    assert!(fallback.new_upstream().is_none());
    assert_eq!(fallback.legacy_upstream().unwrap().weight, 100);
}

#[test]
fn first_matching_rule_wins() {
    let vs = VirtualService::parse(EXAMPLE, None).unwrap();
    let table = RouteTable::build(&vs, &config()).unwrap();
    let none = HeaderMap::new();
    let name = |method, path| {
        table
            .route(method, path, &none)
            .map(|route| route.name().to_owned())
    };
    for (method, path, expected) in [
        ("POST", "/api/v1/sessions", "sessions"),
        ("POST", "/api/v1/sessions/refresh", "sessions"),
        ("DELETE", "/api/v1/sessions?all=1", "sessions"),
        ("GET", "/api/v1/users/me", "users-me-read"),
        ("GET", "/api/v1/users/me?fields=email", "users-me-read"),
        ("PATCH", "/api/v1/users/me", "users-me"),
        ("PUT", "/api/v1/users/me/password", "users-me"),
        ("GET", "/api/v1/users/me/password", "users-me"),
        ("GET", "/api/v1/users", "users-read"),
        ("GET", "/api/v1/users/42", "users-read"),
        // The regex must match the whole path: this one falls through to the prefix.
        ("GET", "/api/v1/users/42/posts", "users"),
        ("POST", "/api/v1/users", "users"),
        // A prefix is a plain string prefix, as in Istio.
        ("GET", "/api/v1/users-export", "users"),
        ("GET", "/health", "default"),
    ] {
        assert_eq!(
            name(method, path).as_deref(),
            Some(expected),
            "{method} {path}"
        );
    }
}

#[test]
fn no_rule_matches_without_a_catch_all() {
    let table = build(&format!(
        "- name: users\n  match: [{{uri: {{prefix: /api/v1/users}}}}]\n  {TWO_SIDES}"
    ))
    .unwrap();
    assert!(
        table
            .route("GET", "/api/v1/sessions", &HeaderMap::new())
            .is_none()
    );
    assert!(
        table
            .route("GET", "/api/v1/users", &HeaderMap::new())
            .is_some()
    );
}

#[test]
fn conditions_of_an_entry_are_anded_and_entries_ored() {
    let table = build(&format!(
        "- name: beta
  match:
  - uri: {{prefix: /api}}
    method: {{regex: \"GET|HEAD\"}}
    headers:
      X-Beta: {{exact: \"yes\"}}
      x-client: {{prefix: ios-}}
    withoutHeaders:
      x-debug: {{}}
  - headers:
      cookie: {{regex: \".*beta=1.*\"}}
  {TWO_SIDES}"
    ))
    .unwrap();
    let matches =
        |method, path, pairs: &[(&str, &str)]| table.route(method, path, &headers(pairs)).is_some();
    let beta = [("x-beta", "yes"), ("X-Client", "ios-17.2")];
    assert!(matches("GET", "/api/x", &beta));
    assert!(matches("HEAD", "/api/x", &beta));
    assert!(!matches("POST", "/api/x", &beta), "method");
    assert!(
        !matches("GETX", "/api/x", &beta),
        "the method regex matches the whole method"
    );
    assert!(!matches("GET", "/web", &beta), "uri");
    assert!(
        !matches("GET", "/api/x", &[("x-beta", "yes")]),
        "a header missing"
    );
    assert!(
        !matches("GET", "/api/x", &[("x-beta", "YES"), ("x-client", "ios-1")]),
        "values are case-sensitive"
    );
    assert!(
        !matches(
            "GET",
            "/api/x",
            &[("x-beta", "yes"), ("x-client", "ios-1"), ("x-debug", "")]
        ),
        "withoutHeaders"
    );
    assert!(
        matches("POST", "/other", &[("cookie", "a=b; beta=1")]),
        "the second entry"
    );
}

#[test]
fn several_values_of_a_header_match_as_one_joined_value() {
    let table = build(&format!(
        "- match: [{{headers: {{x-tag: {{exact: \"a,b\"}}}}}}]\n  {TWO_SIDES}"
    ))
    .unwrap();
    assert!(
        table
            .route("GET", "/", &headers(&[("x-tag", "a"), ("x-tag", "b")]))
            .is_some()
    );
    assert!(
        table
            .route("GET", "/", &headers(&[("x-tag", "a")]))
            .is_none()
    );
}

#[test]
fn ignore_uri_case_covers_exact_and_prefix_only() {
    let table = build(&format!(
        "- name: exact\n  match: [{{uri: {{exact: /Users/Me}}, ignoreUriCase: true}}]\n  {TWO_SIDES}
- name: prefix\n  match: [{{uri: {{prefix: /API/}}, ignoreUriCase: true}}]\n  {TWO_SIDES}
- name: regex\n  match: [{{uri: {{regex: \"/docs/[a-z]+\"}}, ignoreUriCase: true}}]\n  {TWO_SIDES}"
    ))
    .unwrap();
    let name = |path| {
        table
            .route("GET", path, &HeaderMap::new())
            .map(|route| route.name())
    };
    assert_eq!(name("/users/ME"), Some("exact"));
    assert_eq!(name("/api/v1/é"), Some("prefix"));
    assert_eq!(name("/a"), None);
    assert_eq!(name("/docs/abc"), Some("regex"));
    assert_eq!(name("/docs/ABC"), None);
}

#[test]
fn shares_are_exact_basis_points_rounded_down() {
    for (legacy, new, expected) in [
        (2, 1, 3_333),
        (1, 2, 6_666),
        (99, 1, 100),
        (0, 5, 10_000),
        (7, 0, 0),
        (1, 1, 5_000),
    ] {
        let table = build(&format!(
            "- route:\n  - destination: {{host: legacy-api}}\n    weight: {legacy}\n  - destination: {{host: identity}}\n    weight: {new}"
        ))
        .unwrap();
        assert_eq!(
            table.routes()[0].new_share_basis_points(),
            expected,
            "{legacy}/{new}"
        );
        assert_eq!(table.routes()[0].name(), "rule-0");
    }
    let huge = i32::MAX;
    let table = build(&format!(
        "- route:\n  - destination: {{host: legacy-api}}\n    weight: {huge}\n  - destination: {{host: identity}}\n    weight: {huge}"
    ))
    .unwrap();
    assert_eq!(table.routes()[0].new_share_basis_points(), 5_000);
}

#[test]
fn an_only_destination_takes_everything() {
    let table = build("- name: cutover\n  route: [{destination: {host: identity}}]").unwrap();
    let route = &table.routes()[0];
    assert_eq!(route.new_share_basis_points(), 10_000);
    assert!(route.legacy_upstream().is_none());
    assert_eq!(
        route.side_for(crate::Bucket::new(9_999).unwrap()),
        Side::New
    );
    assert_eq!(
        route.timeout(),
        Duration::from_secs(30),
        "the config's default"
    );
}

#[test]
fn short_hosts_are_read_in_the_namespace() {
    let table = build(&format!(
        "- {TWO_SIDES}\n  mirror: {{host: identity-canary}}"
    ))
    .unwrap();
    let route = &table.routes()[0];
    assert_eq!(
        route.new_upstream().unwrap().host,
        "identity.members.svc.cluster.local"
    );
    assert_eq!(
        route.shadow(Side::Legacy).unwrap().host,
        "identity-canary.members.svc.cluster.local"
    );
}

#[test]
fn mirrors_choose_a_shadow_target_per_side() {
    let table = build(&format!(
        "- name: both\n  {TWO_SIDES}\n  mirrors:\n  - destination: {{host: identity}}\n    percentage: {{value: 12.5}}\n  - destination: {{host: legacy-api}}\n    percentage: {{value: 0.0001}}"
    ))
    .unwrap();
    let route = &table.routes()[0];
    assert_eq!(route.shadow_percent(Side::Legacy), 12.5);
    assert_eq!(
        route.shadow(Side::Legacy).unwrap().percentage.ppm(),
        125_000
    );
    assert_eq!(route.shadow(Side::New).unwrap().percentage.ppm(), 1);
    assert_eq!(route.shadow(Side::New).unwrap().side, Side::Legacy);
}

#[test]
fn retries_default_and_disable_as_documented() {
    let table = build(&format!(
        "- name: a\n  {TWO_SIDES}\n  retries: {{attempts: 3}}\n- name: b\n  {TWO_SIDES}\n  retries: {{attempts: 0, retryOn: 5xx}}
- name: c\n  {TWO_SIDES}\n  retries: {{attempts: 1, retryOn: \"gateway-error, retriable-4xx,unavailable,409\", backoff: 25ms}}"
    ))
    .unwrap();
    let a = table.get("a").unwrap().retries().unwrap();
    assert_eq!(
        a.retry_on,
        [
            RetryOn::ConnectFailure,
            RetryOn::RefusedStream,
            RetryOn::Status(503)
        ]
    );
    assert!(a.retries_status(503) && !a.retries_status(500));
    assert!(table.get("b").unwrap().retries().is_none());
    let c = table.get("c").unwrap().retries().unwrap();
    assert_eq!(
        c.retry_on,
        [
            RetryOn::GatewayError,
            RetryOn::Retriable4xx,
            RetryOn::Status(409)
        ]
    );
    assert_eq!(c.backoff, Some(Duration::from_millis(25)));
}

mod manifests;
mod rejections;
