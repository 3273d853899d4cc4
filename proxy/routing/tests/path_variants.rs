//! Every spelling of a member action that the legacy routes lands on that action's rule
//! of the real manifest (`istio/virtualservice-member-api.yaml`), after the proxy's path
//! normalisation: generated from the contract's router (`member_contract::route`, Rails'
//! own matching), route by route, variant by variant (doubled and leading slashes, a
//! trailing slash, a format suffix, dot segments, percent-encoded letters). A spelling
//! the legacy does not route is refused by both sides (404), wherever the proxy sends it.

use member_contract::{Endpoint, route};
use proptest::prelude::*;
use proxy_routing::path::normalize;
use proxy_routing::{PathNormalization, Routing};

const MANIFEST: &str = include_str!("../../../istio/virtualservice-member-api.yaml");
const CONFIG: &str = include_str!("../../config/local.yaml");

/// Each action of the contract, a canonical request for it, and the rule written for it.
const ACTIONS: &[(&str, &str, &str)] = &[
    ("POST", "/api/v1/users", "users"),
    ("GET", "/api/v1/users", "users-read"),
    ("GET", "/api/v1/users/me", "users-me-read"),
    ("HEAD", "/api/v1/users/me", "users-me-read"),
    ("PATCH", "/api/v1/users/me", "users-me"),
    ("DELETE", "/api/v1/users/me", "users-me"),
    ("PUT", "/api/v1/users/me/password", "users-me"),
    ("GET", "/api/v1/users/42", "users-read"),
    ("HEAD", "/api/v1/users/42", "users-read"),
    ("POST", "/api/v1/sessions", "sessions"),
    ("POST", "/api/v1/sessions/refresh", "sessions"),
    ("DELETE", "/api/v1/sessions", "sessions"),
];

fn routing() -> Routing {
    Routing::from_yaml(MANIFEST, CONFIG).unwrap()
}

/// The rule the proxy picks for what it forwards, and the action the legacy then routes.
fn outcome(routing: &Routing, method: &str, path: &str) -> (String, Option<String>) {
    let forwarded = normalize(path, routing.config.path_normalization);
    let rule = routing
        .table
        .route(method, &forwarded, &http::HeaderMap::new())
        .map_or("(none)".to_owned(), |r| r.name().to_owned());
    let action = route(method, &forwarded).map(|e: Endpoint<'_>| e.label().to_owned());
    (rule, action)
}

/// One way of spelling `path` differently.
#[derive(Debug, Clone)]
enum Variant {
    DoubleSlash(usize),
    LeadingSlashes(usize),
    TrailingSlash,
    Format(&'static str),
    DotSegment(usize),
    UpDotSegment(usize),
    EncodedLetter(usize),
    EncodedDot(usize),
}

fn apply(path: &str, variant: &Variant) -> String {
    let slashes: Vec<usize> = path.match_indices('/').map(|(i, _)| i).collect();
    let at = |n: usize| slashes[n % slashes.len()];
    match variant {
        Variant::DoubleSlash(n) => {
            let i = at(*n);
            format!("{}/{}", &path[..i], &path[i..])
        }
        Variant::LeadingSlashes(n) => format!("{}{path}", "/".repeat(1 + n % 3)),
        Variant::TrailingSlash => format!("{path}/"),
        Variant::Format(f) => format!("{path}.{f}"),
        Variant::DotSegment(n) => {
            let i = at(*n);
            format!("{}/.{}", &path[..i], &path[i..])
        }
        Variant::UpDotSegment(n) => {
            let i = at(*n);
            format!("{}/x/..{}", &path[..i], &path[i..])
        }
        Variant::EncodedLetter(n) => {
            let letters: Vec<usize> = path
                .char_indices()
                .filter(|(_, c)| c.is_ascii_alphabetic())
                .map(|(i, _)| i)
                .collect();
            let i = letters[n % letters.len()];
            format!(
                "{}%{:02x}{}",
                &path[..i],
                path.as_bytes()[i],
                &path[i + 1..]
            )
        }
        Variant::EncodedDot(n) => {
            let i = at(*n);
            format!("{}/%2E{}", &path[..i], &path[i..])
        }
    }
}

fn variant() -> impl Strategy<Value = Variant> {
    prop_oneof![
        (0usize..8).prop_map(Variant::DoubleSlash),
        (0usize..3).prop_map(Variant::LeadingSlashes),
        Just(Variant::TrailingSlash),
        prop::sample::select(vec!["json", "xml", "x"]).prop_map(Variant::Format),
        (0usize..8).prop_map(Variant::DotSegment),
        (0usize..8).prop_map(Variant::UpDotSegment),
        (0usize..32).prop_map(Variant::EncodedLetter),
        (0usize..8).prop_map(Variant::EncodedDot),
    ]
}

#[test]
fn each_canonical_request_lands_on_its_actions_rule() {
    let routing = routing();
    assert_eq!(
        routing.config.path_normalization,
        PathNormalization::MergeSlashes
    );
    for (method, path, rule) in ACTIONS {
        let (got, action) = outcome(&routing, method, path);
        assert_eq!(got, *rule, "{method} {path}");
        assert!(action.is_some(), "the legacy routes {method} {path}");
    }
}

#[test]
fn the_spellings_of_the_issue_land_on_their_rules() {
    let routing = routing();
    for (method, path, rule) in [
        ("POST", "/api/v1//users", "users"),
        ("POST", "//api/v1/users", "users"),
        ("PUT", "/api/v1//users/me/password", "users-me"),
        ("GET", "//api/v1/users/1", "users-read"),
        ("GET", "///api/v1/users/1", "users-read"),
        ("GET", "/api//v1/users/1", "users-read"),
        ("PATCH", "/api/v1/users/me.json", "users-me"),
        ("GET", "/api/v1/users/me/", "users-me-read"),
        ("DELETE", "/api/v1/sessions.json", "sessions"),
    ] {
        let (got, action) = outcome(&routing, method, path);
        assert_eq!(
            (got.as_str(), action.is_some()),
            (rule, true),
            "{method} {path}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    /// A variant (or two) of an action's path: where the legacy routes what the proxy
    /// forwards, the proxy chose the rule of the action the legacy routes it to.
    #[test]
    fn every_spelling_the_legacy_routes_lands_on_its_actions_rule(
        index in 0..ACTIONS.len(),
        first in variant(),
        second in proptest::option::of(variant()),
    ) {
        let routing = routing();
        let (method, path, _) = ACTIONS[index];
        let mut spelled = apply(path, &first);
        if let Some(second) = &second {
            spelled = apply(&spelled, second);
        }
        let (rule, action) = outcome(&routing, method, &spelled);
        if let Some(action) = action {
            let expected = ACTIONS
                .iter()
                .find(|(m, p, _)| route(m, p).map(|e| e.label()) == Some(action.as_str()) && *m == method)
                .map(|(_, _, r)| *r)
                .unwrap();
            prop_assert_eq!(rule, expected, "{} {} (legacy: {})", method, spelled, action);
        }
    }
}
