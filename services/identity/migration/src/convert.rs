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

/// What the identity service's member must become so that it is what the legacy's row
/// says (the legacy is the system of record until cutover); `None` when they agree.
/// `current` is the member as it is and the legacy digest last imported for it: while
/// the legacy's digest is still that one, the identity service's own (possibly
/// re-hashed) password hash is kept.
pub fn target_for(
    u: &LegacyUser,
    current: Option<(&MemberRow, Option<&str>)>,
) -> Option<MemberRow> {
    let mut target = legacy_to_member(u);
    if let Some((member, known_digest)) = current {
        if known_digest == Some(u.password_digest.as_str()) {
            target.password_hash = member.password_hash.clone();
        }
        if *member == target {
            return None;
        }
    }
    Some(target)
}

/// Applies one legacy row (see [`target_for`]). Returns the member as it now is, and
/// whether it changed.
pub async fn apply_legacy_user(
    tx: &mut Tx,
    u: &LegacyUser,
) -> Result<(MemberRow, bool), StoreError> {
    let current = tx.member_by_id(u.id).await?;
    let known = match &current {
        Some(_) => tx.legacy_digest(u.id).await?,
        None => None,
    };
    match target_for(u, current.as_ref().map(|m| (m, known.as_deref()))) {
        None => Ok((current.unwrap_or_else(|| legacy_to_member(u)), false)),
        Some(target) => {
            tx.replace_member(&target, &u.password_digest).await?;
            Ok((target, true))
        }
    }
}
