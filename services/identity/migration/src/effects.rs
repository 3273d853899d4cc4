//! Write effects: what one write left of a member, read from both databases at once.
//!
//! The migration proxy asks after every write it routed (see the identity service's
//! `/internal/write-effects`): once the write has reached the other side (the
//! write-through at once, the sync within its lag), the member must be the same on both
//! sides, and as the request asked on each: the fields a profile change set, the
//! scrubbed row and no session left after a withdrawal, the new password taking on
//! both sides and no other session after a password change, no session after a
//! log-out. A write answered alike by both sides
//! can still have done different things; this is where it shows.
//!
//! Differences are named, never valued (`phone_number`, `legacy:phone_number`,
//! `identity:sessions`): a name without a prefix differs between the sides; a prefixed
//! one is on that side not what the request asked.

use std::collections::HashSet;

use identity_passwords::{Hasher, PasswordError, Verdict};
use identity_store::{MemberRow, Store};
use legacy_db::LegacyDb;
use member_contract::Timestamp;
use member_contract::fields::Password;
use member_contract::forms::ProfileChanges;

use crate::verify::read_pair;
use crate::{MigrationError, legacy_to_member};

/// What the write asked for, beyond the two sides agreeing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expected {
    /// A sign-up: the row as its form had it (the email normalised).
    SignedUp {
        email: String,
        nickname: String,
        phone_number: Option<String>,
        profile_image_url: Option<String>,
    },
    /// A profile change: the fields it set.
    Profile(ProfileChanges),
    /// A password change: the new password taking on both sides (`None`: an empty new
    /// password, which leaves the digest as it was), every session but the current one
    /// ended.
    PasswordChanged(Option<Password>),
    /// A withdrawal: the row scrubbed, every session ended.
    Withdrawn,
    /// A log-out: the current session ended.
    LoggedOut,
    /// Nothing beyond agreement (a log-in, a refresh).
    Agreement,
}

impl Expected {
    /// Whether the write makes, ends or replaces sessions (their check reads both
    /// sessions tables: a sign-up or a profile change is spared it).
    pub fn touches_sessions(&self) -> bool {
        !matches!(self, Expected::SignedUp { .. } | Expected::Profile(_))
    }

    /// Whether the check needs the session the write was made in (its bearer's).
    pub fn needs_current_session(&self) -> bool {
        matches!(
            self,
            Expected::PasswordChanged(_) | Expected::Withdrawn | Expected::LoggedOut
        )
    }
}

/// The session the write was made in, as its bearer named it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Current {
    /// The identity service's session (a JWT's `sid`).
    pub session_id: Option<String>,
    /// The legacy's session row (a legacy token's, or the one linked to `session_id`).
    pub legacy_session_id: Option<i64>,
}

/// What the two databases say of one write.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Effects {
    /// The differences, by name; empty when the write's effect agrees.
    pub differences: Vec<String>,
    /// The member's row is not as the write left it (written again since, or not yet
    /// brought over): only the agreement of the two sides is judged, not the request's
    /// fields.
    pub superseded: bool,
    /// The identity service's row is older than the legacy's, or not there yet: for a
    /// write the legacy served, the sync has not brought it over (its lag, not a
    /// difference of the write).
    pub behind: bool,
}

/// When the write was made, as the proxy saw it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Written {
    /// When the request came in at the proxy (microseconds since the epoch, its clock).
    pub received_at: i64,
    /// The member's `updated_at` in the primary's answer, as rendered there (a sign-up,
    /// a profile change), if it had one.
    pub updated_at: Option<String>,
    /// When the primary's answer came back to the proxy (microseconds since the epoch,
    /// its clock): a row written later than that was written again since.
    pub answered_at: Option<i64>,
}

/// The differences between what the write should have left and what each side holds.
/// Nothing another write did is held against it, even one at the same instant:
/// sessions created after it came in are not ones it should have ended (a log-in
/// racing a password change), and a row whose `updated_at` is not the one the write
/// answered with was written again (or not yet brought over: asked again) and is judged
/// by the two sides' agreement only. A new password is checked against both sides'
/// digests (on `hasher`'s free capacity only: never at a log-in's expense) unless a
/// row was written after the write was answered (another change may have replaced it).
pub async fn write_effects(
    store: &Store,
    legacy: &LegacyDb,
    hasher: &Hasher,
    member_id: i64,
    expected: &Expected,
    current: &Current,
    written: &Written,
) -> Result<Effects, MigrationError> {
    let (user, member, fields) = read_pair(store, legacy, member_id).await?;
    let mut out: Vec<String> = fields.into_iter().map(String::from).collect();
    if user.is_none() && member.is_none() {
        out.push("missing on both sides".into());
    }
    let legacy_row = user.as_ref().map(legacy_to_member);
    let superseded = written.updated_at.as_deref().is_some_and(|answered| {
        [legacy_row.as_ref(), member.as_ref()]
            .into_iter()
            .flatten()
            .any(|row| Timestamp::from_micros(row.updated_at).to_json_string() != answered)
    });
    if !superseded {
        if let Some(row) = &legacy_row {
            expect_row(&mut out, "legacy", row, expected);
        }
        if let Some(m) = &member {
            expect_row(&mut out, "identity", m, expected);
        }
    }
    if let Expected::PasswordChanged(Some(new)) = expected {
        let rows = [
            ("legacy", legacy_row.as_ref()),
            ("identity", member.as_ref()),
        ];
        let written_since = rows.iter().any(|(_, row)| {
            row.is_some_and(|r| written.answered_at.is_none_or(|at| r.updated_at > at))
        });
        if !written_since {
            new_password_takes(&mut out, hasher, new, &rows).await;
        }
    }
    if expected.touches_sessions() {
        let legacy_rows = legacy
            .session_ids_of_user(
                legacy.pool(),
                member_id,
                Timestamp::from_micros(written.received_at),
            )
            .await?;
        let ours = store
            .sessions_of_member(member_id, written.received_at)
            .await?;
        sessions(&mut out, &legacy_rows, &ours, expected, current);
    }
    let behind = match (&legacy_row, &member) {
        (Some(l), Some(m)) => m.updated_at < l.updated_at,
        (Some(_), None) => true,
        _ => false,
    };
    Ok(Effects {
        differences: out,
        superseded,
        behind,
    })
}

/// Whether the new password verifies against each side's digest (one verification
/// when both hold the same one); a side where it does not is named `SIDE:password`.
/// Nothing is judged when the hasher has no slot free at once.
async fn new_password_takes(
    out: &mut Vec<String>,
    hasher: &Hasher,
    new: &Password,
    rows: &[(&str, Option<&MemberRow>)],
) {
    let mut verdicts: Vec<(&str, &str, Verdict)> = Vec::new();
    for (side, row) in rows {
        let Some(row) = row.filter(|r| r.deleted_at.is_none()) else {
            continue;
        };
        let digest = row.password_hash.as_str();
        let earlier = verdicts.iter().find(|(_, d, _)| *d == digest);
        let verdict = match earlier {
            Some((_, _, v)) => *v,
            None => match hasher.verify_if_free(new.expose(), Some(digest)).await {
                Ok(v) => v,
                Err(PasswordError::Busy) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "a new password's digest not checked");
                    return;
                }
            },
        };
        verdicts.push((side, digest, verdict));
    }
    for (side, _, verdict) in verdicts {
        if verdict == Verdict::Mismatch {
            out.push(format!("{side}:password"));
        }
    }
}

/// The row of one side against the request.
fn expect_row(out: &mut Vec<String>, side: &str, row: &MemberRow, expected: &Expected) {
    let mut wrong = |field: &str, ok: bool| {
        if !ok {
            out.push(format!("{side}:{field}"));
        }
    };
    match expected {
        Expected::SignedUp {
            email,
            nickname,
            phone_number,
            profile_image_url,
        } => {
            wrong("email", &row.email == email);
            wrong("nickname", &row.nickname == nickname);
            wrong("phone_number", &row.phone_number == phone_number);
            wrong(
                "profile_image_url",
                &row.profile_image_url == profile_image_url,
            );
            wrong("deleted_at", row.deleted_at.is_none());
        }
        Expected::Profile(changes) => {
            if let Some(n) = &changes.nickname {
                wrong("nickname", row.nickname == n.as_str());
            }
            if let Some(p) = &changes.phone_number {
                wrong(
                    "phone_number",
                    row.phone_number.as_deref() == p.as_ref().map(|p| p.as_str()),
                );
            }
            if let Some(u) = &changes.profile_image_url {
                wrong(
                    "profile_image_url",
                    row.profile_image_url.as_deref() == u.as_ref().map(|u| u.as_str()),
                );
            }
        }
        Expected::Withdrawn => {
            wrong("deleted_at", row.deleted_at.is_some());
            wrong("email", row.email == format!("deleted-{}@invalid", row.id));
            wrong("nickname", row.nickname == "(deleted)");
            wrong("phone_number", row.phone_number.is_none());
            wrong("profile_image_url", row.profile_image_url.is_none());
        }
        Expected::PasswordChanged(_) | Expected::LoggedOut | Expected::Agreement => {}
    }
}

/// The member's sessions on both sides. While migrating the legacy's row is the
/// session's truth (the identity service asks for it on every use): a session is still
/// live when its legacy row is there, or, never linked to one, while it is live here.
/// One of ours ended while its legacy row lives would come back on a rollback.
fn sessions(
    out: &mut Vec<String>,
    legacy_rows: &HashSet<i64>,
    ours: &[(String, Option<i64>, bool)],
    expected: &Expected,
    current: &Current,
) {
    let current_legacy = current.legacy_session_id.or_else(|| {
        let id = current.session_id.as_deref()?;
        ours.iter()
            .find(|(s, _, _)| s == id)
            .and_then(|(_, l, _)| *l)
    });
    if ours
        .iter()
        .any(|(_, link, live)| !live && link.is_some_and(|l| legacy_rows.contains(&l)))
    {
        out.push("sessions ended in identity only".into());
    }
    let is_current = |id: &str, link: Option<i64>| {
        current.session_id.as_deref() == Some(id) || (link.is_some() && link == current_legacy)
    };
    // Which sessions the write should have ended: all, all but the current, the current.
    let ends: fn(bool) -> bool = match expected {
        Expected::Withdrawn => |_| true,
        Expected::PasswordChanged(_) => |current| !current,
        Expected::LoggedOut => |current| current,
        _ => return,
    };
    let legacy_left = legacy_rows.iter().any(|l| ends(current_legacy == Some(*l)));
    let ours_left = ours.iter().any(|(id, link, live)| {
        let still = match link {
            Some(l) => legacy_rows.contains(l),
            None => *live,
        };
        still && ends(is_current(id, *link))
    });
    if legacy_left {
        out.push("legacy:sessions".into());
    }
    if ours_left {
        out.push("identity:sessions".into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ours(rows: &[(&str, Option<i64>, bool)]) -> Vec<(String, Option<i64>, bool)> {
        rows.iter()
            .map(|(a, b, c)| (a.to_string(), *b, *c))
            .collect()
    }

    fn check(
        legacy: &[i64],
        mine: &[(&str, Option<i64>, bool)],
        expected: Expected,
        current: Current,
    ) -> Vec<String> {
        let mut out = Vec::new();
        let legacy: HashSet<i64> = legacy.iter().copied().collect();
        sessions(&mut out, &legacy, &ours(mine), &expected, &current);
        out
    }

    #[test]
    fn a_password_change_must_leave_only_the_current_session() {
        let current = Current {
            session_id: Some("a".into()),
            legacy_session_id: None,
        };
        // Done right: the others' legacy rows gone (ours may wait for the cutover).
        assert!(
            check(
                &[1],
                &[("a", Some(1), true), ("b", Some(2), true)],
                Expected::PasswordChanged(None),
                current.clone()
            )
            .is_empty()
        );
        // The other session's legacy row left alive: it still works, on both sides.
        assert_eq!(
            check(
                &[1, 2],
                &[("a", Some(1), true), ("b", Some(2), true)],
                Expected::PasswordChanged(None),
                current.clone()
            ),
            ["legacy:sessions", "identity:sessions"]
        );
        // A legacy token's session (never linked here) left alive.
        assert_eq!(
            check(
                &[1, 7],
                &[("a", Some(1), true)],
                Expected::PasswordChanged(None),
                current
            ),
            ["legacy:sessions"]
        );
    }

    #[test]
    fn a_session_ended_here_only_would_come_back_on_a_rollback() {
        assert_eq!(
            check(
                &[1],
                &[("a", Some(1), false)],
                Expected::Agreement,
                Current::default()
            ),
            ["sessions ended in identity only"]
        );
    }

    #[test]
    fn a_log_out_ends_the_current_session_and_no_other() {
        let current = Current {
            session_id: None,
            legacy_session_id: Some(5),
        };
        assert!(check(&[6], &[], Expected::LoggedOut, current.clone()).is_empty());
        assert_eq!(
            check(&[5, 6], &[], Expected::LoggedOut, current),
            ["legacy:sessions"]
        );
    }
}
