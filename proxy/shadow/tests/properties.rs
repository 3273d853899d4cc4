//! Property tests of the comparison: an answer always matches itself, which side was
//! primary does not change the verdict, and masked samples never show a value from
//! either body (a strong check against leaking personal data).

use proptest::prelude::*;
use serde_json::{Map, Value, json};
use shadow_compare::{Comparator, CompareConfig, Exchange, Learned, Outcome, RequestMeta, Side};

/// Keys of the member API, plus a couple of odd ones.
const KEYS: &[&str] = &[
    "id",
    "email",
    "nickname",
    "phone_number",
    "profile_image_url",
    "created_at",
    "updated_at",
    "token",
    "refresh_token",
    "expires_at",
    "user",
    "users",
    "errors",
    "error",
    "a b",
    "x",
];

/// Strings shaped like personal data. Every one holds `@`, `+` followed by a digit, or
/// a Hangul syllable, none of which a masked sample can contain by construction, so a
/// match in a sample can only be a leak.
fn pii() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9._]{1,8}@[a-z]{1,6}\\.[a-z]{2,3}",
        "\\+[1-9][0-9]{7,12}",
        "[가-힣]{2,6}",
        "[A-Za-z0-9]{0,6}@[A-Za-z0-9]{0,10}",
    ]
}

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (0u32..5).prop_map(|n| json!(n)),
        pii().prop_map(Value::String),
        Just(json!("2026-11-26T07:17:26.992Z")),
    ]
}

fn document() -> impl Strategy<Value = Value> {
    let key = prop::sample::select(KEYS);
    scalar().prop_recursive(4, 40, 5, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((key.clone(), inner), 0..6).prop_map(|members| {
                let map: Map<String, Value> = members
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v))
                    .collect();
                Value::Object(map)
            }),
        ]
    })
}

fn status() -> impl Strategy<Value = u16> {
    prop::sample::select(vec![200u16, 201, 204, 400, 401, 404, 422, 429, 500, 503])
}

fn method() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["GET", "POST", "PATCH", "PUT", "DELETE"])
}

fn exchange() -> impl Strategy<Value = Exchange> {
    (status(), document(), any::<bool>(), any::<bool>()).prop_map(|(status, doc, json, cached)| {
        let mut e = if json {
            Exchange::json(status, &doc)
        } else {
            Exchange::new(status)
        };
        if cached {
            e = e.header("cache-control", "no-cache");
        }
        e
    })
}

fn side() -> impl Strategy<Value = Side> {
    prop::sample::select(Side::ALL.to_vec())
}

/// Every string anywhere in `value` (keys excluded), to look for in samples.
fn strings(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|v| strings(v, out)),
        Value::Object(map) => map.values().for_each(|v| strings(v, out)),
        _ => {}
    }
}

fn comparator() -> Comparator {
    Comparator::new(CompareConfig::default()).unwrap()
}

proptest! {
    #[test]
    fn an_answer_matches_itself(e in exchange(), method in method(), primary in side()) {
        let c = comparator();
        let noise = c.noise_model();
        let request = RequestMeta::new("route", method, "/api/v1/users/1");
        prop_assert_eq!(c.compare(&request, primary, &e, &e.clone(), &noise), Outcome::Match);
    }

    #[test]
    fn the_primary_side_does_not_change_the_verdict(
        a in exchange(), b in exchange(), method in method()
    ) {
        let c = comparator();
        let noise = c.noise_model();
        let request = RequestMeta::new("route", method, "/api/v1/users/me");
        let legacy_primary = c.compare(&request, Side::Legacy, &a, &b, &noise);
        let new_primary = c.compare(&request, Side::New, &b, &a, &noise);
        prop_assert_eq!(legacy_primary.category(), new_primary.category());
        prop_assert_eq!(legacy_primary.mismatch_fields(), new_primary.mismatch_fields());
        if let (Some(x), Some(y)) = (legacy_primary.sample(), new_primary.sample()) {
            prop_assert_eq!(&x.differences, &y.differences);
        }
    }

    #[test]
    fn masked_samples_show_no_value_of_either_body(
        a in document(), b in document(), sa in status(), sb in status(),
        method in method(), primary in side(), learned in document()
    ) {
        let c = comparator();
        let noise = c.noise_model();
        // Some learned noise too, so that noise filtering is exercised.
        for _ in 0..6 {
            noise.learn("route", &Exchange::json(200, &learned), &Exchange::json(200, &a));
        }
        let (legacy, new) = (Exchange::json(sa, &a), Exchange::json(sb, &b));
        let request = RequestMeta::new("route", method, "/api/v1/users/12?ids=3");
        let outcome = c.compare(&request, primary, &legacy, &new, &noise);
        if let Some(sample) = outcome.sample() {
            let shown = format!("{}\n{:?}", serde_json::to_string(sample).unwrap(), outcome);
            let mut values = Vec::new();
            strings(&a, &mut values);
            strings(&b, &mut values);
            for value in values.iter().filter(|v| v.chars().count() > 3) {
                prop_assert!(!shown.contains(value.as_str()), "{:?} shown in {}", value, shown);
            }
            prop_assert!(!shown.contains('@'));
        }
    }

    #[test]
    fn identical_legacy_pairs_never_make_noise(doc in document(), n in 1usize..20) {
        let c = comparator();
        let noise = c.noise_model();
        let e = Exchange::json(200, &doc);
        for _ in 0..n {
            prop_assert_eq!(noise.learn("route", &e, &e), Learned::Pair { differing: vec![] });
        }
        let report = noise.report("route").unwrap();
        prop_assert!(report.fields.iter().all(|f| !f.noise && f.differed == 0));
    }
}
