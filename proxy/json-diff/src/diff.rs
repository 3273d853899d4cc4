//! The comparison: a [`Differ`] holds compiled rules (ignored locations, arrays whose
//! order does not matter, whether key order counts) and walks two documents side by side.
//!
//! Arrays are compared element by element. When two arrays of the same length differ
//! only by the order of their elements, one [`DiffKind::ArrayOrder`] is reported instead
//! of a change per element; arrays of different lengths report their lengths and then
//! the differences of their common prefix. Arrays matched by an `unordered` rule are
//! compared as multisets: only elements without a counterpart are reported.

use std::borrow::Cow;
use std::ops::Range;

use serde_json::{Map, Value};

use crate::difference::{Diff, DiffKind, Difference};
use crate::matcher::{PatternSet, State};
use crate::path::{JsonPath, Step};
use crate::pattern::{PathPattern, PatternError};

mod arrays;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tag {
    Ignore,
    Unordered,
}

/// A compiled comparison; build it once and use it for any number of documents.
/// It is `Send + Sync`. Without key-order checking, equal documents are recognised
/// without allocating; otherwise a comparison allocates two small stacks (the current
/// path and rule states, reused across the walk) and what it reports.
#[derive(Clone, Debug)]
pub struct Differ {
    rules: PatternSet,
    tags: Vec<Tag>,
    key_order: bool,
    max_differences: usize,
}

impl Default for Differ {
    fn default() -> Self {
        Self {
            rules: PatternSet::default(),
            tags: Vec::new(),
            key_order: false,
            max_differences: usize::MAX,
        }
    }
}

impl Differ {
    /// A comparison without rules: any difference is reported, key order is not.
    pub fn new() -> Self {
        Self::default()
    }

    /// Never reports anything at or below locations matching `pattern`.
    pub fn ignore(self, pattern: &str) -> Result<Self, PatternError> {
        Ok(self.ignore_pattern(&PathPattern::parse(pattern)?))
    }

    /// Like [`Differ::ignore`], with a parsed pattern.
    pub fn ignore_pattern(mut self, pattern: &PathPattern) -> Self {
        self.rules.add(pattern);
        self.tags.push(Tag::Ignore);
        self
    }

    /// Compares arrays at locations matching `pattern` as multisets.
    pub fn unordered(self, pattern: &str) -> Result<Self, PatternError> {
        Ok(self.unordered_pattern(&PathPattern::parse(pattern)?))
    }

    /// Like [`Differ::unordered`], with a parsed pattern.
    pub fn unordered_pattern(mut self, pattern: &PathPattern) -> Self {
        self.rules.add(pattern);
        self.tags.push(Tag::Unordered);
        self
    }

    /// Also reports objects whose common keys come in another order
    /// ([`DiffKind::KeyOrder`]), for contracts where serialisation order is observable.
    pub fn key_order(mut self, check: bool) -> Self {
        self.key_order = check;
        self
    }

    /// Stops recording after `max` differences ([`Diff::is_truncated`] tells).
    pub fn max_differences(mut self, max: usize) -> Self {
        self.max_differences = max;
        self
    }

    /// The differences between `left` and `right`.
    pub fn diff<'a>(&self, left: &'a Value, right: &'a Value) -> Diff<'a> {
        if !self.key_order && left == right {
            return Diff::default();
        }
        let mut walk = Walk::new(self, true);
        walk.root(left, right);
        Diff {
            differences: walk.out,
            truncated: walk.truncated,
        }
    }

    /// Whether `diff(left, right)` would be empty, stopping at the first difference and
    /// allocating nothing for the answer.
    pub fn equal(&self, left: &Value, right: &Value) -> bool {
        if !self.key_order && left == right {
            return true;
        }
        !Walk::new(self, false).root(left, right)
    }
}

/// The state of one comparison.
struct Walk<'d, 'a> {
    differ: &'d Differ,
    /// The current location, borrowing keys from the documents.
    steps: Vec<Step<'a>>,
    /// Rule states of the current location and its ancestors (see `PatternSet`).
    states: Vec<State>,
    out: Vec<Difference<'a>>,
    /// False while only probing for equality: nothing is recorded and the walk stops
    /// at the first difference.
    record: bool,
    truncated: bool,
}

impl<'d, 'a> Walk<'d, 'a> {
    fn new(differ: &'d Differ, record: bool) -> Self {
        Self {
            differ,
            steps: Vec::new(),
            states: Vec::new(),
            out: Vec::new(),
            record,
            truncated: false,
        }
    }

    /// Compares two documents; true if they differ.
    fn root(&mut self, left: &'a Value, right: &'a Value) -> bool {
        let cur = self.differ.rules.start(&mut self.states);
        !self.tagged(cur.clone(), Tag::Ignore) && self.node(cur, left, right)
    }

    fn tagged(&self, cur: Range<usize>, tag: Tag) -> bool {
        self.differ
            .rules
            .matched(&self.states[cur])
            .any(|i| self.differ.tags[i] == tag)
    }

    /// True once nothing more will be recorded, so the walk can unwind.
    fn stop(&self) -> bool {
        !self.record || self.truncated
    }

    fn report(&mut self, kind: DiffKind<'a>) {
        if !self.record {
            return;
        }
        if self.out.len() >= self.differ.max_differences {
            self.truncated = true;
            return;
        }
        let path = JsonPath::from_steps(&self.steps);
        self.out.push(Difference { path, kind });
    }

    /// Compares two values at the location whose rule states are `cur`; true if they differ.
    fn node(&mut self, cur: Range<usize>, left: &'a Value, right: &'a Value) -> bool {
        match (left, right) {
            (Value::Object(l), Value::Object(r)) => self.objects(cur, l, r),
            (Value::Array(l), Value::Array(r)) => self.arrays(cur, l, r),
            _ if left == right => false,
            _ => {
                let (left, right) = (Cow::Borrowed(left), Cow::Borrowed(right));
                if same_type(&left, &right) {
                    self.report(DiffKind::Changed { left, right });
                } else {
                    self.report(DiffKind::TypeMismatch { left, right });
                }
                true
            }
        }
    }

    /// Compares the child at `step` (present on one side or both); true if it differs.
    fn child(
        &mut self,
        cur: Range<usize>,
        step: Step<'a>,
        left: Option<&'a Value>,
        right: Option<&'a Value>,
    ) -> bool {
        let next = self.differ.rules.step(&mut self.states, cur, step);
        let differs = if self.tagged(next.clone(), Tag::Ignore) {
            false
        } else {
            self.steps.push(step);
            let differs = match (left, right) {
                (Some(l), Some(r)) => self.node(next.clone(), l, r),
                (Some(l), None) => {
                    self.report(DiffKind::Missing(Cow::Borrowed(l)));
                    true
                }
                (None, Some(r)) => {
                    self.report(DiffKind::Extra(Cow::Borrowed(r)));
                    true
                }
                (None, None) => false,
            };
            self.steps.pop();
            differs
        };
        self.states.truncate(next.start);
        differs
    }

    /// Like `child` for two array elements, recording nothing: are they different?
    fn probe(
        &mut self,
        cur: Range<usize>,
        index: usize,
        left: &'a Value,
        right: &'a Value,
    ) -> bool {
        let record = std::mem::replace(&mut self.record, false);
        let differs = self.child(cur, Step::Index(index), Some(left), Some(right));
        self.record = record;
        differs
    }

    fn objects(
        &mut self,
        cur: Range<usize>,
        left: &'a Map<String, Value>,
        right: &'a Map<String, Value>,
    ) -> bool {
        let mut differs = false;
        for (key, l) in left {
            if self.child(cur.clone(), Step::Key(key), Some(l), right.get(key)) {
                differs = true;
                if self.stop() {
                    return true;
                }
            }
        }
        for (key, r) in right.iter().filter(|(key, _)| !left.contains_key(*key)) {
            if self.child(cur.clone(), Step::Key(key), None, Some(r)) {
                differs = true;
                if self.stop() {
                    return true;
                }
            }
        }
        if self.differ.key_order && self.key_order_differs(cur, left, right) {
            differs = true;
        }
        differs
    }

    /// Reports a `KeyOrder` if the keys both objects have (and that are not ignored)
    /// come in another order.
    fn key_order_differs(
        &mut self,
        cur: Range<usize>,
        left: &'a Map<String, Value>,
        right: &'a Map<String, Value>,
    ) -> bool {
        let common_left = left.keys().filter(|k| right.contains_key(*k));
        let common_right = right.keys().filter(|k| left.contains_key(*k));
        if common_left.eq(common_right) {
            return false;
        }
        let mut kept =
            |map: &'a Map<String, Value>, other: &Map<String, Value>| -> Vec<Cow<'a, str>> {
                map.keys()
                    .filter(|k| other.contains_key(*k))
                    .filter(|k| {
                        let next =
                            self.differ
                                .rules
                                .step(&mut self.states, cur.clone(), Step::Key(k));
                        let ignored = self.tagged(next.clone(), Tag::Ignore);
                        self.states.truncate(next.start);
                        !ignored
                    })
                    .map(|k| Cow::Borrowed(k.as_str()))
                    .collect()
            };
        let (l, r) = (kept(left, right), kept(right, left));
        if l == r {
            return false;
        }
        self.report(DiffKind::KeyOrder { left: l, right: r });
        true
    }
}

fn same_type(left: &Value, right: &Value) -> bool {
    std::mem::discriminant(left) == std::mem::discriminant(right)
}
