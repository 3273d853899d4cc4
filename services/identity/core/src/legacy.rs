//! Write-through while migrating: every write this service accepts is applied to the
//! legacy database too, in the legacy's own format (a bcrypt digest at the legacy's cost,
//! the withdrawal scrub, `sessions` rows with the tokens in clear), in a transaction
//! committed before the identity service's own, before the client gets its answer. If
//! the legacy write fails, the request fails and neither side keeps anything. Sessions
//! exist on both sides: a session ended on one side is refused on the other.
//!
//! [`LegacyWrites`] is the legacy side of one write flow, one type whatever the mode:
//! - standalone (not migrating, or after the cutover): every step does nothing;
//! - migrating: one legacy transaction, opened before the identity service's own, and
//!   every flow takes its legacy locks before its identity locks. One order across the
//!   two databases everywhere, so that no two flows can wait on each other in a cycle
//!   that neither database sees;
//! - a dry run (a replayed write): no legacy transaction at all. Steps that must tell
//!   something (does this session row still exist? is this email taken there?) look
//!   with a read; nothing is written, so no sequence value is taken either.

use legacy_db::{LegacyDb, LegacyError, LegacySession, LegacyUser, NewLegacyUser, ProfileColumn};
use member_contract::{Errors, Field, Rule, Timestamp};

use crate::{CoreError, Identity};

/// The legacy database and how to write to it.
#[derive(Clone)]
pub struct LegacyLink {
    pub db: LegacyDb,
    /// bcrypt cost of the digests written there (the legacy's: 12).
    pub bcrypt_cost: u32,
}

type LegacyTx = sqlx::Transaction<'static, sqlx::Any>;

impl From<LegacyError> for CoreError {
    fn from(e: LegacyError) -> Self {
        match e {
            LegacyError::Taken(field) => CoreError::Validation(taken(field)),
            other => CoreError::unavailable(other),
        }
    }
}

/// The legacy's uniqueness refusal of `field`, as the contract reports it.
fn taken(field: &str) -> Errors {
    let mut errors = Errors::new();
    errors.add(
        if field == "phone_number" {
            Field::PhoneNumber
        } else {
            Field::Email
        },
        Rule::Taken,
    );
    errors
}

/// The legacy side of one write flow (see the module's documentation).
pub(crate) struct LegacyWrites {
    link: Option<LegacyLink>,
    /// Open while migrating, unless a dry run.
    tx: Option<LegacyTx>,
}

/// Runs `$call` on the legacy transaction when one is open, else on the pool.
macro_rules! on_legacy {
    ($self:ident, $link:ident, |$ex:ident| $call:expr) => {
        match $self.tx.as_mut() {
            Some(tx) => {
                let $ex = &mut **tx;
                $call.await
            }
            None => {
                let $ex = $link.db.pool();
                $call.await
            }
        }
    };
}

impl LegacyWrites {
    /// The legacy database and the open transaction, when the flow writes there.
    fn writing(&mut self) -> Option<(&LegacyDb, &mut sqlx::AnyConnection)> {
        match (&self.link, self.tx.as_mut()) {
            (Some(link), Some(tx)) => Some((&link.db, &mut **tx)),
            _ => None,
        }
    }

    /// A `sessions` row so that the legacy accepts our tokens: its id, or `None` when
    /// nothing is written.
    pub(crate) async fn insert_session(
        &mut self,
        session: &LegacySession,
    ) -> Result<Option<i64>, CoreError> {
        match self.writing() {
            Some((db, tx)) => Ok(Some(db.insert_session(tx, session).await?)),
            None => Ok(None),
        }
    }

    /// Ends the legacy row of a session; whether it was still there (ended on the
    /// legacy otherwise). A dry run looks without deleting; standalone, there is no
    /// other side to have ended it.
    pub(crate) async fn end_session(&mut self, legacy_id: i64) -> Result<bool, CoreError> {
        let Some(link) = &self.link else {
            return Ok(true);
        };
        Ok(match self.tx.as_mut() {
            Some(tx) => link.db.delete_session(&mut **tx, legacy_id).await? == 1,
            None => link.db.session_exists(link.db.pool(), legacy_id).await?,
        })
    }

    /// Log-out with a legacy access token: its rows are deleted.
    pub(crate) async fn end_sessions_by_token(&mut self, token: &str) -> Result<(), CoreError> {
        if let Some((db, tx)) = self.writing() {
            db.delete_sessions_by_token(tx, token).await?;
        }
        Ok(())
    }

    /// Log-out with a legacy refresh token: its rows are deleted.
    pub(crate) async fn end_sessions_by_refresh_token(
        &mut self,
        token: &str,
    ) -> Result<(), CoreError> {
        if let Some((db, tx)) = self.writing() {
            db.delete_sessions_by_refresh_token(tx, token).await?;
        }
        Ok(())
    }

    /// Every session of a member but `except` (a password change, a withdrawal).
    pub(crate) async fn end_user_sessions(
        &mut self,
        user_id: i64,
        except: Option<i64>,
    ) -> Result<(), CoreError> {
        if let Some((db, tx)) = self.writing() {
            db.delete_user_sessions(tx, user_id, except).await?;
        }
        Ok(())
    }

    /// A legacy refresh token's session, if it can still be refreshed.
    pub(crate) async fn refreshable_session(
        &mut self,
        token: &str,
        now: Timestamp,
    ) -> Result<Option<LegacySession>, CoreError> {
        let Some(link) = self.link.clone() else {
            return Ok(None);
        };
        Ok(on_legacy!(self, link, |ex| link
            .db
            .refreshable_session(ex, token, now))?)
    }

    /// A new member in the legacy's format: its id from the legacy's sequence, or
    /// `None` when nothing is written. A dry run checks the legacy's unique indexes by
    /// reading them, and takes no value of its sequence.
    pub(crate) async fn insert_user(
        &mut self,
        user: &NewLegacyUser,
    ) -> Result<Option<i64>, CoreError> {
        let Some(link) = &self.link else {
            return Ok(None);
        };
        match self.tx.as_mut() {
            Some(tx) => Ok(Some(link.db.insert_user(&mut **tx, user).await?)),
            None => {
                let pool = link.db.pool();
                if link.db.email_taken(pool, &user.email, 0).await? {
                    return Err(CoreError::Validation(taken("email")));
                }
                if let Some(phone) = &user.phone_number
                    && link.db.phone_taken(pool, phone, 0).await?
                {
                    return Err(CoreError::Validation(taken("phone_number")));
                }
                Ok(None)
            }
        }
    }

    /// The member's legacy row, locked until the flow ends (when written to).
    pub(crate) async fn lock_user(&mut self, id: i64) -> Result<Option<LegacyUser>, CoreError> {
        match self.writing() {
            Some((db, tx)) => Ok(db.lock_user(tx, id).await?),
            None => Ok(None),
        }
    }

    /// Sets only the given profile columns.
    pub(crate) async fn update_profile(
        &mut self,
        id: i64,
        columns: &[(ProfileColumn, Option<&str>)],
        now: Timestamp,
    ) -> Result<(), CoreError> {
        if let Some((db, tx)) = self.writing() {
            db.update_profile_columns(tx, id, columns, now).await?;
        }
        Ok(())
    }

    pub(crate) async fn update_digest(
        &mut self,
        id: i64,
        digest: &str,
        now: Timestamp,
    ) -> Result<(), CoreError> {
        if let Some((db, tx)) = self.writing() {
            db.update_digest(tx, id, digest, now).await?;
        }
        Ok(())
    }

    pub(crate) async fn withdraw_user(
        &mut self,
        id: i64,
        digest: &str,
        now: Timestamp,
    ) -> Result<(), CoreError> {
        if let Some((db, tx)) = self.writing() {
            db.withdraw_user(tx, id, digest, now).await?;
        }
        Ok(())
    }
}

impl Identity {
    /// The legacy database, while migrating.
    pub fn legacy(&self) -> Option<LegacyLink> {
        self.inner.legacy.read().ok().and_then(|g| g.clone())
    }

    /// Ends write-through (at cutover).
    pub fn detach_legacy(&self) {
        if let Ok(mut g) = self.inner.legacy.write() {
            *g = None;
        }
    }

    /// The legacy side of a write flow; opened before the identity service's own
    /// transaction (see the module's documentation).
    #[tracing::instrument(target = "traced", name = "legacy write-through begin", skip_all, fields(otel.kind = "client", db.namespace = "legacy"))]
    pub(crate) async fn legacy_writes(&self, dry_run: bool) -> Result<LegacyWrites, CoreError> {
        let link = self.legacy();
        let tx = match &link {
            Some(link) if !dry_run => Some(link.db.begin().await?),
            _ => None,
        };
        Ok(LegacyWrites { link, tx })
    }

    /// Commits the legacy's writes, then the identity service's; or, for a dry run,
    /// rolls the identity service's back (the legacy's were never made).
    #[tracing::instrument(target = "traced", name = "write-through commit", skip_all, fields(otel.kind = "client", dry_run = dry_run))]
    pub(crate) async fn finish_both(
        &self,
        legacy: LegacyWrites,
        tx: identity_store::Tx,
        dry_run: bool,
    ) -> Result<(), CoreError> {
        if let Some(ltx) = legacy.tx {
            ltx.commit().await.map_err(LegacyError::from)?;
        }
        tx.finish(dry_run).await?;
        Ok(())
    }

    /// A digest of a secret nobody knows, in the legacy's format (withdrawal).
    pub(crate) async fn unusable_legacy_digest(&self, cost: u32) -> Result<String, CoreError> {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret)
            .map_err(|e| CoreError::unavailable(format!("no randomness: {e}")))?;
        let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
        Ok(self.inner.hasher.legacy_bcrypt(&hex, cost).await?)
    }
}
