//! Comparisons: rule-based noise (tokens, issuance times), planted mismatches and what
//! their samples hide, the legacy-5xx category, and skipped comparisons.

use serde_json::{Value, json};

use super::*;
use crate::{
    Category, Comparator, CompareConfig, Exchange, Outcome, RequestMeta, Side, SkipReason,
};

#[test]
fn identical_answers_match() {
    let (c, noise) = setup();
    let body = ok(&member(
        "bob",
        "2026-11-26T07:17:26.992Z",
        "2026-11-26T07:17:26.992Z",
    ));
    let outcome = c.compare(&me_request(), Side::New, &body, &body.clone(), &noise);
    assert_eq!(outcome, Outcome::Match);
}

#[test]
fn sessions_with_other_tokens_and_expiry_match_by_rule() {
    let (c, noise) = setup();
    let user = member(
        "bob",
        "2026-11-26T07:17:26.992Z",
        "2026-11-26T07:17:26.992Z",
    );
    let legacy = Exchange::json(
        201,
        &session(
            "WQBNCg7T1oV5rnGpT5cLb4pY",
            "wbMxXwjaHWbiGi8haWhjXnKS",
            "2026-11-26T08:17:27.597Z",
            user.clone(),
        ),
    );
    let new = Exchange::json(
        201,
        &session(
            "eyJhbGciOiJFZERTQSIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIyIiwic2lkIjoiYWJjIn0.c2lnbmF0dXJl",
            "Zm9vYmFyYmF6cXV4cXV1eHF1dXhxdXV4cXV1eHF1dXg",
            "2026-11-26T08:17:27.611Z",
            user,
        ),
    );
    let login = RequestMeta::new(LOGIN, "POST", "/api/v1/sessions");
    assert_eq!(
        c.compare(&login, Side::Legacy, &legacy, &new, &noise),
        Outcome::Match
    );

    // A token that is not a token is a mismatch, and the sample does not show it.
    let mut broken = serde_json::from_slice::<Value>(&new.body).unwrap();
    broken["token"] = json!("not a token!");
    let broken = Exchange::json(201, &broken);
    let outcome = c.compare(&login, Side::Legacy, &legacy, &broken, &noise);
    assert_eq!(outcome.mismatch_fields(), ["$.token"]);
    assert_hides(
        outcome.sample().unwrap(),
        &["not a token", "WQBNCg7T1oV5rnGpT5cLb4pY"],
    );
}

#[test]
fn a_planted_nickname_difference_is_a_mismatch_that_hides_the_nickname() {
    let (c, noise) = setup();
    let stamp = "2026-11-26T07:17:26.992Z";
    let legacy = ok(&member("bobby", stamp, stamp));
    let new = ok(&member("robert", stamp, stamp));
    let headers: Vec<(String, String)> = [
        ("authorization", "Bearer WQBNCg7T1oV5rnGpT5cLb4pY"),
        ("cookie", "_session=abc123"),
        ("accept", "application/json"),
    ]
    .map(|(n, v)| (n.to_owned(), v.to_owned()))
    .to_vec();
    let request = me_request().with_headers(&headers);
    let outcome = c.compare(&request, Side::New, &new, &legacy, &noise);
    assert_eq!(outcome.category(), Category::Mismatch);
    assert_eq!(outcome.mismatch_fields(), ["$.nickname"]);
    let sample = outcome.sample().unwrap();
    assert_eq!(
        sample.differences,
        ["~ $.nickname: string(5) != string(6)"],
        "legacy on the left"
    );
    assert_eq!(
        (sample.primary, sample.legacy_status, sample.new_status),
        (Side::New, 200, 200)
    );
    assert_eq!(
        sample.request_headers,
        [("accept".to_owned(), "application/json".to_owned())]
    );
    assert_hides(
        sample,
        &[
            "bobby",
            "robert",
            "bob@example.com",
            "+8210",
            "WQBNCg7T1oV5rnGpT5cLb4pY",
            "abc123",
        ],
    );
}

#[test]
fn statuses_headers_and_body_kinds_are_fields() {
    let (c, noise) = setup();
    let legacy = Exchange::new(404).header("cache-control", "no-cache");
    let new =
        Exchange::json(404, &json!({"error": "Not Found"})).header("cache-control", "no-cache");
    let request = RequestMeta::new("GET /api/v1/users/:id", "GET", "/api/v1/users/abc");
    let outcome = c.compare(&request, Side::Legacy, &legacy, &new, &noise);
    assert_eq!(outcome.mismatch_fields(), ["header:content-type", "body"]);
    let sample = outcome.sample().unwrap();
    assert_eq!(
        sample.differences[0],
        r#"header:content-type: absent != "application/json; charset=utf-8""#
    );
    assert_eq!(sample.differences[1], "body: empty != json object(1)");

    let created = Exchange::json(201, &json!({"id": 2}));
    let outcome = c.compare(
        &request,
        Side::Legacy,
        &Exchange::json(200, &json!({"id": 2})),
        &created,
        &noise,
    );
    assert_eq!(outcome.mismatch_fields(), ["status"]);
}

#[test]
fn legacy_500_against_new_400_is_its_own_category() {
    let (c, noise) = setup();
    let legacy = Exchange::new(500);
    let new = Exchange::json(
        400,
        &json!({"error": "param is missing or the value is empty: user"}),
    );
    let request = RequestMeta::new("POST /api/v1/users", "POST", "/api/v1/users");
    for (primary, a, b) in [(Side::Legacy, &legacy, &new), (Side::New, &new, &legacy)] {
        assert_eq!(
            c.compare(&request, primary, a, b, &noise),
            Outcome::LegacyServerErrorNewClientError
        );
    }
    // The other way round is a plain mismatch.
    let outcome = c.compare(&request, Side::New, &Exchange::new(500), &new, &noise);
    assert_eq!(outcome.category(), Category::Mismatch);
}

#[test]
fn bodies_over_the_bound_and_non_json_bodies_are_skipped() {
    let comparator = Comparator::new(CompareConfig {
        max_body_bytes: 64,
        ..Default::default()
    })
    .unwrap();
    let noise = comparator.noise_model();
    let big = ok(&json!({"users": vec![member("bob", "x", "y"); 3]}));
    let small = ok(&json!({"users": []}));
    let request = RequestMeta::new(USERS, "GET", "/api/v1/users?ids=2");
    let skipped = Outcome::Skipped(SkipReason::BodyTooLarge);
    assert_eq!(
        comparator.compare(&request, Side::Legacy, &big, &small, &noise),
        skipped
    );
    let mut cut = small.clone();
    cut.truncated = true;
    assert_eq!(
        comparator.compare(&request, Side::New, &small, &cut, &noise),
        skipped
    );

    let html = |s: &str| Exchange::new(200).body(format!("<p>{s}</p>"));
    assert_eq!(
        comparator.compare(&request, Side::New, &html("a"), &html("b"), &noise),
        Outcome::Skipped(SkipReason::NotJson)
    );
    assert_eq!(
        comparator.compare(&request, Side::New, &html("a"), &html("a"), &noise),
        Outcome::Match
    );
}

#[test]
fn writes_compare_stored_fields_but_not_the_times_they_set() {
    let (c, noise) = setup();
    let request = RequestMeta::new("PATCH /api/v1/users/me", "PATCH", "/api/v1/users/me");
    let legacy = ok(&member(
        "bobby",
        "2026-11-26T07:17:26.992Z",
        "2026-11-27T10:00:00.123Z",
    ));
    let dry_run = ok(&member(
        "bobby",
        "2026-11-26T07:17:26.992Z",
        "2026-11-27T10:00:00.131Z",
    ));
    assert_eq!(
        c.compare(&request, Side::Legacy, &legacy, &dry_run, &noise),
        Outcome::Match
    );
    let wrong_format = ok(&member(
        "bobby",
        "2026-11-26T07:17:26.992Z",
        "2026-11-27 10:00:00",
    ));
    let outcome = c.compare(&request, Side::Legacy, &legacy, &wrong_format, &noise);
    assert_eq!(outcome.mismatch_fields(), ["$.updated_at"]);
}

#[test]
fn configured_ignores_apply() {
    let comparator = Comparator::new(CompareConfig {
        ignore: vec!["$..phone_number".into()],
        ..Default::default()
    })
    .unwrap();
    let noise = comparator.noise_model();
    let stamp = "2026-11-26T07:17:26.992Z";
    let legacy = ok(&member("bob", stamp, stamp));
    let mut other = member("bob", stamp, stamp);
    other["phone_number"] = json!(null);
    let outcome = comparator.compare(&me_request(), Side::Legacy, &legacy, &ok(&other), &noise);
    assert_eq!(outcome, Outcome::Match);
}
