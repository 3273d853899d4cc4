//! The version of the records an answer shows: the newest value of its version fields
//! (the member API's `updated_at`, or `created_at` in a view without it) in the body,
//! as the object itself, its `user`, or the elements of a list hold them. Two answers
//! that differ while the legacy's shows a newer version than the new side's are two
//! moments of one record, not two renderings of it: the new side has not caught up yet
//! (the sync's lag). So are a record the legacy answers and the new side does not find
//! yet.

use serde_json::Value;

use crate::Exchange;

/// The newest value of `fields` in a JSON answer's records; `None` when it holds none.
/// Values are compared as strings (the contract's timestamps are fixed-width ISO 8601,
/// so their order is their text's).
pub fn newest_version<F: AsRef<str>>(body: &[u8], fields: &[F]) -> Option<String> {
    if fields.iter().all(|f| f.as_ref().is_empty()) {
        return None;
    }
    let value: Value = serde_json::from_slice(body).ok()?;
    let of = |v: &Value| -> Option<String> {
        let user = v.get("user");
        fields
            .iter()
            .flat_map(|f| {
                let f = f.as_ref();
                [v.get(f), user.and_then(|u| u.get(f))]
            })
            .filter_map(|found| found.and_then(Value::as_str))
            .max()
            .map(str::to_owned)
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

/// The version of the records the new side had not caught up with: the legacy's
/// newest, when its answer shows a newer one than the new side's, or when the new side
/// did not find (`404`) what the legacy answered (`2xx`) with a version. `None` when the
/// new side is not behind by what the answers show.
pub fn lagging_version<F: AsRef<str>>(
    legacy: &Exchange,
    new: &Exchange,
    fields: &[F],
) -> Option<String> {
    let l = newest_version(&legacy.body, fields)?;
    match newest_version(&new.body, fields) {
        Some(n) => (l > n).then_some(l),
        None => ((200..300).contains(&legacy.status) && new.status == 404).then_some(l),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_version_of_a_member_a_session_or_a_list() {
        let f = ["updated_at"];
        let at = |b: &str| newest_version(b.as_bytes(), &f);
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
        assert_eq!(newest_version(br#"{"updated_at":"a"}"#, &[""]), None);
        assert_eq!(newest_version::<&str>(br#"{"updated_at":"a"}"#, &[]), None);
        // A view without the first field: the next one.
        let both = ["updated_at", "created_at"];
        let at_both = |b: &str| newest_version(b.as_bytes(), &both);
        assert_eq!(
            at_both(r#"{"id":2,"created_at":"c"}"#).as_deref(),
            Some("c")
        );
        assert_eq!(
            at_both(r#"{"created_at":"c","updated_at":"d"}"#).as_deref(),
            Some("d")
        );
        assert_eq!(
            at_both(r#"{"users":[{"created_at":"c"},{"created_at":"b","updated_at":"e"}]}"#)
                .as_deref(),
            Some("e")
        );
        let answer = |status: u16, body: &'static str| Exchange {
            status,
            headers: Vec::new(),
            body: bytes::Bytes::from_static(body.as_bytes()),
            truncated: false,
        };
        let behind = |l: &Exchange, n: &Exchange| lagging_version(l, n, &f);
        let (a, b) = (
            answer(200, r#"{"updated_at":"a"}"#),
            answer(200, r#"{"updated_at":"b"}"#),
        );
        assert_eq!(behind(&b, &a).as_deref(), Some("b"));
        assert_eq!(behind(&a, &b), None);
        assert_eq!(behind(&a, &a), None);
        // A record the new side has not brought over yet.
        let not_found = answer(404, r#"{"error":"Not found"}"#);
        assert_eq!(behind(&b, &not_found).as_deref(), Some("b"));
        // Any other answer without a version is a difference, not a lag.
        assert_eq!(behind(&b, &answer(200, "{}")), None);
        assert_eq!(
            behind(&b, &answer(401, r#"{"error":"Unauthorized"}"#)),
            None
        );
        assert_eq!(
            behind(&answer(404, r#"{"updated_at":"b"}"#), &not_found),
            None
        );
        assert_eq!(behind(&not_found, &a), None);
    }
}
