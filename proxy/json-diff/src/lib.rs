//! Field-level comparison of JSON documents, shared by the parity suite (transcripts of
//! the legacy and the new service) and the migration proxy's shadow comparison.
//!
//! - [`Differ`] compares two [`serde_json::Value`]s and reports each [`Difference`] with
//!   its location (`$.users[2].id`) and kind: missing in the right, extra in the right,
//!   changed, type mismatch, array length, array order (the same elements in another
//!   order count once, not as a change per element) and, when asked, key order.
//! - Rules are [`PathPattern`]s with wildcards (`$.users[*].created_at`,
//!   `$..updated_at`), compiled once and matched while walking, with no path built
//!   unless a difference is reported.
//! - [`Normalizer`] rewrites values that differ legitimately (ids, tokens, timestamps)
//!   into placeholders before comparing, checking their format on the way.
//! - A [`Diff`] displays one line per difference; [`RenderMode::Masked`] shows only
//!   types and sizes, for logs and samples where values may be personal data.
//!
//! ```
//! use json_diff::{Differ, RenderMode};
//! use serde_json::json;
//!
//! let differ = Differ::new().ignore("$..updated_at").unwrap();
//! let legacy = json!({"user": {"nickname": "bob", "updated_at": "2026-01-01T00:00:00.000Z"}});
//! let new = json!({"user": {"nickname": "bobby", "updated_at": "2026-01-02T00:00:00.000Z"}});
//! let diff = differ.diff(&legacy, &new);
//! assert_eq!(diff.to_string(), r#"~ $.user.nickname: "bob" != "bobby""#);
//! assert_eq!(diff.render(RenderMode::Masked).to_string(), "~ $.user.nickname: string(3) != string(5)");
//! ```

mod diff;
mod difference;
mod matcher;
mod normalize;
mod path;
mod pattern;
mod render;

pub use diff::Differ;
pub use difference::{Diff, DiffKind, Difference};
pub use normalize::{Action, Flow, Hook, Normalizer, checked};
pub use path::{JsonPath, PathSegment};
pub use pattern::{PathPattern, PatternError};
pub use render::{RenderMode, Rendered, type_name};

use serde_json::Value;

/// The differences between two documents, without any rule.
pub fn diff<'a>(left: &'a Value, right: &'a Value) -> Diff<'a> {
    Differ::new().diff(left, right)
}

#[cfg(test)]
mod tests;
