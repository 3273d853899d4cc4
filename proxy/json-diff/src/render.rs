//! Human-readable differences, one line each:
//!
//! ```text
//! ~ $.user.nickname: "bob" != "bobby"
//! - $.user.phone_number: "+821012345678"
//! + $.user.admin: true
//! ! $.id: "5" != 5 (string != number)
//! # $.users: array length 3 != 2
//! % $.users: same elements in another order
//! % $.errors: keys in another order: [nickname, email] != [email, nickname]
//! ```
//!
//! `-` is on the left only, `+` on the right only, `~` changed, `!` another type.
//! Values may be personal data: [`RenderMode::Masked`] shows only their types and
//! sizes (`string(5)`, `number`, `array(3)`), never their content.

use std::fmt::{self, Write as _};

use serde_json::Value;

use crate::difference::{Diff, DiffKind, Difference};

/// Longest value shown in full mode, in characters; longer ones are cut with `…`.
const MAX_VALUE_CHARS: usize = 200;

/// How values are shown.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RenderMode {
    /// Values as compact JSON (long ones shortened).
    #[default]
    Full,
    /// Only each value's type and size; keys of objects are still shown in paths.
    Masked,
}

/// A [`Diff`] or [`Difference`] ready to display in a given mode.
#[derive(Clone, Copy, Debug)]
pub struct Rendered<'r, T> {
    item: &'r T,
    mode: RenderMode,
}

impl<'a> Diff<'a> {
    /// Displays one line per difference in `mode`.
    pub fn render(&self, mode: RenderMode) -> Rendered<'_, Self> {
        Rendered { item: self, mode }
    }

    /// Displays one line per difference, values masked.
    pub fn masked(&self) -> Rendered<'_, Self> {
        self.render(RenderMode::Masked)
    }
}

impl<'a> Difference<'a> {
    /// Displays this difference as one line in `mode`.
    pub fn render(&self, mode: RenderMode) -> Rendered<'_, Self> {
        Rendered { item: self, mode }
    }
}

impl fmt::Display for Diff<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.render(RenderMode::Full).fmt(f)
    }
}

impl fmt::Display for Difference<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.render(RenderMode::Full).fmt(f)
    }
}

impl fmt::Display for Rendered<'_, Diff<'_>> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, difference) in self.item.iter().enumerate() {
            if i > 0 {
                f.write_char('\n')?;
            }
            difference.render(self.mode).fmt(f)?;
        }
        if self.item.is_truncated() {
            f.write_str("\n… more differences not shown")?;
        }
        Ok(())
    }
}

impl fmt::Display for Rendered<'_, Difference<'_>> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Difference { path, kind } = self.item;
        let mode = self.mode;
        let value = |value| Shown { value, mode };
        match kind {
            DiffKind::Missing(v) => write!(f, "- {path}: {}", value(v)),
            DiffKind::Extra(v) => write!(f, "+ {path}: {}", value(v)),
            DiffKind::Changed { left, right } => {
                write!(f, "~ {path}: {} != {}", value(left), value(right))
            }
            DiffKind::TypeMismatch { left, right } => {
                write!(f, "! {path}: {} != {}", value(left), value(right))?;
                if self.mode == RenderMode::Full {
                    write!(f, " ({} != {})", type_name(left), type_name(right))?;
                }
                Ok(())
            }
            DiffKind::ArrayLength { left, right } => {
                write!(f, "# {path}: array length {left} != {right}")
            }
            DiffKind::ArrayOrder => write!(f, "% {path}: same elements in another order"),
            DiffKind::KeyOrder { left, right } => match self.mode {
                RenderMode::Full => write!(
                    f,
                    "% {path}: keys in another order: [{}] != [{}]",
                    left.join(", "),
                    right.join(", ")
                ),
                RenderMode::Masked => {
                    write!(f, "% {path}: {} keys in another order", left.len())
                }
            },
        }
    }
}

/// The JSON type of a value, as shown in masked mode.
pub fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A value as shown in a given mode.
struct Shown<'v> {
    value: &'v Value,
    mode: RenderMode,
}

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.mode, self.value) {
            (RenderMode::Masked, Value::String(s)) => write!(f, "string({})", s.chars().count()),
            (RenderMode::Masked, Value::Array(items)) => write!(f, "array({})", items.len()),
            (RenderMode::Masked, Value::Object(map)) => write!(f, "object({})", map.len()),
            (RenderMode::Masked, Value::Null) => f.write_str("null"),
            (RenderMode::Masked, other) => f.write_str(type_name(other)),
            (RenderMode::Full, value) => {
                let json = value.to_string();
                match json.char_indices().nth(MAX_VALUE_CHARS) {
                    None => f.write_str(&json),
                    Some((cut, _)) => {
                        write!(f, "{}… ({} chars)", &json[..cut], json.chars().count())
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff::Differ;
    use serde_json::json;

    fn lines(left: Value, right: Value, mode: RenderMode) -> String {
        Differ::new()
            .key_order(true)
            .diff(&left, &right)
            .render(mode)
            .to_string()
    }

    #[test]
    fn full_lines() {
        let left =
            json!({"user": {"nickname": "bob", "phone": "+8210", "id": "5"}, "users": [1, 2]});
        let right = json!({"user": {"nickname": "bobby", "id": 5, "admin": true}, "users": [2, 1]});
        assert_eq!(
            lines(left, right, RenderMode::Full),
            "~ $.user.nickname: \"bob\" != \"bobby\"\n\
             - $.user.phone: \"+8210\"\n\
             ! $.user.id: \"5\" != 5 (string != number)\n\
             + $.user.admin: true\n\
             % $.users: same elements in another order"
        );
    }

    #[test]
    fn masked_lines_show_no_content() {
        let left = json!({"email": "alice@example.com", "tags": ["x"], "n": 1, "o": {"a": 1}});
        let right = json!({"email": "bob@example.com", "tags": ["x", "y"], "n": 2, "o": null});
        let text = lines(left, right, RenderMode::Masked);
        assert_eq!(
            text,
            "~ $.email: string(17) != string(15)\n\
             # $.tags: array length 1 != 2\n\
             ~ $.n: number != number\n\
             ! $.o: object(1) != null"
        );
        assert!(!text.contains("alice"));
    }

    #[test]
    fn key_order_lines() {
        let left = json!({"errors": {"email": [], "nickname": []}});
        let right = json!({"errors": {"nickname": [], "email": []}});
        assert_eq!(
            lines(left.clone(), right.clone(), RenderMode::Full),
            "% $.errors: keys in another order: [email, nickname] != [nickname, email]"
        );
        assert_eq!(
            lines(left, right, RenderMode::Masked),
            "% $.errors: 2 keys in another order"
        );
    }

    #[test]
    fn long_values_are_shortened() {
        let long = "x".repeat(500);
        let text = lines(json!(long), json!("y"), RenderMode::Full);
        assert!(text.starts_with("~ $: \"xxx"));
        assert!(text.contains("… (502 chars) != \"y\""), "{text}");
    }

    #[test]
    fn truncated_diffs_say_so() {
        let (left, right) = (json!([1, 2, 3]), json!([4, 5, 6]));
        let diff = Differ::new().max_differences(1).diff(&left, &right);
        assert_eq!(diff.len(), 1);
        assert_eq!(
            diff.to_string(),
            "~ $[0]: 1 != 4\n… more differences not shown"
        );
    }
}
