//! Checks of one answer that transcript equality cannot express: the contract's
//! expected status and body, and assertions between values of different steps
//! (`updated_at` moved, `expires_at` an hour ahead, a token rotated).

use json_diff::{Differ, PathPattern, RenderMode};
use serde_json::Value;

use crate::scenario::{Assertion, Expect};
use crate::template::{Template, Vars};
use crate::transcript::{CheckRecord, ResponseRecord};

/// Checks an answer against an expectation; `who` prefixes the descriptions
/// (`"legacy"`, `"identity"`).
pub fn expect_checks(who: &str, expect: &Expect, response: &ResponseRecord) -> Vec<CheckRecord> {
    let mut checks = Vec::new();
    if let Some(status) = expect.status {
        let failure = (response.status != status).then(|| format!("got {}", response.status));
        checks.push(CheckRecord::new(
            format!("{who} status is {status}"),
            failure,
        ));
    }
    if let Some(body) = &expect.body {
        let differ = Differ::new().key_order(true);
        let diff = differ.diff(body, &response.body);
        let failure = (!diff.is_empty()).then(|| {
            format!(
                "expected (left) vs got (right):\n{}",
                diff.render(RenderMode::Full)
            )
        });
        checks.push(CheckRecord::new(
            format!("{who} body is as expected"),
            failure,
        ));
    }
    for key in &expect.body_has {
        let has = response.body_kind == "json" && response.body.get(key).is_some();
        let failure = (!has).then(|| format!("body is {}", response.body));
        checks.push(CheckRecord::new(format!("{who} body has {key:?}"), failure));
    }
    for header in &expect.headers_has {
        let has = response.headers.contains_key(&header.to_ascii_lowercase());
        let failure = (!has).then(|| "absent".to_owned());
        checks.push(CheckRecord::new(
            format!("{who} header {header} is present"),
            failure,
        ));
    }
    checks
}

/// The value at an exact JSON path of a body.
pub fn lookup<'v>(body: Option<&'v Value>, path: &str) -> Option<&'v Value> {
    let pattern = PathPattern::parse(path).ok()?;
    pattern.select(body?).into_iter().next()
}

/// A value as text: strings as they are, anything else as JSON.
pub fn as_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Evaluates an assertion on the raw body; `now_ms` is the local clock at the answer.
pub fn assertion_check(
    assertion: &Assertion,
    body: Option<&Value>,
    vars: &Vars,
    now_ms: i64,
) -> CheckRecord {
    let render = |t: &str| {
        Template::parse(t)
            .map(|t| t.render(vars))
            .unwrap_or_else(|_| t.to_owned())
    };
    let found = lookup(body, assertion.path());
    let missing = || format!("no value at {}", assertion.path());
    match assertion {
        Assertion::Later { path, than } => {
            let what = format!("{path} later than {than}");
            let failure = match (
                found.and_then(Value::as_str).and_then(parse_timestamp),
                parse_timestamp(&render(than)),
            ) {
                (None, _) => {
                    Some(found.map_or_else(missing, |v| format!("{v} is not a timestamp")))
                }
                (_, None) => Some(format!("{:?} is not a timestamp", render(than))),
                (Some(now), Some(before)) => (now <= before).then(|| {
                    format!(
                        "{} is not later than {}",
                        as_text(found.unwrap()),
                        render(than)
                    )
                }),
            };
            CheckRecord::new(what, failure)
        }
        Assertion::Equals { path, value } => {
            let what = format!("{path} equals {value}");
            let failure = match found {
                None => Some(missing()),
                Some(v) => (as_text(v) != render(value))
                    .then(|| format!("{} != {}", as_text(v), render(value))),
            };
            CheckRecord::new(what, failure)
        }
        Assertion::Differs { path, value } => {
            let what = format!("{path} differs from {value}");
            let failure = match found {
                None => Some(missing()),
                Some(v) => {
                    (as_text(v) == render(value)).then(|| format!("both are {}", render(value)))
                }
            };
            CheckRecord::new(what, failure)
        }
        Assertion::ExpiresIn {
            path,
            seconds,
            tolerance,
        } => {
            let what = format!("{path} about {seconds} s ahead (± {tolerance} s)");
            let failure = match found.and_then(Value::as_str).and_then(parse_timestamp) {
                None => Some(found.map_or_else(missing, |v| format!("{v} is not a timestamp"))),
                Some(at) => {
                    let ahead = (at - now_ms) as f64 / 1000.0;
                    ((ahead - *seconds as f64).abs() > *tolerance as f64).then(|| {
                        format!(
                            "{} is {ahead:.1} s ahead of this machine's clock",
                            as_text(found.unwrap())
                        )
                    })
                }
            };
            CheckRecord::new(what, failure)
        }
    }
}

/// Milliseconds since the Unix epoch of an ISO-8601 UTC timestamp
/// (`2026-11-26T07:17:26.992Z`, any number of fractional digits, or none).
pub fn parse_timestamp(text: &str) -> Option<i64> {
    let text = text.strip_suffix('Z')?;
    let (date, time) = text.split_once('T')?;
    let mut date_parts = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (year, month, day) = (
        date_parts.next()??,
        date_parts.next()??,
        date_parts.next()??,
    );
    let (hms, fraction) = match time.split_once('.') {
        Some((hms, fraction)) => (hms, fraction),
        None => (time, ""),
    };
    let mut time_parts = hms.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (hour, minute, second) = (
        time_parts.next()??,
        time_parts.next()??,
        time_parts.next()??,
    );
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    if !fraction.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let millis: i64 = format!("{fraction:0<3}")[..3].parse().ok()?;
    let days = days_from_civil(year, month, day);
    Some(((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000 + millis)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::BTreeMap;

    #[test]
    fn parses_timestamps() {
        assert_eq!(parse_timestamp("1970-01-01T00:00:00.000Z"), Some(0));
        assert_eq!(parse_timestamp("1970-01-02T00:00:01.5Z"), Some(86_401_500));
        assert_eq!(
            parse_timestamp("2026-11-26T07:17:26.992Z"),
            Some(1_795_677_446_992)
        );
        assert_eq!(
            parse_timestamp("2000-02-29T00:00:00Z"),
            Some(951_782_400_000)
        );
        assert_eq!(parse_timestamp("2026-11-26 07:17:26.992"), None);
        assert_eq!(parse_timestamp("2026-13-26T07:17:26.992Z"), None);
    }

    fn response(status: u16, body: Value) -> ResponseRecord {
        ResponseRecord {
            status,
            headers: BTreeMap::from([("retry-after".to_owned(), "60".to_owned())]),
            body_kind: "json".into(),
            body,
        }
    }

    #[test]
    fn expectations() {
        let expect = Expect {
            status: Some(429),
            body: Some(json!({"error": "Too many attempts"})),
            body_has: vec!["error".into()],
            headers_has: vec!["Retry-After".into()],
        };
        let ok = expect_checks(
            "identity",
            &expect,
            &response(429, json!({"error": "Too many attempts"})),
        );
        assert!(ok.iter().all(|c| c.ok), "{ok:?}");
        assert_eq!(ok.len(), 4);
        let bad = expect_checks("identity", &expect, &response(401, json!({"errors": "x"})));
        assert_eq!(bad.iter().filter(|c| !c.ok).count(), 3);
        assert_eq!(bad[0].detail.as_deref(), Some("got 401"));
    }

    #[test]
    fn assertions() {
        let vars = Vars::from([
            ("before".into(), "2026-11-26T07:17:26.992Z".into()),
            ("tok".into(), "abc".into()),
        ]);
        let body = json!({"updated_at": "2026-11-26T07:17:27.001Z", "token": "abc", "expires_at": "1970-01-01T01:00:00.000Z"});
        let later = Assertion::Later {
            path: "$.updated_at".into(),
            than: "{{before}}".into(),
        };
        assert!(assertion_check(&later, Some(&body), &vars, 0).ok);
        let not_later = Assertion::Later {
            path: "$.expires_at".into(),
            than: "{{before}}".into(),
        };
        assert!(!assertion_check(&not_later, Some(&body), &vars, 0).ok);
        let differs = Assertion::Differs {
            path: "$.token".into(),
            value: "{{tok}}".into(),
        };
        assert!(!assertion_check(&differs, Some(&body), &vars, 0).ok);
        let equals = Assertion::Equals {
            path: "$.token".into(),
            value: "{{tok}}".into(),
        };
        assert!(assertion_check(&equals, Some(&body), &vars, 0).ok);
        let expires = Assertion::ExpiresIn {
            path: "$.expires_at".into(),
            seconds: 3600,
            tolerance: 60,
        };
        assert!(assertion_check(&expires, Some(&body), &vars, 30_000).ok);
        assert!(!assertion_check(&expires, Some(&body), &vars, 120_000).ok);
        let missing = Assertion::Equals {
            path: "$.nope".into(),
            value: "x".into(),
        };
        assert_eq!(
            assertion_check(&missing, None, &vars, 0).detail.as_deref(),
            Some("no value at $.nope")
        );
    }
}
