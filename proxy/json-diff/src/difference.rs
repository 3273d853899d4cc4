//! The differences a comparison reports: where (a [`JsonPath`]) and what ([`DiffKind`]).
//!
//! Values are borrowed from the compared documents (`Cow::Borrowed`) so that a
//! comparison copies nothing; [`Diff::into_owned`] detaches a result from them.

use std::borrow::Cow;

use serde_json::Value;

use crate::path::JsonPath;

/// What differs at one location; "left" is the first document given, "right" the second.
#[derive(Clone, Debug, PartialEq)]
pub enum DiffKind<'a> {
    /// The location exists on the left only (missing in the right).
    Missing(Cow<'a, Value>),
    /// The location exists on the right only (extra in the right).
    Extra(Cow<'a, Value>),
    /// Two values of the same JSON type that differ (scalars only; containers are
    /// compared member by member).
    Changed {
        left: Cow<'a, Value>,
        right: Cow<'a, Value>,
    },
    /// Two values of different JSON types (`"5"` and `5`, `null` and `{}`).
    TypeMismatch {
        left: Cow<'a, Value>,
        right: Cow<'a, Value>,
    },
    /// Two arrays of different lengths; their common prefix is compared element by
    /// element and reported separately.
    ArrayLength { left: usize, right: usize },
    /// Two arrays holding the same elements in another order.
    ArrayOrder,
    /// Two objects with the same keys (among those compared) in another order; only
    /// reported when the comparison checks key order.
    KeyOrder {
        left: Vec<Cow<'a, str>>,
        right: Vec<Cow<'a, str>>,
    },
}

impl DiffKind<'_> {
    /// A short stable name, suitable as a metric label.
    pub fn name(&self) -> &'static str {
        match self {
            DiffKind::Missing(_) => "missing",
            DiffKind::Extra(_) => "extra",
            DiffKind::Changed { .. } => "changed",
            DiffKind::TypeMismatch { .. } => "type_mismatch",
            DiffKind::ArrayLength { .. } => "array_length",
            DiffKind::ArrayOrder => "array_order",
            DiffKind::KeyOrder { .. } => "key_order",
        }
    }
}

/// One difference: a location and what differs there.
#[derive(Clone, Debug, PartialEq)]
pub struct Difference<'a> {
    /// Where, e.g. `$.users[2].id`.
    pub path: JsonPath,
    /// What.
    pub kind: DiffKind<'a>,
}

impl<'a> Difference<'a> {
    /// The same difference seen from the other side: what `diff(b, a)` reports where
    /// `diff(a, b)` reported `self`.
    pub fn swapped(self) -> Self {
        let kind = match self.kind {
            DiffKind::Missing(v) => DiffKind::Extra(v),
            DiffKind::Extra(v) => DiffKind::Missing(v),
            DiffKind::Changed { left, right } => DiffKind::Changed {
                left: right,
                right: left,
            },
            DiffKind::TypeMismatch { left, right } => DiffKind::TypeMismatch {
                left: right,
                right: left,
            },
            DiffKind::ArrayLength { left, right } => DiffKind::ArrayLength {
                left: right,
                right: left,
            },
            DiffKind::ArrayOrder => DiffKind::ArrayOrder,
            DiffKind::KeyOrder { left, right } => DiffKind::KeyOrder {
                left: right,
                right: left,
            },
        };
        Self {
            path: self.path,
            kind,
        }
    }

    /// A copy that no longer borrows from the compared documents.
    pub fn into_owned(self) -> Difference<'static> {
        fn own(v: Cow<'_, Value>) -> Cow<'static, Value> {
            Cow::Owned(v.into_owned())
        }
        fn own_keys(keys: Vec<Cow<'_, str>>) -> Vec<Cow<'static, str>> {
            keys.into_iter()
                .map(|k| Cow::Owned(k.into_owned()))
                .collect()
        }
        let kind = match self.kind {
            DiffKind::Missing(v) => DiffKind::Missing(own(v)),
            DiffKind::Extra(v) => DiffKind::Extra(own(v)),
            DiffKind::Changed { left, right } => DiffKind::Changed {
                left: own(left),
                right: own(right),
            },
            DiffKind::TypeMismatch { left, right } => DiffKind::TypeMismatch {
                left: own(left),
                right: own(right),
            },
            DiffKind::ArrayLength { left, right } => DiffKind::ArrayLength { left, right },
            DiffKind::ArrayOrder => DiffKind::ArrayOrder,
            DiffKind::KeyOrder { left, right } => DiffKind::KeyOrder {
                left: own_keys(left),
                right: own_keys(right),
            },
        };
        Difference {
            path: self.path,
            kind,
        }
    }
}

/// The result of one comparison: its differences in document order (left keys first,
/// then keys only on the right), and whether the list was cut at the configured maximum.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Diff<'a> {
    pub(crate) differences: Vec<Difference<'a>>,
    pub(crate) truncated: bool,
}

impl<'a> Diff<'a> {
    /// A result holding these differences.
    pub fn from_differences(differences: Vec<Difference<'a>>) -> Self {
        Self {
            differences,
            truncated: false,
        }
    }

    /// True when the two documents are equal under the comparison's rules.
    pub fn is_empty(&self) -> bool {
        self.differences.is_empty()
    }

    /// How many differences were recorded.
    pub fn len(&self) -> usize {
        self.differences.len()
    }

    /// True when more differences existed than the configured maximum.
    pub fn is_truncated(&self) -> bool {
        self.truncated
    }

    /// The differences, in document order.
    pub fn iter(&self) -> std::slice::Iter<'_, Difference<'a>> {
        self.differences.iter()
    }

    /// The differences, in document order.
    pub fn as_slice(&self) -> &[Difference<'a>] {
        &self.differences
    }

    /// The differences as a vector.
    pub fn into_vec(self) -> Vec<Difference<'a>> {
        self.differences
    }

    /// A copy that no longer borrows from the compared documents.
    pub fn into_owned(self) -> Diff<'static> {
        Diff {
            differences: self
                .differences
                .into_iter()
                .map(Difference::into_owned)
                .collect(),
            truncated: self.truncated,
        }
    }
}

impl<'a> IntoIterator for Diff<'a> {
    type Item = Difference<'a>;
    type IntoIter = std::vec::IntoIter<Difference<'a>>;
    fn into_iter(self) -> Self::IntoIter {
        self.differences.into_iter()
    }
}

impl<'d, 'a> IntoIterator for &'d Diff<'a> {
    type Item = &'d Difference<'a>;
    type IntoIter = std::slice::Iter<'d, Difference<'a>>;
    fn into_iter(self) -> Self::IntoIter {
        self.differences.iter()
    }
}
