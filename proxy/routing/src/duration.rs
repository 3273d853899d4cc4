//! Durations written as Istio and Kubernetes write them (`5s`, `250ms`, `1m30s`,
//! `1.5s`): a sequence of decimal numbers, each with a unit among `h`, `m`, `s`, `ms`,
//! `us` (or `µs`) and `ns`. Used for the VirtualService's `timeout`, `perTryTimeout` and
//! `backoff`, and for the proxy config's timeouts, so that both files read alike.

use std::time::Duration;

/// A duration that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {reason}")]
pub struct DurationError {
    /// The text as given.
    pub input: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// Nanoseconds per unit, longest unit names first so that `ms` is not read as `m`.
const UNITS: [(&str, u128); 8] = [
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("μs", 1_000),
    ("ms", 1_000_000),
    ("h", 3_600_000_000_000),
    ("m", 60_000_000_000),
    ("s", 1_000_000_000),
];

/// The longest duration accepted: far beyond any sensible timeout, and small enough
/// that no arithmetic on it overflows.
const MAX_NANOS: u128 = 366 * 24 * 3_600_000_000_000;

/// Parses a duration such as `5s`, `250ms`, `1m30s` or `0.5s`. A bare `0` is zero;
/// any other number needs a unit. Signs are refused: no duration here is negative.
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let fail = |reason| DurationError {
        input: input.to_owned(),
        reason,
    };
    if input == "0" {
        return Ok(Duration::ZERO);
    }
    if input.is_empty() {
        return Err(fail("empty"));
    }
    if input.starts_with(['-', '+']) {
        return Err(fail("a duration has no sign"));
    }
    let mut rest = input;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(number_len);
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if whole.is_empty() && fraction.is_empty() {
            return Err(fail("expected a number"));
        }
        if fraction.contains('.') {
            return Err(fail("a number has at most one decimal point"));
        }
        let (unit_len, per_unit) = UNITS
            .iter()
            .find(|(name, _)| after.starts_with(name))
            .map(|(name, nanos)| (name.len(), *nanos))
            .ok_or_else(|| fail("expected a unit: h, m, s, ms, us or ns"))?;
        total = total
            .checked_add(term_nanos(whole, fraction, per_unit).ok_or_else(|| fail("too long"))?)
            .filter(|nanos| *nanos <= MAX_NANOS)
            .ok_or_else(|| fail("too long"))?;
        rest = &after[unit_len..];
    }
    let nanos = u64::try_from(total).map_err(|_| fail("too long"))?;
    Ok(Duration::from_nanos(nanos))
}

/// `whole.fraction` units in nanoseconds, rounded down; `None` past [`MAX_NANOS`].
fn term_nanos(whole: &str, fraction: &str, per_unit: u128) -> Option<u128> {
    let mut units: u128 = 0;
    for digit in whole.bytes() {
        units = units * 10 + u128::from(digit - b'0');
        if units * per_unit > MAX_NANOS {
            return None;
        }
    }
    // Twenty digits are beyond nanosecond precision for every unit, and keep
    // `numerator * per_unit` far below `u128::MAX`.
    let (mut numerator, mut denominator) = (0u128, 1u128);
    for digit in fraction.bytes().take(20) {
        numerator = numerator * 10 + u128::from(digit - b'0');
        denominator *= 10;
    }
    Some(units * per_unit + numerator * per_unit / denominator)
}

/// Reads a duration string in a serde field, so that a bad value is reported with the
/// setting's path (`timeouts.connect: invalid duration "2x": ...`).
pub(crate) fn deserialize<'de, D>(deserializer: D) -> Result<Duration, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let text = <String as serde::Deserialize>::deserialize(deserializer)?;
    parse_duration(&text).map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(text: &str) -> u128 {
        parse_duration(text).unwrap().as_millis()
    }

    #[test]
    fn reads_istio_durations() {
        assert_eq!(ms("5s"), 5_000);
        assert_eq!(ms("250ms"), 250);
        assert_eq!(ms("1m30s"), 90_000);
        assert_eq!(ms("1.5s"), 1_500);
        assert_eq!(ms("0.25s"), 250);
        assert_eq!(ms("2h"), 7_200_000);
        assert_eq!(ms(".5s"), 500);
        assert_eq!(ms("0"), 0);
        assert_eq!(
            parse_duration("1500us").unwrap(),
            Duration::from_micros(1500)
        );
        assert_eq!(parse_duration("7ns").unwrap(), Duration::from_nanos(7));
        assert_eq!(
            parse_duration("1.0000000001s").unwrap(),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn refuses_what_is_not_a_duration() {
        for (text, reason) in [
            ("", "empty"),
            ("5", "expected a unit: h, m, s, ms, us or ns"),
            ("5x", "expected a unit: h, m, s, ms, us or ns"),
            ("-5s", "a duration has no sign"),
            ("s", "expected a number"),
            ("1.2.3s", "a number has at most one decimal point"),
            ("99999999999999999999999h", "too long"),
            ("9000h", "too long"),
        ] {
            let error = parse_duration(text).unwrap_err();
            assert_eq!(error.reason, reason, "{text:?}");
        }
        assert_eq!(
            parse_duration("2x").unwrap_err().to_string(),
            r#"invalid duration "2x": expected a unit: h, m, s, ms, us or ns"#
        );
    }
}
