//! Members seen to agree with the legacy, kept in memory while migrating so that the
//! access check of every request reads only the legacy's row, not ours beside it.
//!
//! An entry is the legacy's row as it was read and our member as it was read before it,
//! when the two agreed (`target_for` found nothing to bring over). While the legacy's
//! row is byte for byte that one, our member is that one: while migrating every write of
//! a member goes through both databases (the legacy's row, with its `updated_at`, moves
//! with each), and the sync only brings the legacy's row over. So a request whose legacy
//! row equals the entry's is answered with the entry's member, and any other row goes
//! the whole way (read ours, compare, bring over). Entries live at most `MAX_AGE`; the
//! cache holds at most `MAX_ENTRIES` and starts afresh beyond.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use identity_store::MemberRow;
use legacy_db::LegacyUser;

const MAX_AGE: Duration = Duration::from_secs(30);
const MAX_ENTRIES: usize = 100_000;

#[derive(Default)]
pub(crate) struct AgreedMembers {
    entries: RwLock<HashMap<i64, (LegacyUser, MemberRow, Instant)>>,
}

impl AgreedMembers {
    /// Our member, if it was seen to agree with exactly this legacy row.
    pub(crate) fn get(&self, user: &LegacyUser) -> Option<MemberRow> {
        let g = self.entries.read().ok()?;
        let (seen, member, at) = g.get(&user.id)?;
        (seen == user && at.elapsed() < MAX_AGE).then(|| member.clone())
    }

    /// Notes that `member` (read before `user`) agrees with the legacy's `user`.
    pub(crate) fn keep(&self, user: &LegacyUser, member: &MemberRow) {
        let Ok(mut g) = self.entries.write() else {
            return;
        };
        if g.len() >= MAX_ENTRIES {
            g.clear();
        }
        g.insert(user.id, (user.clone(), member.clone(), Instant::now()));
    }

    /// Forgets everything (the legacy link changed).
    pub(crate) fn clear(&self) {
        if let Ok(mut g) = self.entries.write() {
            g.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use member_contract::Timestamp;

    fn user(nickname: &str, updated: i64) -> LegacyUser {
        LegacyUser {
            id: 7,
            email: "a@example.com".into(),
            password_digest: "$2a$04$digest".into(),
            nickname: nickname.into(),
            phone_number: None,
            profile_image_url: None,
            deleted_at: None,
            created_at: Timestamp::from_micros(1),
            updated_at: Timestamp::from_micros(updated),
        }
    }

    #[test]
    fn only_the_very_row_seen_finds_the_member() {
        let agreed = AgreedMembers::default();
        let member = identity_migration::legacy_to_member(&user("kim", 5));
        agreed.keep(&user("kim", 5), &member);
        assert_eq!(agreed.get(&user("kim", 5)), Some(member));
        assert_eq!(agreed.get(&user("kim", 6)), None);
        assert_eq!(agreed.get(&user("lee", 5)), None);
        agreed.clear();
        assert_eq!(agreed.get(&user("kim", 5)), None);
    }
}
