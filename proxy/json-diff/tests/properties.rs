//! Property tests of the comparison: it is reflexive, exact, symmetric and obeys its
//! ignore rules, on arbitrary documents built from a small alphabet of keys so that the
//! two sides overlap often.

use json_diff::{Differ, Difference, Normalizer, PathPattern, RenderMode};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-3i64..4).prop_map(|n| json!(n)),
        prop_oneof![Just(0.5f64), Just(-2.25)].prop_map(|f| json!(f)),
        "[ab]{0,2}".prop_map(Value::String),
    ]
}

fn document() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("a"),
        Just("b"),
        Just("id"),
        Just("updated_at"),
        Just("x y")
    ];
    scalar().prop_recursive(4, 48, 5, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((key.clone(), inner), 0..5).prop_map(|members| {
                let map: Map<String, Value> = members
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v))
                    .collect();
                Value::Object(map)
            }),
        ]
    })
}

/// Documents that are often close: the second is sometimes a copy of the first.
fn pair() -> impl Strategy<Value = (Value, Value)> {
    prop_oneof![
        (document(), document()),
        document().prop_map(|d| (d.clone(), d)),
        document().prop_map(|d| (d.clone(), json!({"wrapped": d}))),
    ]
}

const PATTERNS: &[&str] = &[
    "$.a",
    "$..id",
    "$.*[*]",
    "$[*].b",
    "$.**.updated_at",
    "$.b.**",
    "$[\"x y\"]",
];

fn sorted_lines<'a>(differences: impl IntoIterator<Item = Difference<'a>>) -> Vec<String> {
    let mut lines: Vec<String> = differences
        .into_iter()
        .map(|d| d.render(RenderMode::Full).to_string())
        .collect();
    lines.sort();
    lines
}

/// Replaces every value whose location matches `pattern` by a marker.
fn scribble(doc: &mut Value, pattern: &str) {
    let normalizer: Normalizer = Normalizer::new().replace(pattern, "scribbled").unwrap();
    normalizer.apply(doc, &mut ());
}

proptest! {
    #[test]
    fn a_document_equals_itself(doc in document()) {
        prop_assert!(json_diff::diff(&doc, &doc).is_empty());
        prop_assert!(Differ::new().key_order(true).diff(&doc, &doc).is_empty());
    }

    #[test]
    fn no_difference_exactly_when_equal((left, right) in pair()) {
        let differ = Differ::new();
        let diff = differ.diff(&left, &right);
        prop_assert_eq!(diff.is_empty(), left == right, "{}", diff);
        prop_assert_eq!(differ.equal(&left, &right), left == right);
    }

    #[test]
    fn swapping_the_sides_swaps_the_differences((left, right) in pair(), key_order in any::<bool>()) {
        let differ = Differ::new().key_order(key_order);
        let forward = sorted_lines(differ.diff(&left, &right).into_iter().map(Difference::swapped));
        let backward = sorted_lines(differ.diff(&right, &left));
        prop_assert_eq!(forward, backward);
    }

    #[test]
    fn ignored_locations_are_never_reported((left, right) in pair(), which in 0..PATTERNS.len()) {
        let pattern = PathPattern::parse(PATTERNS[which]).unwrap();
        let differ = Differ::new().ignore_pattern(&pattern).key_order(true);
        for difference in differ.diff(&left, &right) {
            let segments = difference.path.segments();
            for depth in 0..=segments.len() {
                prop_assert!(
                    !pattern.matches(&segments[..depth]),
                    "{} reported under ignored {}", difference, pattern
                );
            }
        }
    }

    #[test]
    fn changes_confined_to_ignored_locations_are_invisible(doc in document(), which in 0..PATTERNS.len()) {
        let mut changed = doc.clone();
        scribble(&mut changed, PATTERNS[which]);
        let differ = Differ::new().ignore(PATTERNS[which]).unwrap();
        prop_assert!(differ.diff(&doc, &changed).is_empty());
        prop_assert!(differ.equal(&changed, &doc));
    }

    #[test]
    fn rendered_paths_parse_back_as_patterns((left, right) in pair()) {
        for difference in json_diff::diff(&left, &right) {
            let pattern = PathPattern::parse(&difference.path.to_string()).unwrap();
            prop_assert!(pattern.is_exact());
            prop_assert!(pattern.matches(difference.path.segments()));
        }
    }
}
