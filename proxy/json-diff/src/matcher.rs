//! Matching several [`PathPattern`]s at once while a document is walked: each pattern
//! is a tiny NFA over path steps, and the live states of all patterns are kept in one
//! stack buffer, so that a walk allocates nothing once the buffer has grown.

use std::ops::Range;

use crate::path::Step;
use crate::pattern::{Pat, PathPattern};

/// A position in one pattern of a [`PatternSet`]: the state of a tiny NFA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct State {
    pattern: u32,
    pos: u32,
}

/// Several patterns matched together while walking a document.
///
/// States live in one caller-owned stack buffer: a node's states are a range of it, its
/// child's states are pushed after them and truncated away after the child is done, so
/// a walk allocates nothing once the buffer has grown. States stay sorted by pattern
/// index, so matches come out in the order the patterns were added.
#[derive(Clone, Debug, Default)]
pub(crate) struct PatternSet {
    patterns: Vec<Vec<Pat>>,
}

impl PatternSet {
    /// Adds a pattern; returns its index.
    pub(crate) fn add(&mut self, pattern: &PathPattern) -> usize {
        self.patterns.push(pattern.segments.clone());
        self.patterns.len() - 1
    }

    /// Pushes the states of the root onto `buf`.
    pub(crate) fn start(&self, buf: &mut Vec<State>) -> Range<usize> {
        let start = buf.len();
        for pattern in 0..self.patterns.len() {
            self.push_closed(buf, start, pattern as u32, 0);
        }
        start..buf.len()
    }

    /// Pushes the states of the child reached from the states `cur` by `step`.
    pub(crate) fn step(
        &self,
        buf: &mut Vec<State>,
        cur: Range<usize>,
        step: Step<'_>,
    ) -> Range<usize> {
        let start = buf.len();
        for i in cur {
            let State { pattern, pos } = buf[i];
            let Some(pat) = self.patterns[pattern as usize].get(pos as usize) else {
                continue;
            };
            let next = match (pat, step) {
                (Pat::AnyDepth, _) => pos,
                (Pat::AnyKey, Step::Key(_)) | (Pat::AnyIndex, Step::Index(_)) => pos + 1,
                (Pat::Key(want), Step::Key(key)) if want == key => pos + 1,
                (Pat::Index(want), Step::Index(index)) if *want == index => pos + 1,
                _ => continue,
            };
            self.push_closed(buf, start, pattern, next);
        }
        start..buf.len()
    }

    /// Indexes of the patterns that match the location whose states are `states`.
    pub(crate) fn matched<'s>(&'s self, states: &'s [State]) -> impl Iterator<Item = usize> + 's {
        states
            .iter()
            .filter(|s| s.pos as usize == self.patterns[s.pattern as usize].len())
            .map(|s| s.pattern as usize)
    }

    /// Pushes a state and, past a `**`, the state after it (which may match nothing).
    fn push_closed(&self, buf: &mut Vec<State>, start: usize, pattern: u32, pos: u32) {
        let state = State { pattern, pos };
        if buf[start..].contains(&state) {
            return;
        }
        buf.push(state);
        if self.patterns[pattern as usize].get(pos as usize) == Some(&Pat::AnyDepth) {
            self.push_closed(buf, start, pattern, pos + 1);
        }
    }
}
