//! A legacy `users` row as an identity member: the same id, the bcrypt digest kept (it
//! is re-hashed to argon2id at the member's next log-in), times in microseconds.

use identity_store::{MemberRow, StoreError, Tx};
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

/// Makes the identity service's member what the legacy's row says (the legacy is the
/// system of record until cutover), unless they already agree. While the legacy's
/// digest is the one last seen, the identity service's own (possibly re-hashed)
/// password hash is kept. Returns the member as it now is, and whether it changed.
pub async fn apply_legacy_user(
    tx: &mut Tx,
    u: &LegacyUser,
) -> Result<(MemberRow, bool), StoreError> {
    let mut target = legacy_to_member(u);
    if let Some(current) = tx.member_by_id(u.id).await? {
        if tx.legacy_digest(u.id).await?.as_deref() == Some(u.password_digest.as_str()) {
            target.password_hash = current.password_hash.clone();
        }
        if current == target {
            return Ok((current, false));
        }
    }
    tx.replace_member(&target, &u.password_digest).await?;
    Ok((target, true))
}
