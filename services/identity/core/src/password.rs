//! The password change: the current password checked (and throttled like a log-in: a
//! stolen access token must not allow unlimited guessing), the new one stored, every
//! other session ended, on both sides while migrating.

use identity_passwords::Verdict;
use member_contract::forms::PasswordChangeForm;
use member_contract::{Errors, Field, Rule, Timestamp};

use crate::sessions::Principal;
use crate::{CoreError, Identity, RequestCtx};

impl Identity {
    /// Changes the acting member's password and ends every other session.
    pub async fn change_password(
        &self,
        who: &Principal,
        form: &PasswordChangeForm,
        ctx: &RequestCtx,
    ) -> Result<(), CoreError> {
        let keys = self.throttle_keys(&who.member.email, ctx.client.as_deref());
        self.check_throttle(&keys, Some(who.member.id), ctx.client.as_deref())
            .await?;
        let current = form.current_password.as_deref().unwrap_or("");
        let verdict = self
            .check_password(current, Some(&who.member.password_hash), ctx.dry_run)
            .await?;
        if verdict == Verdict::Mismatch {
            if !ctx.dry_run {
                self.record_failure(&keys).await?;
            }
            let mut errors = Errors::new();
            errors.add(Field::CurrentPassword, Rule::Invalid);
            return Err(CoreError::Validation(errors));
        }
        // `has_secure_password` ignores an empty new password: the digest stays, the
        // request succeeds and the other sessions still end, as in the legacy. A dry run
        // validates the new password and hashes nothing.
        let (hash, legacy_digest) = match form.password.as_deref() {
            Some("") => (None, None),
            _ => {
                let password = form.validate_new()?;
                if ctx.dry_run {
                    (None, None)
                } else {
                    let hash = self.inner.hasher.hash(password.expose()).await?;
                    let digest = match self.legacy() {
                        Some(link) => Some(
                            self.inner
                                .hasher
                                .legacy_bcrypt(password.expose(), link.bcrypt_cost)
                                .await?,
                        ),
                        None => None,
                    };
                    (Some(hash), digest)
                }
            }
        };
        let now = self.now().as_micros();
        let id = who.member.id;
        let mut legacy = self.legacy_writes(ctx.dry_run).await?;
        if let Some(digest) = &legacy_digest {
            legacy
                .update_digest(id, digest, Timestamp::from_micros(now))
                .await?;
        }
        legacy
            .end_user_sessions(id, who.session.legacy_session_id)
            .await?;
        let mut tx = self.inner.store.begin().await?;
        if let Some(hash) = &hash {
            tx.set_password_hash(id, hash, now).await?;
        }
        if let Some(digest) = &legacy_digest {
            tx.set_legacy_digest(id, digest).await?;
        }
        tx.end_member_sessions(id, Some(&who.session.id), "password changed", now)
            .await?;
        self.finish_both(legacy, tx, ctx.dry_run).await
    }
}
