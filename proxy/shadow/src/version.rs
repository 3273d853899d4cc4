//! The version of the records an answer shows: the newest value of a version field
//! (the member API's `updated_at`) in the body, as the object itself, its `user`, or
//! the elements of a list hold it. Two answers that differ while the legacy's shows a
//! newer version than the new side's are two moments of one record, not two renderings
//! of it: the new side has not caught up yet (the sync's lag).

use serde_json::Value;

/// The newest value of `field` in a JSON answer's records; `None` when it holds none.
/// Values are compared as strings (the contract's timestamps are fixed-width ISO 8601,
/// so their order is their text's).
pub fn newest_version(body: &[u8], field: &str) -> Option<String> {
    if field.is_empty() {
        return None;
    }
    let value: Value = serde_json::from_slice(body).ok()?;
    let of = |v: &Value| -> Option<String> {
        let direct = v.get(field).and_then(Value::as_str);
        let nested = v
            .get("user")
            .and_then(|u| u.get(field))
            .and_then(Value::as_str);
        direct.max(nested).map(str::to_owned)
    };
    match &value {
        Value::Array(items) => items.iter().filter_map(of).max(),
        Value::Object(map) => {
            let lists = map
                .values()
                .filter_map(Value::as_array)
                .flat_map(|items| items.iter().filter_map(of));
            of(&value).into_iter().chain(lists).max()
        }
        _ => None,
    }
}

/// Whether the legacy's answer shows a newer version of its records than the new
/// side's.
pub fn new_side_behind(legacy: &[u8], new: &[u8], field: &str) -> bool {
    match (newest_version(legacy, field), newest_version(new, field)) {
        (Some(l), Some(n)) => l > n,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_version_of_a_member_a_session_or_a_list() {
        let f = "updated_at";
        let at = |b: &str| newest_version(b.as_bytes(), f);
        assert_eq!(
            at(r#"{"id":1,"updated_at":"2026-12-04T21:00:00.001Z"}"#).as_deref(),
            Some("2026-12-04T21:00:00.001Z")
        );
        assert_eq!(
            at(r#"{"token":"t","user":{"updated_at":"b"}}"#).as_deref(),
            Some("b")
        );
        assert_eq!(
            at(r#"[{"updated_at":"a"},{"updated_at":"c"},{}]"#).as_deref(),
            Some("c")
        );
        assert_eq!(
            at(r#"{"users":[{"updated_at":"a"},{"updated_at":"d"}]}"#).as_deref(),
            Some("d")
        );
        assert_eq!(at(r#"{"errors":{}}"#), None);
        assert_eq!(at("not json"), None);
        assert_eq!(newest_version(br#"{"updated_at":"a"}"#, ""), None);
        assert!(new_side_behind(
            br#"{"updated_at":"b"}"#,
            br#"{"updated_at":"a"}"#,
            f
        ));
        assert!(!new_side_behind(
            br#"{"updated_at":"a"}"#,
            br#"{"updated_at":"b"}"#,
            f
        ));
        assert!(!new_side_behind(
            br#"{"updated_at":"a"}"#,
            br#"{"updated_at":"a"}"#,
            f
        ));
        assert!(!new_side_behind(br#"{"updated_at":"b"}"#, b"{}", f));
    }
}
