//! The contract's normalisation of answers, so that two runs (of one target or of two)
//! can be compared: member ids become `<member:N>` (numbered by first appearance in the
//! scenario), tokens `<token>`, timestamps `<timestamp>` (each checked for its format:
//! a violation is kept visible as `<…:INVALID value>`), and the run's random values
//! `{{run}}` / `{{run_digits}}`.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use json_diff::{Flow, Normalizer};
use regex::Regex;
use serde_json::Value;

/// The contract's timestamp format: UTC, exactly three fractional digits, `Z`.
pub static TIMESTAMP: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$").unwrap());

/// Any token format is acceptable (legacy 24-character base58, JWT, other opaque
/// strings) as long as it is a non-empty string without whitespace.
pub static TOKEN: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^\S+$").unwrap());

static DELETED_EMAIL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^deleted-(\d+)@invalid$").unwrap());

/// What normalisation remembers across the answers of one scenario run.
#[derive(Clone, Debug, Default)]
pub struct Context {
    /// Member id → its number, by order of first appearance.
    members: BTreeMap<u64, usize>,
    /// Random values of this run → the placeholder that replaces them.
    run_values: Vec<(String, String)>,
}

impl Context {
    /// A context for one scenario run, given its random variables (name → value).
    pub fn new<'a>(run_variables: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut run_values: Vec<(String, String)> = run_variables
            .into_iter()
            .filter(|(_, value)| !value.is_empty())
            .map(|(name, value)| (value.to_owned(), format!("{{{{{name}}}}}")))
            .collect();
        // Longest first, so that a value containing another is replaced whole.
        run_values.sort_by_key(|(value, _)| std::cmp::Reverse(value.len()));
        Self {
            members: BTreeMap::new(),
            run_values,
        }
    }

    /// `<member:N>` for an id, numbering new ids in order of appearance.
    pub fn member(&mut self, id: u64) -> String {
        let next = self.members.len() + 1;
        format!("<member:{}>", self.members.entry(id).or_insert(next))
    }

    /// The text with the run's random values replaced by their placeholders.
    pub fn strip_run_values(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for (value, placeholder) in &self.run_values {
            if out.contains(value.as_str()) {
                out = out.replace(value.as_str(), placeholder);
            }
        }
        out
    }
}

fn member_id(ctx: &mut Context, _path: &str, value: &mut Value) -> Flow {
    *value = match value.as_u64() {
        Some(id) if id > 0 => Value::String(ctx.member(id)),
        _ => Value::String(format!("<member:INVALID {value}>")),
    };
    Flow::Handled
}

fn deleted_email(ctx: &mut Context, _path: &str, value: &mut Value) -> Flow {
    let Some(id) = value
        .as_str()
        .and_then(|s| DELETED_EMAIL.captures(s))
        .and_then(|c| c[1].parse::<u64>().ok())
    else {
        return Flow::Pass;
    };
    *value = Value::String(format!("deleted-{}@invalid", ctx.member(id)));
    Flow::Handled
}

fn run_values(ctx: &mut Context, _path: &str, value: &mut Value) -> Flow {
    if let Value::String(s) = value {
        *s = ctx.strip_run_values(s);
    }
    Flow::Pass
}

/// The normaliser for response bodies of the member API.
pub fn body_normalizer() -> Normalizer<Context> {
    let timestamp =
        |n: Normalizer<Context>, pattern: &str| n.check(pattern, TIMESTAMP.clone(), "timestamp");
    let build = || -> Result<Normalizer<Context>, json_diff::PatternError> {
        let n = Normalizer::new()
            .hook("$.id", member_id)?
            .hook("$.user.id", member_id)?
            .hook("$.users[*].id", member_id)?
            .check("$.token", TOKEN.clone(), "token")?
            .check("$.refresh_token", TOKEN.clone(), "token")?;
        let n = timestamp(n, "$..created_at")?;
        let n = timestamp(n, "$..updated_at")?;
        let n = timestamp(n, "$..expires_at")?;
        n.hook("$..email", deleted_email)?.hook("$.**", run_values)
    };
    build().expect("the normaliser's patterns are valid")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx() -> Context {
        Context::new([("run", "qwertyuiop"), ("run_digits", "12345678")])
    }

    #[test]
    fn session_answer() {
        let mut body = json!({
            "token": "WQBNCg7T1oV5rnGpT5cLb4pY",
            "refresh_token": "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiIyIn0.c2ln",
            "expires_at": "2026-11-26T08:17:27.597Z",
            "user": {"id": 42, "email": "alice-qwertyuiop@example.com", "nickname": "alice",
                     "phone_number": "+8212345678", "profile_image_url": null,
                     "created_at": "2026-11-26T07:17:26.992Z", "updated_at": "2026-11-26T07:17:26.992Z"}
        });
        let mut ctx = ctx();
        body_normalizer().apply(&mut body, &mut ctx);
        assert_eq!(
            body,
            json!({
                "token": "<token>", "refresh_token": "<token>", "expires_at": "<timestamp>",
                "user": {"id": "<member:1>", "email": "alice-{{run}}@example.com", "nickname": "alice",
                         "phone_number": "+82{{run_digits}}", "profile_image_url": null,
                         "created_at": "<timestamp>", "updated_at": "<timestamp>"}
            })
        );
    }

    #[test]
    fn members_are_numbered_by_first_appearance_across_answers() {
        let n = body_normalizer();
        let mut ctx = ctx();
        let mut first = json!({"id": 90});
        let mut batch = json!({"users": [{"id": 7}, {"id": 90}]});
        let mut deleted = json!({"email": "deleted-7@invalid"});
        n.apply(&mut first, &mut ctx);
        n.apply(&mut batch, &mut ctx);
        n.apply(&mut deleted, &mut ctx);
        assert_eq!(first, json!({"id": "<member:1>"}));
        assert_eq!(
            batch,
            json!({"users": [{"id": "<member:2>"}, {"id": "<member:1>"}]})
        );
        assert_eq!(deleted, json!({"email": "deleted-<member:2>@invalid"}));
    }

    #[test]
    fn format_violations_stay_visible() {
        let mut body = json!({
            "id": "5", "token": "has space", "refresh_token": "",
            "expires_at": "2026-11-26T08:17:27Z", "user": {"id": 0, "created_at": null}
        });
        body_normalizer().apply(&mut body, &mut ctx());
        assert_eq!(
            body,
            json!({
                "id": "<member:INVALID \"5\">", "token": "<token:INVALID \"has space\">",
                "refresh_token": "<token:INVALID \"\">",
                "expires_at": "<timestamp:INVALID \"2026-11-26T08:17:27Z\">",
                "user": {"id": "<member:INVALID 0>", "created_at": "<timestamp:INVALID null>"}
            })
        );
    }

    #[test]
    fn other_fields_and_error_bodies_are_kept() {
        let mut body = json!({"errors": {"email": ["has already been taken"], "nickname": ["is too short (minimum is 2 characters)"]}});
        let expected = body.clone();
        body_normalizer().apply(&mut body, &mut ctx());
        assert_eq!(body, expected);
    }
}
