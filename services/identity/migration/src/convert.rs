//! A legacy `users` row as an identity member: the same id, the bcrypt digest kept (it
//! is re-hashed to argon2id at the member's next log-in), times in microseconds.

use identity_store::MemberRow;
use legacy_db::LegacyUser;

pub fn legacy_to_member(u: &LegacyUser) -> MemberRow {
    MemberRow {
        id: u.id,
        email: u.email.clone(),
        password_hash: u.password_digest.clone(),
        nickname: u.nickname.clone(),
        phone_number: u.phone_number.clone(),
        profile_image_url: u.profile_image_url.clone(),
        created_at: u.created_at.as_micros(),
        updated_at: u.updated_at.as_micros(),
        deleted_at: u.deleted_at.map(|t| t.as_micros()),
    }
}
