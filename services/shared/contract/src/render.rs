//! The member and session objects as the legacy renders them, with ActiveSupport's JSON
//! escaping (`<`, `>`, `&`, U+2028 and U+2029 as `\uXXXX`).

use serde_json::{Value, json};

use crate::time::Timestamp;

/// A member as stored, ready to render in either view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberView {
    pub id: i64,
    pub email: String,
    pub nickname: String,
    pub phone_number: Option<String>,
    pub profile_image_url: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl MemberView {
    /// The private view, for the member themself.
    pub fn private_json(&self) -> Value {
        json!({
            "id": self.id,
            "email": self.email,
            "nickname": self.nickname,
            "phone_number": self.phone_number,
            "profile_image_url": self.profile_image_url,
            "created_at": self.created_at.to_json_string(),
            "updated_at": self.updated_at.to_json_string(),
        })
    }

    /// The public view, for anyone.
    pub fn public_json(&self) -> Value {
        json!({
            "id": self.id,
            "nickname": self.nickname,
            "profile_image_url": self.profile_image_url,
            "created_at": self.created_at.to_json_string(),
        })
    }
}

/// A session object: the token pair, the access token's expiry and the private member.
pub fn session_json(
    token: &str,
    refresh_token: &str,
    expires_at: Timestamp,
    member: &MemberView,
) -> Value {
    json!({
        "token": token,
        "refresh_token": refresh_token,
        "expires_at": expires_at.to_json_string(),
        "user": member.private_json(),
    })
}

/// `{"users":[public, ...]}`.
pub fn users_json(members: &[MemberView]) -> Value {
    json!({ "users": members.iter().map(MemberView::public_json).collect::<Vec<_>>() })
}

/// Serialises a response body as ActiveSupport does.
pub fn json_response_body(value: &Value) -> String {
    let raw = value.to_string();
    if !raw.contains(['<', '>', '&', '\u{2028}', '\u{2029}']) {
        return raw;
    }
    let mut out = String::with_capacity(raw.len() + 16);
    for c in raw.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_documented_shapes() {
        let m = MemberView {
            id: 2,
            email: "bob@example.com".into(),
            nickname: "bob".into(),
            phone_number: Some("+821012345678".into()),
            profile_image_url: None,
            created_at: Timestamp::parse_db_text("2026-11-26 07:17:26.992507").unwrap(),
            updated_at: Timestamp::parse_db_text("2026-11-26 07:17:26.992507").unwrap(),
        };
        assert_eq!(
            json_response_body(&m.private_json()),
            r#"{"id":2,"email":"bob@example.com","nickname":"bob","phone_number":"+821012345678","profile_image_url":null,"created_at":"2026-11-26T07:17:26.992Z","updated_at":"2026-11-26T07:17:26.992Z"}"#
        );
        assert_eq!(
            json_response_body(&m.public_json()),
            r#"{"id":2,"nickname":"bob","profile_image_url":null,"created_at":"2026-11-26T07:17:26.992Z"}"#
        );
    }

    #[test]
    fn escapes_like_active_support() {
        assert_eq!(
            json_response_body(&json!({"n": "<a&b>\u{2028}"})),
            r#"{"n":"\u003ca\u0026b\u003e\u2028"}"#
        );
    }
}
