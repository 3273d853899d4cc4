//! Array comparison: element by element, one order difference for a permutation,
//! lengths and common prefix for arrays of different lengths, and multiset comparison
//! for arrays that an `unordered` rule covers.

use std::ops::Range;

use serde_json::Value;

use super::{Tag, Walk};
use crate::difference::DiffKind;
use crate::path::Step;

impl<'a> Walk<'_, 'a> {
    /// Compares two arrays at the location whose rule states are `cur`; true if they differ.
    pub(super) fn arrays(
        &mut self,
        cur: Range<usize>,
        left: &'a [Value],
        right: &'a [Value],
    ) -> bool {
        if self.tagged(cur.clone(), Tag::Unordered) {
            return self.multisets(cur, left, right);
        }
        if left.len() != right.len() {
            self.report(DiffKind::ArrayLength {
                left: left.len(),
                right: right.len(),
            });
            for (i, (l, r)) in left.iter().zip(right).enumerate() {
                if self.stop() {
                    break;
                }
                self.child(cur.clone(), Step::Index(i), Some(l), Some(r));
            }
            return true;
        }
        let Some(first) =
            (0..left.len()).find(|&i| self.probe(cur.clone(), i, &left[i], &right[i]))
        else {
            return false;
        };
        if !self.record {
            return true;
        }
        if self.is_permutation(cur.clone(), &left[first..], &right[first..], first) {
            self.report(DiffKind::ArrayOrder);
            return true;
        }
        for (i, (l, r)) in left.iter().zip(right).enumerate().skip(first) {
            if self.child(cur.clone(), Step::Index(i), Some(l), Some(r)) && self.stop() {
                break;
            }
        }
        true
    }

    /// Whether `right` holds the elements of `left` (equal under the rules) in some order.
    /// `offset` is the index of the slices' first element in the arrays.
    fn is_permutation(
        &mut self,
        cur: Range<usize>,
        left: &'a [Value],
        right: &'a [Value],
        offset: usize,
    ) -> bool {
        let mut used = vec![false; right.len()];
        left.iter()
            .enumerate()
            .all(|(i, l)| self.find_match(cur.clone(), offset + i, i, l, right, &mut used))
    }

    /// Looks for an unused element of `right` equal (under the rules) to `left`, trying
    /// position `at` first (arrays are often nearly in order), and marks it used.
    /// `index` is the left element's index in its array, for the rules.
    fn find_match(
        &mut self,
        cur: Range<usize>,
        index: usize,
        at: usize,
        left: &'a Value,
        right: &'a [Value],
        used: &mut [bool],
    ) -> bool {
        let candidates = std::iter::once(at)
            .filter(|&j| j < right.len())
            .chain((0..right.len()).filter(|&j| j != at));
        for j in candidates {
            if !used[j] && !self.probe(cur.clone(), index, left, &right[j]) {
                used[j] = true;
                return true;
            }
        }
        false
    }

    /// Compares arrays as multisets: reports left elements without a counterpart as
    /// missing and right elements without one as extra.
    fn multisets(&mut self, cur: Range<usize>, left: &'a [Value], right: &'a [Value]) -> bool {
        let mut used = vec![false; right.len()];
        let mut unmatched = Vec::new();
        for (i, l) in left.iter().enumerate() {
            if !self.find_match(cur.clone(), i, i, l, right, &mut used) {
                unmatched.push(i);
            }
        }
        let mut differs = false;
        for i in unmatched {
            differs |= self.child(cur.clone(), Step::Index(i), Some(&left[i]), None);
            if differs && self.stop() {
                return true;
            }
        }
        for (j, r) in right.iter().enumerate().filter(|(j, _)| !used[*j]) {
            differs |= self.child(cur.clone(), Step::Index(j), None, Some(r));
            if differs && self.stop() {
                return true;
            }
        }
        differs
    }
}
