//! Locations inside a JSON document, written JSONPath-style: `$`, `$.user.email`,
//! `$.users[2].id`, and `$["odd key"]` for keys that are not plain identifiers.

use std::fmt::{self, Write as _};

/// One step from a JSON value to one of its children, borrowing the key.
///
/// Used while walking documents, so that no path is allocated unless it is reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

/// One step of an owned [`JsonPath`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PathSegment {
    /// A member of an object.
    Key(String),
    /// An element of an array.
    Index(usize),
}

/// An owned location inside a JSON document; displays as `$.users[2].id`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JsonPath {
    segments: Vec<PathSegment>,
}

impl JsonPath {
    /// The document itself, `$`.
    pub fn root() -> Self {
        Self::default()
    }

    /// The path made of these segments, outermost first.
    pub fn from_segments(segments: Vec<PathSegment>) -> Self {
        Self { segments }
    }

    pub(crate) fn from_steps(steps: &[Step<'_>]) -> Self {
        let segments = steps
            .iter()
            .map(|step| match *step {
                Step::Key(key) => PathSegment::Key(key.to_owned()),
                Step::Index(index) => PathSegment::Index(index),
            })
            .collect();
        Self { segments }
    }

    /// The segments, outermost first; empty for the root.
    pub fn segments(&self) -> &[PathSegment] {
        &self.segments
    }

    /// This path extended by one object key.
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.segments.push(PathSegment::Key(key.into()));
        self
    }

    /// This path extended by one array index.
    pub fn index(mut self, index: usize) -> Self {
        self.segments.push(PathSegment::Index(index));
        self
    }

    /// How many steps below the root this path is.
    pub fn depth(&self) -> usize {
        self.segments.len()
    }
}

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_char('$')?;
        for segment in &self.segments {
            match segment {
                PathSegment::Key(key) => write_key(f, key)?,
                PathSegment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// Appends one step to a rendered path (used by the normaliser's path buffer).
pub(crate) fn push_step(out: &mut String, step: Step<'_>) {
    // Writing to a String cannot fail.
    let _ = match step {
        Step::Key(key) => write_key(out, key),
        Step::Index(index) => write!(out, "[{index}]"),
    };
}

/// `.key` for identifier-like keys, `["key"]` (JSON string syntax) for the others.
fn write_key(out: &mut impl fmt::Write, key: &str) -> fmt::Result {
    if is_identifier(key) {
        out.write_char('.')?;
        out.write_str(key)
    } else {
        out.write_char('[')?;
        write_json_string(out, key)?;
        out.write_char(']')
    }
}

/// Keys that can be written after a dot and read back by the pattern parser.
pub(crate) fn is_identifier(key: &str) -> bool {
    let mut chars = key.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

pub(crate) fn write_json_string(out: &mut impl fmt::Write, s: &str) -> fmt::Result {
    out.write_char('"')?;
    for c in s.chars() {
        match c {
            '"' => out.write_str("\\\"")?,
            '\\' => out.write_str("\\\\")?,
            '\n' => out.write_str("\\n")?,
            '\r' => out.write_str("\\r")?,
            '\t' => out.write_str("\\t")?,
            c if (c as u32) < 0x20 => write!(out, "\\u{:04x}", c as u32)?,
            c => out.write_char(c)?,
        }
    }
    out.write_char('"')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_keys_and_indexes() {
        let path = JsonPath::root().key("users").index(2).key("id");
        assert_eq!(path.to_string(), "$.users[2].id");
        assert_eq!(JsonPath::root().to_string(), "$");
    }

    #[test]
    fn quotes_keys_that_are_not_identifiers() {
        let path = JsonPath::root()
            .key("user[email]")
            .key("a b")
            .key("x\"y")
            .key("9");
        assert_eq!(path.to_string(), r#"$["user[email]"]["a b"]["x\"y"]["9"]"#);
    }

    #[test]
    fn push_step_matches_display() {
        let mut out = String::from("$");
        push_step(&mut out, Step::Key("users"));
        push_step(&mut out, Step::Index(0));
        push_step(&mut out, Step::Key("created at"));
        assert_eq!(out, r#"$.users[0]["created at"]"#);
    }
}
