//! `{{…}}` templates in paths, headers and bodies, and the variables they read.
//!
//! Inside the braces: a variable (`{{alice_token}}`), or a single-quoted literal
//! (`{{'a'}}`), either followed by `* N` to repeat it N times (`{{'가' * 30}}`,
//! `{{'0,' * 99}}`). Variables are the per-run `run` and `run_digits` and the values
//! captured by earlier steps of the scenario.

use std::collections::BTreeMap;

use serde_json::Value;

/// Names of the variables every scenario starts with.
pub const BUILTIN_VARIABLES: [&str; 2] = ["run", "run_digits"];

/// A template that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad template {template:?}: {reason}")]
pub struct TemplateError {
    pub template: String,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Text(String),
    Variable { name: String, times: usize },
    Literal { text: String, times: usize },
}

/// A parsed template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

/// Variable values of one scenario run.
pub type Vars = BTreeMap<String, String>;

impl Template {
    pub fn parse(source: &str) -> Result<Self, TemplateError> {
        let fail = |reason: &str| TemplateError {
            template: source.to_owned(),
            reason: reason.to_owned(),
        };
        let mut parts = Vec::new();
        let mut rest = source;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_owned()));
            }
            let after = &rest[open + 2..];
            let close = after.find("}}").ok_or_else(|| fail("'{{' without '}}'"))?;
            parts.push(parse_expression(after[..close].trim()).map_err(|r| fail(&r))?);
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(Self { parts })
    }

    /// The variables this template reads.
    pub fn variables(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Variable { name, .. } => Some(name.as_str()),
            _ => None,
        })
    }

    /// The text with variables substituted; an undefined variable (a capture that
    /// failed) renders as `<undefined:NAME>` so that the run goes on and the
    /// divergence shows.
    pub fn render(&self, vars: &Vars) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Literal { text, times } => out.push_str(&text.repeat(*times)),
                Part::Variable { name, times } => match vars.get(name) {
                    Some(value) => out.push_str(&value.repeat(*times)),
                    None => out.push_str(&format!("<undefined:{name}>")),
                },
            }
        }
        out
    }
}

fn parse_expression(expr: &str) -> Result<Part, String> {
    let (term, rest) = match expr.strip_prefix('\'') {
        Some(quoted) => {
            let close = quoted.find('\'').ok_or("unterminated quote")?;
            (&expr[..close + 2], &quoted[close + 1..])
        }
        None => expr.split_at(expr.find('*').unwrap_or(expr.len())),
    };
    let times = match rest.trim() {
        "" => 1,
        rest => {
            let count = rest
                .strip_prefix('*')
                .ok_or("expected '* N' after the literal")?;
            count
                .trim()
                .parse::<usize>()
                .map_err(|_| format!("{count:?} is not a repeat count"))?
        }
    };
    let term = term.trim();
    if let Some(quoted) = term.strip_prefix('\'') {
        let text = &quoted[..quoted.len() - 1];
        return Ok(Part::Literal {
            text: text.to_owned(),
            times,
        });
    }
    let valid = !term.is_empty()
        && term.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !term.starts_with(|c: char| c.is_ascii_digit());
    if !valid {
        return Err(format!("{term:?} is not a variable name"));
    }
    Ok(Part::Variable {
        name: term.to_owned(),
        times,
    })
}

/// Parses every string (not key) of a JSON value as a template.
pub fn json_templates(value: &Value) -> Result<Vec<Template>, TemplateError> {
    let mut out = Vec::new();
    fn walk(value: &Value, out: &mut Vec<Template>) -> Result<(), TemplateError> {
        match value {
            Value::String(s) => out.push(Template::parse(s)?),
            Value::Array(items) => items.iter().try_for_each(|v| walk(v, out))?,
            Value::Object(map) => map.values().try_for_each(|v| walk(v, out))?,
            _ => {}
        }
        Ok(())
    }
    walk(value, &mut out)?;
    Ok(out)
}

/// A JSON value with every string rendered as a template (keys are kept as written).
/// Strings that are not valid templates are kept as they are; scenarios are checked
/// when loaded, so this does not happen for them.
pub fn render_json(value: &Value, vars: &Vars) -> Value {
    match value {
        Value::String(s) => match Template::parse(s) {
            Ok(t) => Value::String(t.render(vars)),
            Err(_) => value.clone(),
        },
        Value::Array(items) => Value::Array(items.iter().map(|v| render_json(v, vars)).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), render_json(v, vars)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The per-run variables: `run`, ten lowercase letters (for emails: unchanged by the
/// legacy's downcasing), and `run_digits`, eight digits not starting with 0 (for
/// E.164 phone numbers). Derived from `seed` with SplitMix64.
pub fn run_variables(seed: u64) -> Vars {
    let mut state = seed;
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let run: String = (0..10)
        .map(|_| char::from(b'a' + (next() % 26) as u8))
        .collect();
    let run_digits = format!("{}", 10_000_000 + next() % 90_000_000);
    Vars::from([
        ("run".to_owned(), run),
        ("run_digits".to_owned(), run_digits),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vars() -> Vars {
        Vars::from([("run".into(), "abc".into()), ("id".into(), "7".into())])
    }

    #[test]
    fn renders_variables_literals_and_repeats() {
        let t = Template::parse("alice-{{run}}@x.com/{{ id }}/{{'가' * 3}}/{{'0,' * 2}}{{id*2}}")
            .unwrap();
        assert_eq!(t.render(&vars()), "alice-abc@x.com/7/가가가/0,0,77");
        assert_eq!(t.variables().collect::<Vec<_>>(), ["run", "id", "id"]);
        assert_eq!(Template::parse("{{'*'}}").unwrap().render(&vars()), "*");
        assert_eq!(
            Template::parse("{{' ' * 8}}").unwrap().render(&vars()),
            "        "
        );
    }

    #[test]
    fn undefined_variables_render_visibly() {
        let t = Template::parse("Bearer {{nope}}").unwrap();
        assert_eq!(t.render(&vars()), "Bearer <undefined:nope>");
    }

    #[test]
    fn rejects_bad_templates() {
        for bad in [
            "{{run",
            "{{}}",
            "{{a b}}",
            "{{'x}}",
            "{{run * many}}",
            "{{9x}}",
        ] {
            assert!(Template::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn renders_json_strings_only() {
        let v = json!({"user": {"email": "{{run}}@x", "n": 5, "list": ["{{id}}"]}});
        assert_eq!(
            render_json(&v, &vars()),
            json!({"user": {"email": "abc@x", "n": 5, "list": ["7"]}})
        );
        assert_eq!(json_templates(&v).unwrap().len(), 2);
    }

    #[test]
    fn run_variables_have_their_shapes() {
        for seed in 0..200 {
            let v = run_variables(seed);
            assert_eq!(v["run"].len(), 10);
            assert!(v["run"].chars().all(|c| c.is_ascii_lowercase()));
            assert_eq!(v["run_digits"].len(), 8);
            assert!(!v["run_digits"].starts_with('0'));
        }
        assert_ne!(run_variables(1), run_variables(2));
    }
}
