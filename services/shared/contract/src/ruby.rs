//! How Ruby turns a JSON scalar into a string, where the legacy reads a parameter as text:
//! ActiveModel's string attribute cast (`true` → `"t"`) and plain `to_s` (`true` →
//! `"true"`), with Ruby's float formatting (`1.0e+16`, `100.0`).

use serde_json::Value;

/// A permitted scalar parameter assigned to a string column (ActiveModel's
/// `Type::String#cast`): `None` for null; arrays and objects are not scalars and are
/// dropped by strong parameters before they get here (`None` too).
pub fn attribute_string(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Bool(true) => Some("t".into()),
        Value::Bool(false) => Some("f".into()),
        Value::Number(n) => Some(number_to_s(n)),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

/// Ruby's `to_s` of a scalar parameter (`nil.to_s` is `""`). Arrays and objects give
/// `None`: the legacy compares their inspection, which matches nothing.
pub fn to_s(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(number_to_s(n)),
        Value::Null => Some(String::new()),
        Value::Array(_) | Value::Object(_) => None,
    }
}

/// A JSON number as Ruby prints the Integer or Float it parses to.
pub fn number_to_s(n: &serde_json::Number) -> String {
    if let Some(i) = n.as_i64() {
        i.to_string()
    } else if let Some(u) = n.as_u64() {
        u.to_string()
    } else {
        float_to_s(n.as_f64().unwrap_or(0.0))
    }
}

/// Ruby's `Float#to_s`: the shortest digits that read back the same, in fixed notation
/// when the decimal exponent is in -4..16 and in scientific notation otherwise.
pub fn float_to_s(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        };
    }
    if f == 0.0 {
        return if f.is_sign_negative() {
            "-0.0".into()
        } else {
            "0.0".into()
        };
    }
    let sci = format!("{:e}", f.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let sign = if f < 0.0 { "-" } else { "" };
    let decpt = exp + 1;
    if decpt > 0 && decpt <= 16 {
        let decpt = decpt as usize;
        if digits.len() <= decpt {
            format!("{sign}{}{}.0", digits, "0".repeat(decpt - digits.len()))
        } else {
            format!("{sign}{}.{}", &digits[..decpt], &digits[decpt..])
        }
    } else if decpt <= 0 && decpt > -4 {
        format!("{sign}0.{}{}", "0".repeat((-decpt) as usize), digits)
    } else {
        let frac = if digits.len() > 1 { &digits[1..] } else { "0" };
        let e = decpt - 1;
        let esign = if e < 0 { '-' } else { '+' };
        format!("{sign}{}.{}e{esign}{:02}", &digits[..1], frac, e.abs())
    }
}

/// Ruby's `String#blank?`: empty or only whitespace.
pub fn is_blank(s: &str) -> bool {
    s.chars().all(char::is_whitespace)
}

/// Ruby's `String#strip`: ASCII whitespace and NUL at both ends.
pub fn strip(s: &str) -> &str {
    s.trim_matches(|c: char| matches!(c, '\0' | '\t' | '\n' | '\u{0B}' | '\u{0C}' | '\r' | ' '))
}

/// Ruby's `String#to_i`: leading whitespace, an optional sign, then digits (underscores
/// between digits allowed); anything else stops the number; no digits is 0.
pub fn to_i(s: &str) -> i128 {
    let t = s.trim_start_matches(|c: char| c.is_ascii_whitespace());
    let (neg, rest) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let mut value: i128 = 0;
    let mut prev_digit = false;
    for c in rest.chars() {
        if let Some(d) = c.to_digit(10) {
            value = value.saturating_mul(10).saturating_add(d as i128);
            prev_digit = true;
        } else if c == '_' && prev_digit {
            prev_digit = false;
        } else {
            break;
        }
    }
    if neg { -value } else { value }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn floats_print_like_ruby() {
        assert_eq!(float_to_s(5.0), "5.0");
        assert_eq!(float_to_s(0.1), "0.1");
        assert_eq!(float_to_s(1e15), "1000000000000000.0");
        assert_eq!(float_to_s(1e16), "1.0e+16");
        assert_eq!(float_to_s(0.0001), "0.0001");
        assert_eq!(float_to_s(0.00001), "1.0e-05");
        assert_eq!(float_to_s(-12.5), "-12.5");
        assert_eq!(float_to_s(1.5e300), "1.5e+300");
    }

    #[test]
    fn scalars_cast_like_active_model() {
        assert_eq!(attribute_string(&json!(5)).as_deref(), Some("5"));
        assert_eq!(attribute_string(&json!(true)).as_deref(), Some("t"));
        assert_eq!(to_s(&json!(true)).as_deref(), Some("true"));
        assert_eq!(to_s(&json!(null)).as_deref(), Some(""));
        assert_eq!(attribute_string(&json!([1])), None);
    }

    #[test]
    fn ruby_strings() {
        assert!(is_blank(" \u{3000}\t"));
        assert!(!is_blank(" a "));
        assert_eq!(strip("\0 a b \n"), "a b");
        assert_eq!(to_i(" 12abc"), 12);
        assert_eq!(to_i("1_000"), 1000);
        assert_eq!(to_i("abc"), 0);
        assert_eq!(to_i("-3"), -3);
    }
}
