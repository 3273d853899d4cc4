//! Unit tests of the comparison: one or more per kind of difference and per rule.

use serde_json::{Value, json};

use crate::{DiffKind, Differ, JsonPath, diff};

/// The differences as `(path, kind name)` pairs.
fn kinds(differ: &Differ, left: Value, right: Value) -> Vec<(String, &'static str)> {
    differ
        .diff(&left, &right)
        .iter()
        .map(|d| (d.path.to_string(), d.kind.name()))
        .collect()
}

fn plain(left: Value, right: Value) -> Vec<(String, &'static str)> {
    kinds(&Differ::new(), left, right)
}

fn pairs(items: &[(&str, &'static str)]) -> Vec<(String, &'static str)> {
    items.iter().map(|(p, k)| (p.to_string(), *k)).collect()
}

#[test]
fn equal_documents_have_no_difference() {
    let doc = json!({"user": {"id": 1, "tags": ["a", "b"], "x": null}});
    assert!(diff(&doc, &doc.clone()).is_empty());
    assert!(Differ::new().equal(&doc, &doc));
}

#[test]
fn missing_and_extra_members() {
    let left = json!({"user": {"email": "a@b", "nickname": "bob"}});
    let right = json!({"user": {"nickname": "bob", "admin": false}});
    let d = diff(&left, &right);
    assert_eq!(d.len(), 2);
    assert_eq!(
        d.as_slice()[0].path,
        JsonPath::root().key("user").key("email")
    );
    assert_eq!(
        d.as_slice()[0].kind,
        DiffKind::Missing(std::borrow::Cow::Borrowed(&json!("a@b")))
    );
    assert_eq!(
        d.as_slice()[1].kind,
        DiffKind::Extra(std::borrow::Cow::Borrowed(&json!(false)))
    );
    assert_eq!(
        d.to_string(),
        "- $.user.email: \"a@b\"\n+ $.user.admin: false"
    );
}

#[test]
fn changed_scalars() {
    assert_eq!(
        plain(json!({"n": 1}), json!({"n": 2})),
        pairs(&[("$.n", "changed")])
    );
    assert_eq!(plain(json!("a"), json!("b")), pairs(&[("$", "changed")]));
    assert_eq!(
        plain(json!([true]), json!([false])),
        pairs(&[("$[0]", "changed")])
    );
    // 1 and 1.0 are different JSON numbers for serde_json, so they differ here too.
    assert_eq!(plain(json!(1), json!(1.0)), pairs(&[("$", "changed")]));
}

#[test]
fn type_mismatches() {
    assert_eq!(
        plain(json!({"id": "5"}), json!({"id": 5})),
        pairs(&[("$.id", "type_mismatch")])
    );
    assert_eq!(
        plain(json!({"x": null}), json!({"x": {}})),
        pairs(&[("$.x", "type_mismatch")])
    );
    assert_eq!(
        plain(json!([]), json!({})),
        pairs(&[("$", "type_mismatch")])
    );
}

#[test]
fn array_lengths_then_common_prefix() {
    assert_eq!(
        plain(json!({"users": [1, 2, 3]}), json!({"users": [1, 5]})),
        pairs(&[("$.users", "array_length"), ("$.users[1]", "changed")])
    );
    let (left, right) = (json!([1]), json!([]));
    let d = diff(&left, &right);
    assert_eq!(
        d.as_slice()[0].kind,
        DiffKind::ArrayLength { left: 1, right: 0 }
    );
}

#[test]
fn reordered_arrays_are_one_order_difference() {
    let left = json!({"users": [{"id": 1}, {"id": 2}, {"id": 3}, {"id": 4}]});
    let right = json!({"users": [{"id": 1}, {"id": 4}, {"id": 2}, {"id": 3}]});
    assert_eq!(plain(left, right), pairs(&[("$.users", "array_order")]));
    // Not a permutation: reported element by element.
    assert_eq!(
        plain(json!([1, 2, 3]), json!([3, 2, 4])),
        pairs(&[("$[0]", "changed"), ("$[2]", "changed")])
    );
    // Duplicates count: [1, 1, 2] is not a reordering of [1, 2, 2].
    assert_eq!(
        plain(json!([1, 1, 2]), json!([1, 2, 2])),
        pairs(&[("$[1]", "changed")])
    );
}

#[test]
fn unordered_arrays_compare_as_multisets() {
    let differ = Differ::new().unordered("$.tags").unwrap();
    assert!(
        kinds(
            &differ,
            json!({"tags": ["a", "b", "b"]}),
            json!({"tags": ["b", "a", "b"]})
        )
        .is_empty()
    );
    assert_eq!(
        kinds(
            &differ,
            json!({"tags": ["a", "b", "c"]}),
            json!({"tags": ["c", "d", "a", "e"]})
        ),
        pairs(&[
            ("$.tags[1]", "missing"),
            ("$.tags[1]", "extra"),
            ("$.tags[3]", "extra")
        ])
    );
    // Other arrays keep their order.
    assert_eq!(
        kinds(&differ, json!({"x": [1, 2]}), json!({"x": [2, 1]})),
        pairs(&[("$.x", "array_order")])
    );
}

#[test]
fn ignored_locations_and_their_subtrees_are_never_reported() {
    let differ = Differ::new()
        .ignore("$.users[*].created_at")
        .unwrap()
        .ignore("$..updated_at")
        .unwrap()
        .ignore("$.meta")
        .unwrap();
    let left = json!({
        "users": [{"id": 1, "created_at": "a", "updated_at": "b"}],
        "updated_at": "c", "meta": {"x": 1}, "deep": {"x": {"updated_at": 1}}
    });
    let right = json!({
        "users": [{"id": 1, "created_at": "z", "updated_at": "y"}],
        "updated_at": null, "deep": {"x": {"updated_at": [2]}}
    });
    assert!(differ.diff(&left, &right).is_empty());
    assert!(differ.equal(&left, &right));
    assert_eq!(
        kinds(
            &differ,
            json!({"users": [{"id": 1, "created_at": 1}]}),
            json!({"users": [{"id": 2}]})
        ),
        pairs(&[("$.users[0].id", "changed")])
    );
    assert!(
        Differ::new()
            .ignore("$")
            .unwrap()
            .diff(&json!(1), &json!(2))
            .is_empty()
    );
}

#[test]
fn order_detection_respects_ignore_rules() {
    let differ = Differ::new().ignore("$.users[*].seen_at").unwrap();
    let left = json!({"users": [{"id": 1, "seen_at": 1}, {"id": 2, "seen_at": 2}]});
    let right = json!({"users": [{"id": 2, "seen_at": 9}, {"id": 1, "seen_at": 8}]});
    assert_eq!(
        kinds(&differ, left, right),
        pairs(&[("$.users", "array_order")])
    );
}

#[test]
fn key_order_only_when_asked() {
    let left = json!({"errors": {"email": ["x"], "password": ["y"]}});
    let right = json!({"errors": {"password": ["y"], "email": ["x"]}});
    assert!(diff(&left, &right).is_empty());
    let strict = Differ::new().key_order(true);
    assert_eq!(
        kinds(&strict, left.clone(), right.clone()),
        pairs(&[("$.errors", "key_order")])
    );
    assert!(!strict.equal(&left, &right));
    // Keys present on one side only do not count for order; ignored keys neither.
    let l = json!({"a": 1, "x": 0, "b": 2});
    let r = json!({"b": 2, "a": 1});
    assert_eq!(
        kinds(&strict, l, r),
        pairs(&[("$.x", "missing"), ("$", "key_order")])
    );
    let ignoring = Differ::new().key_order(true).ignore("$.x").unwrap();
    assert!(
        ignoring
            .diff(&json!({"x": 1, "a": 1}), &json!({"a": 1, "x": 1}))
            .is_empty()
    );
}

#[test]
fn max_differences_truncates() {
    let (left, right) = (json!({"a": 1, "b": 2, "c": 3}), json!({}));
    let d = Differ::new().max_differences(2).diff(&left, &right);
    assert_eq!(d.len(), 2);
    assert!(d.is_truncated());
}

#[test]
fn odd_keys_are_quoted_in_paths() {
    let (left, right) = (json!({"user[email]": "a"}), json!({"user[email]": "b"}));
    let d = diff(&left, &right);
    assert_eq!(d.to_string(), r#"~ $["user[email]"]: "a" != "b""#);
}

#[test]
fn owned_results_outlive_the_documents() {
    let owned = {
        let left = json!({"a": [1, 2]});
        let right = json!({"a": [2, 1], "b": 1});
        diff(&left, &right).into_owned()
    };
    assert_eq!(
        owned.to_string(),
        "% $.a: same elements in another order\n+ $.b: 1"
    );
}
