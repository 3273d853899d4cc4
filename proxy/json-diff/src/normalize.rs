//! Normalisation: rewriting what legitimately differs between two answers (ids, tokens,
//! timestamps) into stable placeholders before they are compared, while checking that
//! the rewritten values have the expected format.
//!
//! A [`Normalizer`] is a list of rules, each a [path pattern](crate::PathPattern) and an
//! [`Action`], compiled once. At each location of a document the rules whose patterns
//! match are tried in the order they were added: an action that handles the value ends
//! the rules for that location and its subtree; one that passes (for instance a
//! conditional replacement whose format did not match, or a hook that only edited the
//! value) lets the next rule try, and then the walk goes on into the value's children.
//! Subtrees that no pattern can reach are skipped.
//!
//! Hooks receive a caller-provided context (`C`) so that a rule can keep state across
//! documents (e.g. numbering ids by first appearance) while the normaliser itself stays
//! immutable and shareable.

use std::fmt;
use std::ops::Range;

use regex::Regex;
use serde_json::Value;

use crate::matcher::{PatternSet, State};
use crate::path::{Step, push_step};
use crate::pattern::{PathPattern, PatternError};

/// What a hook did with a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// The value is final: no further rule applies to it or below it.
    Handled,
    /// Let the following rules, then the value's children, be considered.
    Pass,
}

/// A custom rule: gets the context, the location (rendered as `$.users[0].id`) and the
/// value, which it may rewrite.
pub type Hook<C> = Box<dyn Fn(&mut C, &str, &mut Value) -> Flow + Send + Sync>;

/// What a rule does at a matching location.
pub enum Action<C = ()> {
    /// Replace the value by this placeholder.
    Replace(Value),
    /// Remove the member or element (the root becomes `null`).
    Remove,
    /// Check a string against `format`: a match becomes `"<label>"`, anything else
    /// `"<label:INVALID …>"` with the offending value as JSON, so that a format
    /// violation is itself visible as a difference. See [`checked`].
    Check { format: Regex, label: String },
    /// Replace strings matching `format` by `placeholder`; pass anything else on.
    ReplaceIfMatches { format: Regex, placeholder: Value },
    /// A custom rule.
    Hook(Hook<C>),
}

impl<C> fmt::Debug for Action<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Replace(v) => f.debug_tuple("Replace").field(v).finish(),
            Action::Remove => f.write_str("Remove"),
            Action::Check { format, label } => f
                .debug_struct("Check")
                .field("format", format)
                .field("label", label)
                .finish(),
            Action::ReplaceIfMatches {
                format,
                placeholder,
            } => f
                .debug_struct("ReplaceIfMatches")
                .field("format", format)
                .field("placeholder", placeholder)
                .finish(),
            Action::Hook(_) => f.write_str("Hook(..)"),
        }
    }
}

/// The placeholder for a value checked against `format`: `"<label>"` if it is a string
/// matching the format, else `"<label:INVALID …>"` (the value as JSON in place of `…`).
pub fn checked(value: &Value, format: &Regex, label: &str) -> Value {
    match value {
        Value::String(s) if format.is_match(s) => Value::String(format!("<{label}>")),
        other => Value::String(format!("<{label}:INVALID {other}>")),
    }
}

/// A compiled list of normalisation rules; see the module documentation.
pub struct Normalizer<C = ()> {
    rules: PatternSet,
    actions: Vec<Action<C>>,
}

impl<C> fmt::Debug for Normalizer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Normalizer")
            .field("actions", &self.actions)
            .finish()
    }
}

impl<C> Default for Normalizer<C> {
    fn default() -> Self {
        Self {
            rules: PatternSet::default(),
            actions: Vec::new(),
        }
    }
}

impl<C> Normalizer<C> {
    /// A normaliser without rules (it changes nothing).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a rule.
    pub fn rule(self, pattern: &str, action: Action<C>) -> Result<Self, PatternError> {
        Ok(self.rule_pattern(&PathPattern::parse(pattern)?, action))
    }

    /// Adds a rule with a parsed pattern.
    pub fn rule_pattern(mut self, pattern: &PathPattern, action: Action<C>) -> Self {
        self.rules.add(pattern);
        self.actions.push(action);
        self
    }

    /// Adds [`Action::Replace`].
    pub fn replace(
        self,
        pattern: &str,
        placeholder: impl Into<Value>,
    ) -> Result<Self, PatternError> {
        self.rule(pattern, Action::Replace(placeholder.into()))
    }

    /// Adds [`Action::Remove`].
    pub fn remove(self, pattern: &str) -> Result<Self, PatternError> {
        self.rule(pattern, Action::Remove)
    }

    /// Adds [`Action::Check`].
    pub fn check(self, pattern: &str, format: Regex, label: &str) -> Result<Self, PatternError> {
        self.rule(
            pattern,
            Action::Check {
                format,
                label: label.to_owned(),
            },
        )
    }

    /// Adds [`Action::ReplaceIfMatches`].
    pub fn replace_if_matches(
        self,
        pattern: &str,
        format: Regex,
        placeholder: impl Into<Value>,
    ) -> Result<Self, PatternError> {
        self.rule(
            pattern,
            Action::ReplaceIfMatches {
                format,
                placeholder: placeholder.into(),
            },
        )
    }

    /// Adds [`Action::Hook`].
    pub fn hook(
        self,
        pattern: &str,
        hook: impl Fn(&mut C, &str, &mut Value) -> Flow + Send + Sync + 'static,
    ) -> Result<Self, PatternError> {
        self.rule(pattern, Action::Hook(Box::new(hook)))
    }

    /// Rewrites `value` in place.
    pub fn apply(&self, value: &mut Value, ctx: &mut C) {
        let mut walker = Walker {
            normalizer: self,
            path: String::from("$"),
            states: Vec::new(),
        };
        let cur = self.rules.start(&mut walker.states);
        if walker.node(cur, value, ctx) {
            *value = Value::Null;
        }
    }
}

struct Walker<'n, C> {
    normalizer: &'n Normalizer<C>,
    /// The current location, rendered; extended and truncated as the walk goes.
    path: String,
    states: Vec<State>,
}

/// What to do with a value after its rules ran.
enum Outcome {
    Done,
    Remove,
    Descend,
}

impl<C> Walker<'_, C> {
    /// Normalises `value`; true if it is to be removed from its parent.
    fn node(&mut self, cur: Range<usize>, value: &mut Value, ctx: &mut C) -> bool {
        match self.run_rules(cur.clone(), value, ctx) {
            Outcome::Done => false,
            Outcome::Remove => true,
            Outcome::Descend => {
                self.children(cur, value, ctx);
                false
            }
        }
    }

    fn run_rules(&self, cur: Range<usize>, value: &mut Value, ctx: &mut C) -> Outcome {
        for rule in self.normalizer.rules.matched(&self.states[cur]) {
            match &self.normalizer.actions[rule] {
                Action::Replace(placeholder) => {
                    *value = placeholder.clone();
                    return Outcome::Done;
                }
                Action::Remove => return Outcome::Remove,
                Action::Check { format, label } => {
                    *value = checked(value, format, label);
                    return Outcome::Done;
                }
                Action::ReplaceIfMatches {
                    format,
                    placeholder,
                } => {
                    if value.as_str().is_some_and(|s| format.is_match(s)) {
                        *value = placeholder.clone();
                        return Outcome::Done;
                    }
                }
                Action::Hook(hook) => {
                    if hook(ctx, &self.path, value) == Flow::Handled {
                        return Outcome::Done;
                    }
                }
            }
        }
        Outcome::Descend
    }

    fn children(&mut self, cur: Range<usize>, value: &mut Value, ctx: &mut C) {
        match value {
            Value::Object(map) => {
                let mut removed: Vec<String> = Vec::new();
                for (key, child) in map.iter_mut() {
                    if self.child(cur.clone(), Step::Key(key), child, ctx) {
                        removed.push(key.clone());
                    }
                }
                if !removed.is_empty() {
                    map.retain(|key, _| !removed.contains(key));
                }
            }
            Value::Array(items) => {
                let mut removed: Vec<usize> = Vec::new();
                for (index, child) in items.iter_mut().enumerate() {
                    if self.child(cur.clone(), Step::Index(index), child, ctx) {
                        removed.push(index);
                    }
                }
                if !removed.is_empty() {
                    let mut index = 0;
                    items.retain(|_| {
                        index += 1;
                        !removed.contains(&(index - 1))
                    });
                }
            }
            _ => {}
        }
    }

    fn child(&mut self, cur: Range<usize>, step: Step<'_>, value: &mut Value, ctx: &mut C) -> bool {
        let next = self.normalizer.rules.step(&mut self.states, cur, step);
        // No pattern can match here or below: nothing to do in this subtree.
        if next.is_empty() {
            return false;
        }
        let len = self.path.len();
        push_step(&mut self.path, step);
        let remove = self.node(next.clone(), value, ctx);
        self.path.truncate(len);
        self.states.truncate(next.start);
        remove
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn timestamp() -> Regex {
        Regex::new(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$").unwrap()
    }

    #[test]
    fn replace_remove_and_check() {
        let n: Normalizer = Normalizer::new()
            .replace("$..token", "<token>")
            .unwrap()
            .remove("$.request_id")
            .unwrap()
            .check("$..created_at", timestamp(), "timestamp")
            .unwrap();
        let mut doc = json!({
            "token": "abc", "request_id": "r1",
            "user": {"created_at": "2026-11-26T07:17:26.992Z"},
            "users": [{"created_at": "2026-11-26 07:17:26"}, {"created_at": 5}]
        });
        n.apply(&mut doc, &mut ());
        assert_eq!(
            doc,
            json!({
                "token": "<token>",
                "user": {"created_at": "<timestamp>"},
                "users": [
                    {"created_at": "<timestamp:INVALID \"2026-11-26 07:17:26\">"},
                    {"created_at": "<timestamp:INVALID 5>"}
                ]
            })
        );
    }

    #[test]
    fn first_handling_rule_wins_and_passing_rules_fall_through() {
        let uuid =
            Regex::new(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$").unwrap();
        let n: Normalizer = Normalizer::new()
            .replace_if_matches("$.**", uuid, "<uuid>")
            .unwrap()
            .replace("$.a", "first")
            .unwrap()
            .replace("$.a", "second")
            .unwrap();
        let mut doc = json!({"a": 1, "b": ["123e4567-e89b-12d3-a456-426614174000", "x"]});
        n.apply(&mut doc, &mut ());
        assert_eq!(doc, json!({"a": "first", "b": ["<uuid>", "x"]}));
    }

    #[test]
    fn hooks_keep_state_in_the_context() {
        let n: Normalizer<Vec<String>> = Normalizer::new()
            .hook("$..id", |seen: &mut Vec<String>, path, value| {
                seen.push(path.to_owned());
                *value = json!(format!("<id:{}>", seen.len()));
                Flow::Handled
            })
            .unwrap();
        let mut seen = Vec::new();
        let mut doc = json!({"id": 7, "users": [{"id": 8}, {"id": 9}]});
        n.apply(&mut doc, &mut seen);
        assert_eq!(
            doc,
            json!({"id": "<id:1>", "users": [{"id": "<id:2>"}, {"id": "<id:3>"}]})
        );
        assert_eq!(seen, ["$.id", "$.users[0].id", "$.users[1].id"]);
    }

    #[test]
    fn removes_array_elements_and_root() {
        let n: Normalizer = Normalizer::new().remove("$.list[1]").unwrap();
        let mut doc = json!({"list": [1, 2, 3]});
        n.apply(&mut doc, &mut ());
        assert_eq!(doc, json!({"list": [1, 3]}));
        let root: Normalizer = Normalizer::new().remove("$").unwrap();
        root.apply(&mut doc, &mut ());
        assert_eq!(doc, Value::Null);
    }
}
