//! Path patterns with wildcards (`$.users[*].created_at`, `$..updated_at`), parsed once
//! and matched while a document is walked, without building any path string.
//!
//! Syntax, after the leading `$` (the document itself):
//!
//! | segment | matches |
//! | --- | --- |
//! | `.name` | the object member `name` (any characters but `. [ ] * "` and spaces) |
//! | `["any key"]` | the object member with that key (JSON string syntax) |
//! | `[3]` | the array element at index 3 |
//! | `.*` | any one object member |
//! | `[*]` | any one array element |
//! | `.**` | zero or more steps of any kind (members or elements) |
//! | `..name` | shorthand for `.**.name`: `name` at any depth; `..*`, `..[0]` likewise |
//!
//! A pattern matches a location, not its descendants; rules that act on a location
//! (ignore, replace) cover its whole subtree by not looking further.

use std::ops::Range;

use serde_json::Value;

use crate::matcher::{PatternSet, State};
use crate::path::{PathSegment, Step};

/// A pattern that failed to parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid JSON path pattern {pattern:?} at byte {at}: {reason}")]
pub struct PatternError {
    /// The pattern as given.
    pub pattern: String,
    /// Byte offset of the problem.
    pub at: usize,
    /// What was expected there.
    pub reason: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Pat {
    Key(String),
    Index(usize),
    AnyKey,
    AnyIndex,
    AnyDepth,
}

/// A compiled path pattern; see the module documentation for the syntax.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathPattern {
    source: String,
    pub(crate) segments: Vec<Pat>,
}

impl PathPattern {
    /// Parses a pattern such as `$.users[*].id` or `$..updated_at`.
    pub fn parse(source: &str) -> Result<Self, PatternError> {
        Parser { source, at: 0 }.pattern()
    }

    /// The pattern as it was written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// True when the pattern has no wildcard and so names exactly one location.
    pub fn is_exact(&self) -> bool {
        self.segments
            .iter()
            .all(|s| matches!(s, Pat::Key(_) | Pat::Index(_)))
    }

    /// Whether the location `segments` (outermost first) matches this pattern.
    pub fn matches(&self, segments: &[PathSegment]) -> bool {
        let mut set = PatternSet::default();
        set.add(self);
        let mut buf = Vec::new();
        let mut cur = set.start(&mut buf);
        for segment in segments {
            let step = match segment {
                PathSegment::Key(key) => Step::Key(key),
                PathSegment::Index(index) => Step::Index(*index),
            };
            cur = set.step(&mut buf, cur, step);
        }
        set.matched(&buf[cur]).next().is_some()
    }

    /// Every value of `root` at a matching location, in document order
    /// (a match's descendants are not searched further).
    pub fn select<'v>(&self, root: &'v Value) -> Vec<&'v Value> {
        fn walk<'v>(
            set: &PatternSet,
            buf: &mut Vec<State>,
            cur: Range<usize>,
            value: &'v Value,
            out: &mut Vec<&'v Value>,
        ) {
            if cur.is_empty() {
                return;
            }
            if set.matched(&buf[cur.clone()]).next().is_some() {
                out.push(value);
                return;
            }
            let mut visit = |step: Step<'_>, child: &'v Value, buf: &mut Vec<State>| {
                let next = set.step(buf, cur.clone(), step);
                walk(set, buf, next.clone(), child, out);
                buf.truncate(next.start);
            };
            match value {
                Value::Object(map) => map.iter().for_each(|(k, v)| visit(Step::Key(k), v, buf)),
                Value::Array(items) => items
                    .iter()
                    .enumerate()
                    .for_each(|(i, v)| visit(Step::Index(i), v, buf)),
                _ => {}
            }
        }
        let mut set = PatternSet::default();
        set.add(self);
        let mut buf = Vec::new();
        let cur = set.start(&mut buf);
        let mut out = Vec::new();
        walk(&set, &mut buf, cur, root, &mut out);
        out
    }
}

impl std::str::FromStr for PathPattern {
    type Err = PatternError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl std::fmt::Display for PathPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.source)
    }
}

struct Parser<'s> {
    source: &'s str,
    at: usize,
}

impl Parser<'_> {
    fn fail<T>(&self, reason: &'static str) -> Result<T, PatternError> {
        Err(PatternError {
            pattern: self.source.to_owned(),
            at: self.at,
            reason,
        })
    }

    fn rest(&self) -> &str {
        &self.source[self.at..]
    }

    fn eat(&mut self, prefix: &str) -> bool {
        let found = self.rest().starts_with(prefix);
        if found {
            self.at += prefix.len();
        }
        found
    }

    fn pattern(mut self) -> Result<PathPattern, PatternError> {
        if !self.eat("$") {
            return self.fail("a pattern starts with '$'");
        }
        let mut segments = Vec::new();
        while !self.rest().is_empty() {
            if self.eat("..") {
                segments.push(Pat::AnyDepth);
                if self.rest().is_empty() || self.rest().starts_with('[') {
                    continue;
                }
                segments.push(self.member()?);
            } else if self.eat(".") {
                segments.push(self.member()?);
            } else if self.eat("[") {
                segments.push(self.bracket()?);
            } else {
                return self.fail("expected '.', '..' or '['");
            }
        }
        segments.dedup_by(|a, b| *a == Pat::AnyDepth && *b == Pat::AnyDepth);
        Ok(PathPattern {
            source: self.source.to_owned(),
            segments,
        })
    }

    /// What follows a dot: `**`, `*` or a name.
    fn member(&mut self) -> Result<Pat, PatternError> {
        if self.eat("**") {
            return Ok(Pat::AnyDepth);
        }
        if self.eat("*") {
            return Ok(Pat::AnyKey);
        }
        let len = self
            .rest()
            .find(|c: char| matches!(c, '.' | '[' | ']' | '*' | '"') || c.is_whitespace())
            .unwrap_or(self.rest().len());
        if len == 0 {
            return self.fail("expected a name, '*' or '**' after '.'");
        }
        let name = self.rest()[..len].to_owned();
        self.at += len;
        Ok(Pat::Key(name))
    }

    /// What follows `[`: `*]`, digits and `]`, or a JSON string and `]`.
    fn bracket(&mut self) -> Result<Pat, PatternError> {
        let pat = if self.eat("*") {
            Pat::AnyIndex
        } else if self.rest().starts_with('"') {
            let end = match string_end(self.rest()) {
                Some(end) => end,
                None => return self.fail("unterminated string"),
            };
            let key: String = match serde_json::from_str(&self.rest()[..end]) {
                Ok(key) => key,
                Err(_) => return self.fail("invalid string"),
            };
            self.at += end;
            Pat::Key(key)
        } else {
            let len = self.rest().find(|c: char| !c.is_ascii_digit()).unwrap_or(0);
            match self.rest()[..len].parse() {
                Ok(index) => {
                    self.at += len;
                    Pat::Index(index)
                }
                Err(_) => return self.fail("expected an index, '*' or a quoted key after '['"),
            }
        };
        if !self.eat("]") {
            return self.fail("expected ']'");
        }
        Ok(pat)
    }
}

/// Byte length of the JSON string literal at the start of `s`, quotes included.
fn string_end(s: &str) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in s.char_indices().skip(1) {
        match (escaped, c) {
            (true, _) => escaped = false,
            (false, '\\') => escaped = true,
            (false, '"') => return Some(i + 1),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::path::JsonPath;
    use serde_json::json;

    fn matches(pattern: &str, path: JsonPath) -> bool {
        PathPattern::parse(pattern)
            .unwrap()
            .matches(path.segments())
    }

    #[test]
    fn exact_keys_and_indexes() {
        let p = JsonPath::root().key("users").index(2).key("id");
        assert!(matches("$.users[2].id", p.clone()));
        assert!(!matches("$.users[1].id", p.clone()));
        assert!(!matches("$.users[2]", p.clone()));
        assert!(matches(r#"$["users"][2]["id"]"#, p));
        assert!(matches("$", JsonPath::root()));
    }

    #[test]
    fn wildcards() {
        let p = JsonPath::root().key("users").index(2).key("created_at");
        assert!(matches("$.users[*].created_at", p.clone()));
        assert!(matches("$.*[*].*", p.clone()));
        assert!(!matches("$.*.*.created_at", p.clone()));
        assert!(matches("$..created_at", p.clone()));
        assert!(matches("$.**.created_at", p.clone()));
        assert!(matches("$.users.**", p.clone()));
        assert!(matches("$.**", JsonPath::root()));
        assert!(matches("$..", p.clone()));
        assert!(!matches("$..updated_at", p));
        assert!(matches("$..id", JsonPath::root().key("id")));
        assert!(matches("$..[0]", JsonPath::root().key("a").index(0)));
    }

    #[test]
    fn rejects_malformed_patterns() {
        for bad in [
            "", "users", "$.", "$[", "$[x]", "$[1", "$.a b", r#"$["a]"#, "$.a]",
        ] {
            let err = PathPattern::parse(bad).unwrap_err();
            assert_eq!(err.pattern, bad);
        }
        assert!(!PathPattern::parse("$.users[*]").unwrap().is_exact());
        assert!(PathPattern::parse("$.user.id").unwrap().is_exact());
    }

    #[test]
    fn select_finds_matches_in_document_order() {
        let doc = json!({"users": [{"id": 1, "x": {"id": 9}}, {"id": 2}], "id": 0});
        let all: Vec<_> = PathPattern::parse("$..id").unwrap().select(&doc);
        assert_eq!(all, vec![&json!(1), &json!(9), &json!(2), &json!(0)]);
        let one = PathPattern::parse("$.users[1].id").unwrap().select(&doc);
        assert_eq!(one, vec![&json!(2)]);
        assert!(
            PathPattern::parse("$.nope")
                .unwrap()
                .select(&doc)
                .is_empty()
        );
    }
}
