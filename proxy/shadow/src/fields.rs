//! Field names as the comparison reports them: JSON locations generalised over array
//! indexes (`$.users[*].created_at`), so that a field has one name whatever element it
//! is in, which keeps per-field counts bounded and lets learned noise apply to every
//! element. Keys that do not look like field names (spaces, `@`, very long keys) are
//! shown as `*`: they may be data, and they would make the set of names unbounded.
//!
//! Generalised names are valid json-diff patterns, so a learned noise field can be
//! copied into the `ignore` setting as it is.

use std::collections::HashSet;

use json_diff::{JsonPath, PathSegment};
use serde_json::Value;

/// Longest key shown as it is.
const MAX_KEY_CHARS: usize = 64;

/// A generalised location and where each of its ancestors' names ends in it:
/// `$.users[*].id` has prefixes `$`, `$.users`, `$.users[*]` and itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FieldPath {
    name: String,
    /// Byte length of the name of each ancestor (root first) and of the path itself.
    ends: Vec<usize>,
}

impl FieldPath {
    fn root() -> Self {
        Self {
            name: "$".into(),
            ends: vec![1],
        }
    }

    fn push(&mut self, segment: &PathSegment) {
        match segment {
            PathSegment::Key(key) => push_key(&mut self.name, key),
            PathSegment::Index(_) => self.name.push_str("[*]"),
        }
        self.ends.push(self.name.len());
    }

    /// A name outside the body (`status`, `header:content-type`), without ancestors.
    pub(crate) fn plain(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            ends: vec![name.len()],
        }
    }

    /// The generalised form of a concrete location.
    pub(crate) fn of(path: &JsonPath) -> Self {
        let mut out = Self::root();
        for segment in path.segments() {
            out.push(segment);
        }
        out
    }

    /// The name, e.g. `$.users[*].created_at`.
    #[cfg(test)]
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The names of this location and its ancestors, root first.
    pub(crate) fn prefixes(&self) -> impl Iterator<Item = &str> {
        self.ends.iter().map(|&end| &self.name[..end])
    }

    pub(crate) fn into_name(self) -> String {
        self.name
    }
}

/// The generalised name of a concrete location (`$.users[3].id` → `$.users[*].id`).
pub fn field_name(path: &JsonPath) -> String {
    FieldPath::of(path).into_name()
}

/// True for keys shown as they are in field names and samples.
pub(crate) fn is_field_key(key: &str) -> bool {
    let mut chars = key.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    first_ok
        && key.len() <= MAX_KEY_CHARS
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn push_key(out: &mut String, key: &str) {
    out.push('.');
    if is_field_key(key) {
        out.push_str(key);
    } else {
        out.push('*');
    }
}

/// A concrete location with the keys that do not look like field names replaced by
/// `*`, for masked sample lines (indexes are kept: they tell which element differs).
pub(crate) fn masked_path(path: &JsonPath) -> JsonPath {
    let segments = path
        .segments()
        .iter()
        .map(|segment| match segment {
            PathSegment::Key(key) if !is_field_key(key) => PathSegment::Key("*".into()),
            other => other.clone(),
        })
        .collect();
    JsonPath::from_segments(segments)
}

/// Adds the generalised name of every location of `value` (itself included) to `out`.
pub(crate) fn collect_names(value: &Value, out: &mut HashSet<String>) {
    let mut name = String::from("$");
    walk(value, &mut name, out);
}

fn walk(value: &Value, name: &mut String, out: &mut HashSet<String>) {
    if !out.contains(name.as_str()) {
        out.insert(name.clone());
    }
    let len = name.len();
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                push_key(name, key);
                walk(child, name, out);
                name.truncate(len);
            }
        }
        Value::Array(items) => {
            name.push_str("[*]");
            for child in items {
                walk(child, name, out);
            }
            name.truncate(len);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use json_diff::PathPattern;
    use serde_json::json;

    #[test]
    fn indexes_generalise_and_odd_keys_are_hidden() {
        let path = JsonPath::root().key("users").index(3).key("created_at");
        let field = FieldPath::of(&path);
        assert_eq!(field.name(), "$.users[*].created_at");
        assert_eq!(
            field.prefixes().collect::<Vec<_>>(),
            ["$", "$.users", "$.users[*]", "$.users[*].created_at"]
        );
        let odd = JsonPath::root().key("bob@example.com").key("x");
        assert_eq!(field_name(&odd), "$.*.x");
        assert_eq!(masked_path(&odd).to_string(), r#"$["*"].x"#);
    }

    #[test]
    fn names_are_patterns_matching_their_locations() {
        let path = JsonPath::root().key("users").index(0).key("a b").key("id");
        let pattern = PathPattern::parse(&field_name(&path)).unwrap();
        assert!(pattern.matches(path.segments()));
    }

    #[test]
    fn every_location_is_collected_once() {
        let doc = json!({"users": [{"id": 1}, {"id": 2, "x": null}], "n": 1});
        let mut names = HashSet::new();
        collect_names(&doc, &mut names);
        let mut names: Vec<_> = names.into_iter().collect();
        names.sort();
        assert_eq!(
            names,
            [
                "$",
                "$.n",
                "$.users",
                "$.users[*]",
                "$.users[*].id",
                "$.users[*].x"
            ]
        );
    }
}
