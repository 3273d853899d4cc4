//! Every refusal, with the message an SRE reads.

use super::{TWO_SIDES, config, error, manifest};
use crate::{RouteTable, RoutingError, VirtualService};

#[test]
fn total_weight_zero() {
    assert_eq!(
        error(
            "- name: users\n  route:\n  - destination: {host: legacy-api}\n    weight: 0\n  - destination: {host: identity}"
        ),
        "rule \"users\" (http[0]): `route` weights add up to 0; give at least one destination a positive weight"
    );
    assert_eq!(
        error("- route:\n  - destination: {host: identity}\n    weight: 0"),
        "rule http[0]: `route` weights add up to 0; give at least one destination a positive weight"
    );
}

#[test]
fn negative_or_oversized_weight() {
    assert_eq!(
        error(
            "- name: users\n  route:\n  - destination: {host: legacy-api}\n    weight: 101\n  - destination: {host: identity}\n    weight: -1"
        ),
        "rule \"users\" (http[0]): `route[1].weight` must not be negative, got -1"
    );
    assert_eq!(
        error("- route:\n  - destination: {host: legacy-api}\n    weight: 2147483648"),
        "rule http[0]: `route[0].weight` must be at most 2147483647, got 2147483648"
    );
}

#[test]
fn unknown_hosts() {
    assert_eq!(
        error(
            "- name: users\n  route:\n  - destination: {host: legacy-api}\n  - destination: {host: identity.other.svc.cluster.local}"
        ),
        "rule \"users\" (http[0]): `route[1].destination.host` \"identity.other.svc.cluster.local\" is not an upstream \
         of the proxy config (known: identity-canary.members.svc.cluster.local, identity.members.svc.cluster.local, \
         legacy-api.members.svc.cluster.local)"
    );
    let message = error(&format!(
        "- name: users\n  {TWO_SIDES}\n  mirror: {{host: payments}}"
    ));
    assert!(
        message
            .starts_with("rule \"users\" (http[0]): `mirror.host` \"payments\" is not an upstream"),
        "{message}"
    );
}

#[test]
fn malformed_yaml() {
    let message = VirtualService::parse(
        "apiVersion: networking.istio.io/v1\nkind: [VirtualService\n",
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(
        message.starts_with("malformed VirtualService manifest: "),
        "{message}"
    );
    assert!(message.contains("line 2"), "{message}");
    assert_eq!(
        error("- route:\n  - destination: {host: legacy-api}\n    weight: heavy"),
        "malformed VirtualService manifest: spec.http[0].route[0].weight: invalid type: string \"heavy\", \
         expected i64 at line 9 column 15"
    );
    assert!(matches!(
        VirtualService::parse("- a\n- b\n", None),
        Err(RoutingError::Malformed(_))
    ));
    assert_eq!(
        VirtualService::parse("kind: Service\napiVersion: v1\n", None).unwrap_err(),
        RoutingError::NoVirtualService
    );
    assert_eq!(
        VirtualService::parse("", None).unwrap_err(),
        RoutingError::NoVirtualService
    );
}

#[test]
fn misspelt_fields() {
    assert_eq!(
        error(
            "- name: users\n  {TWO_SIDES}\n  mirrorPercentag: {value: 5}"
                .replace("{TWO_SIDES}", TWO_SIDES)
                .as_str()
        ),
        "malformed VirtualService manifest: spec.http[0]: unknown field `mirrorPercentag`, expected one of `name`, \
         `match`, `route`, `timeout`, `retries`, `mirror`, `mirrorPercentage`, `mirrors`, `headers`, `rewrite`, \
         `redirect`, `directResponse`, `delegate`, `fault`, `corsPolicy`, `mirrorPercent`, `mirror_percent` \
         at line 13 column 5"
    );
}

#[test]
fn bad_regex() {
    assert_eq!(
        error(&format!(
            "- name: users\n  match: [{{uri: {{regex: \"/api/(v1\"}}}}]\n  {TWO_SIDES}"
        )),
        "rule \"users\" (http[0]): `match[0].uri.regex` is not a valid RE2 expression (\"/api/(v1\"): \
         regex parse error:     /api/(v1          ^ error: unclosed group"
    );
    let message = error(&format!(
        "- match: [{{headers: {{x-a: {{regex: \"a{{99999}}{{99999}}\"}}}}}}]\n  {TWO_SIDES}"
    ));
    assert!(
        message.starts_with("rule http[0]: `match[0].headers.x-a.regex` is not a valid RE2"),
        "{message}"
    );
    assert!(message.contains("size limit"), "{message}");
}

#[test]
fn unsupported_fields() {
    assert_eq!(
        error(&format!(
            "- name: users\n  {TWO_SIDES}\n  rewrite: {{uri: /v2/users}}"
        )),
        "rule \"users\" (http[0]): `rewrite` is not supported by the migration proxy: \
         the proxy forwards the path and authority unchanged, so a rewrite would not happen"
    );
    assert_eq!(
        error("- name: moved\n  redirect: {uri: /v2}"),
        "rule \"moved\" (http[0]): `redirect` is not supported by the migration proxy: \
         the proxy forwards every request, so no redirect would be sent"
    );
    for (fragment, field) in [
        ("directResponse: {status: 503}", "directResponse"),
        ("delegate: {name: other}", "delegate"),
        ("fault: {abort: {httpStatus: 500}}", "fault"),
        ("corsPolicy: {allowOrigins: [{exact: x}]}", "corsPolicy"),
        ("mirrorPercent: 5", "mirrorPercent"),
        (
            "match: [{queryParams: {debug: {exact: \"1\"}}}]",
            "match[0].queryParams",
        ),
        ("match: [{authority: {exact: a}}]", "match[0].authority"),
        (
            "match: [{uri: {prefix: /}}, {gateways: [mesh]}]",
            "match[1].gateways",
        ),
    ] {
        let message = error(&format!("- name: r\n  {TWO_SIDES}\n  {fragment}"));
        let expected =
            format!("rule \"r\" (http[0]): `{field}` is not supported by the migration proxy: ");
        assert!(message.starts_with(&expected), "{message}");
    }
    assert_eq!(
        error("- route:\n  - destination: {host: legacy-api, subset: v1}"),
        "rule http[0]: `route[0].destination.subset` is not supported by the migration proxy: subsets need a \
         DestinationRule, which the proxy does not read; map a distinct host in the proxy config's `upstreams` instead"
    );
    assert_eq!(
        error(
            "- route:\n  - destination: {host: legacy-api}\n    headers: {request: {set: {x-a: b}}}"
        ),
        "rule http[0]: `route[0].headers` is not supported by the migration proxy: \
         header changes per destination are not applied; set `headers` on the rule instead"
    );
    let tcp = manifest(&format!("- {TWO_SIDES}"))
        + "  tcp:\n  - route: [{destination: {host: legacy-api}}]\n";
    assert_eq!(
        VirtualService::parse(&tcp, None).unwrap_err().to_string(),
        "spec: `tcp` is not supported by the migration proxy: the proxy routes HTTP only"
    );
}

#[test]
fn shapes_of_rules() {
    assert_eq!(
        error(
            "- name: users\n  route:\n  - destination: {host: legacy-api}\n  - destination: {host: legacy-api}"
        ),
        "rule \"users\" (http[0]): `route` has two legacy destinations; a rule has one legacy and at most one new destination"
    );
    assert_eq!(
        error(&format!(
            "- {TWO_SIDES}\n  - destination: {{host: identity-canary}}"
        )),
        "rule http[0]: `route` has 3 destinations; a rule has one legacy and at most one new destination"
    );
    assert_eq!(
        error("- name: nowhere\n  match: [{uri: {prefix: /}}]"),
        "rule \"nowhere\" (http[0]): `route` must name at least one destination"
    );
    assert_eq!(
        error(&format!(
            "- name: a\n  {TWO_SIDES}\n- name: a\n  {TWO_SIDES}"
        )),
        "rule \"a\" (http[1]): `name` \"a\" is also the name of http[0]; route names must be unique"
    );
    assert_eq!(
        error(&format!("- {TWO_SIDES}\n- name: rule-0\n  {TWO_SIDES}")),
        "rule \"rule-0\" (http[1]): `name` \"rule-0\" is also the name of http[0]; route names must be unique"
    );
    assert_eq!(
        error(&format!(
            "- match: [{{uri: {{exact: /a, prefix: /b}}}}]\n  {TWO_SIDES}"
        )),
        "rule http[0]: `match[0].uri` sets more than one of `exact`, `prefix` and `regex`"
    );
    let empty = manifest("[]").replace("  http:\n  []\n", "  http: []\n");
    let vs = VirtualService::parse(&empty, None).unwrap();
    assert_eq!(
        RouteTable::build(&vs, &config()).unwrap_err().to_string(),
        "spec: `http` has no rules, so the proxy would route nothing"
    );
}

#[test]
fn mirrors_durations_and_retries() {
    for (fragment, expected) in [
        (
            "mirror: {host: identity}\n  mirrorPercentage: {value: 150}",
            "`mirrorPercentage.value` must be between 0 and 100, got 150",
        ),
        (
            "mirrorPercentage: {value: 5}",
            "`mirrorPercentage` is set without `mirror`",
        ),
        (
            "mirror: {host: identity}\n  mirrors: [{destination: {host: legacy-api}}]",
            "`mirrors` cannot be used with `mirror`; list every shadow target in `mirrors`",
        ),
        (
            "mirrors: [{destination: {host: identity}}, {destination: {host: identity-canary}}]",
            "`mirrors[1].destination` is a second shadow target on the new side; mirror to at most one upstream per side",
        ),
        (
            "timeout: 5x",
            "`timeout` is not a valid duration (\"5x\"): expected a unit: h, m, s, ms, us or ns",
        ),
        ("timeout: 0s", "`timeout` must be at least 1ms, got \"0s\""),
        (
            "retries: {attempts: -1}",
            "`retries.attempts` must be from 0 to 2147483647, got -1",
        ),
        (
            "retries: {attempts: 2, perTryTimeout: soon}",
            "`retries.perTryTimeout` is not a valid duration (\"soon\"): expected a number",
        ),
        (
            "retries: {attempts: 2, retryOn: \"5xx,connect-failures\"}",
            "`retries.retryOn` has \"connect-failures\", which is not a retry condition the proxy knows (5xx, \
             gateway-error, reset, reset-before-request, connect-failure, refused-stream, retriable-4xx, or a status code)",
        ),
        (
            "retries: {attempts: 2, retryOn: \"600\"}",
            "`retries.retryOn` has \"600\", which is not a retry condition",
        ),
    ] {
        let message = error(&format!("- name: r\n  {TWO_SIDES}\n  {fragment}"));
        let expected = format!("rule \"r\" (http[0]): {expected}");
        assert!(message.starts_with(&expected), "{message}\n!=\n{expected}");
    }
}

#[test]
fn versions_that_are_not_read() {
    let v2 = manifest(&format!("- {TWO_SIDES}"))
        .replace("networking.istio.io/v1\n", "networking.istio.io/v2\n");
    assert_eq!(
        VirtualService::parse(&v2, None).unwrap_err().to_string(),
        "VirtualService \"member-api\" has apiVersion \"networking.istio.io/v2\"; \
         networking.istio.io/v1, v1beta1 and v1alpha3 are read"
    );
    let other_group =
        manifest(&format!("- {TWO_SIDES}")).replace("networking.istio.io/v1\n", "example.com/v1\n");
    assert_eq!(
        VirtualService::parse(&other_group, None).unwrap_err(),
        RoutingError::NoVirtualService
    );
}
