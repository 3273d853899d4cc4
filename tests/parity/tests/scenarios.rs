//! The scenario files themselves: they load and validate, and they keep the promises
//! the suite depends on (the throttling scenario last, each intended difference
//! exercised, every endpoint of the contract reached, every message of the contract's
//! validation table expected somewhere).

use std::collections::BTreeSet;
use std::path::Path;

use parity::Scenario;
use serde_json::Value;

fn scenarios() -> Vec<Scenario> {
    // Read at run time: a target directory shared between checkouts may hold a binary
    // compiled in another one.
    let crate_dir = std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo");
    let dir = Path::new(&crate_dir).join("scenarios");
    parity::load_dir(&dir).expect("the scenario files are valid")
}

#[test]
fn throttling_comes_last_and_stays_small() {
    let all = scenarios();
    let last = all.last().unwrap();
    assert_eq!(last.name, "intended-4-log-in-throttling");
    let attempts: u32 = last.steps.iter().map(|s| s.repeat.unwrap_or(1)).sum();
    assert!(
        attempts <= 13,
        "{attempts} requests in the throttling scenario"
    );
    for scenario in &all[..all.len() - 1] {
        for step in &scenario.steps {
            let number = step.intended_difference.as_ref().map(|d| d.number);
            assert_ne!(
                number,
                Some(4),
                "{}: throttling outside the last scenario",
                scenario.name
            );
        }
    }
}

#[test]
fn every_intended_difference_is_exercised() {
    let numbers: BTreeSet<u8> = scenarios()
        .iter()
        .flat_map(|s| s.steps.iter())
        .filter_map(|s| s.intended_difference.as_ref().map(|d| d.number))
        .collect();
    assert_eq!(numbers, BTreeSet::from([1, 2, 3, 4]));
}

#[test]
fn every_endpoint_is_reached() {
    let reached: BTreeSet<(String, String)> = scenarios()
        .iter()
        .flat_map(|s| s.steps.iter())
        .map(|s| {
            (
                s.method.clone(),
                s.path.split('?').next().unwrap().to_owned(),
            )
        })
        .collect();
    let endpoints = [
        ("POST", "/api/v1/users"),
        ("POST", "/api/v1/sessions"),
        ("POST", "/api/v1/sessions/refresh"),
        ("DELETE", "/api/v1/sessions"),
        ("GET", "/api/v1/users/me"),
        ("PATCH", "/api/v1/users/me"),
        ("PUT", "/api/v1/users/me/password"),
        ("DELETE", "/api/v1/users/me"),
        ("GET", "/api/v1/users/{{member_id}}"),
        ("GET", "/api/v1/users"),
    ];
    for (method, path) in endpoints {
        assert!(
            reached.contains(&(method.to_owned(), path.to_owned())),
            "{method} {path} is never called"
        );
    }
}

fn strings(value: &Value, out: &mut BTreeSet<String>) {
    match value {
        Value::String(s) => {
            out.insert(s.clone());
        }
        Value::Array(items) => items.iter().for_each(|v| strings(v, out)),
        Value::Object(map) => map.values().for_each(|v| strings(v, out)),
        _ => {}
    }
}

#[test]
fn every_contract_message_is_expected_somewhere() {
    let mut expected = BTreeSet::new();
    for step in scenarios().iter().flat_map(|s| s.steps.iter()) {
        let bodies = step
            .expect
            .iter()
            .chain(step.intended_difference.iter().map(|d| &d.identity));
        for body in bodies.filter_map(|e| e.body.as_ref()) {
            strings(body, &mut expected);
        }
    }
    let messages = [
        "can't be blank",
        "is invalid",
        "has already been taken",
        "is too long (maximum is 255 characters)",
        "is too short (minimum is 8 characters)",
        "is too long (maximum is 72 characters)",
        "is too short (minimum is 2 characters)",
        "is too long (maximum is 20 characters)",
        "must be an https URL",
        "is too long (maximum is 2048 characters)",
        "param is missing or the value is empty: user",
        "param is missing or the value is empty: ids",
        "Not Found",
        "Unauthorized",
        "Invalid email or password",
        "Invalid refresh token",
        "Too many attempts",
        "<empty>",
    ];
    for message in messages {
        assert!(expected.contains(message), "no step expects {message:?}");
    }
}

#[test]
fn successful_sign_ups_use_per_run_values() {
    for scenario in scenarios() {
        for (index, step) in scenario.steps.iter().enumerate() {
            let creates = step.method == "POST"
                && step.path == "/api/v1/users"
                && step.expect.as_ref().and_then(|e| e.status) == Some(201);
            if !creates {
                continue;
            }
            let body = match (&step.json, step.form.as_ref().or(step.raw.as_ref())) {
                (Some(json), _) => json.to_string(),
                (None, Some(text)) => text.clone(),
                _ => String::new(),
            };
            let where_ = format!("{} step {index}", scenario.name);
            assert!(
                body.contains("{{run}}"),
                "{where_}: the email must contain {{{{run}}}}"
            );
            let phone_given = ["phone_number\":\"", "phone_number]="]
                .iter()
                .any(|p| body.contains(p));
            if phone_given {
                assert!(
                    body.contains("{{run_digits}}"),
                    "{where_}: the phone number must contain {{{{run_digits}}}}"
                );
            }
        }
    }
}
