//! Write-through while migrating: every write this service accepts is applied to the
//! legacy database too, in the legacy's own format (a bcrypt digest at the legacy's cost,
//! the withdrawal scrub, `sessions` rows with the tokens in clear), in a transaction
//! committed before the identity service's own, before the client gets its answer. If
//! the legacy write fails, the request fails and neither side keeps anything. Sessions
//! exist on both sides: a session ended on one side is refused on the other.

use legacy_db::{LegacyDb, LegacyError, LegacyUser};
use member_contract::{Errors, Field, Rule, Timestamp};

use crate::{CoreError, Identity};

/// The legacy database and how to write to it.
#[derive(Clone)]
pub struct LegacyLink {
    pub db: LegacyDb,
    /// bcrypt cost of the digests written there (the legacy's: 12).
    pub bcrypt_cost: u32,
}

pub(crate) type LegacyTx = sqlx::Transaction<'static, sqlx::Any>;

impl From<LegacyError> for CoreError {
    fn from(e: LegacyError) -> Self {
        match e {
            LegacyError::Taken(field) => {
                let mut errors = Errors::new();
                errors.add(
                    if field == "phone_number" {
                        Field::PhoneNumber
                    } else {
                        Field::Email
                    },
                    Rule::Taken,
                );
                CoreError::Validation(errors)
            }
            other => {
                tracing::error!(error = %other, "legacy write-through failed");
                CoreError::Unavailable
            }
        }
    }
}

/// The legacy's view of a member, for the writes that need one.
pub(crate) fn as_legacy_user(m: &identity_store::MemberRow) -> LegacyUser {
    LegacyUser {
        id: m.id,
        email: m.email.clone(),
        password_digest: String::new(),
        nickname: m.nickname.clone(),
        phone_number: m.phone_number.clone(),
        profile_image_url: m.profile_image_url.clone(),
        deleted_at: m.deleted_at.map(Timestamp::from_micros),
        created_at: Timestamp::from_micros(m.created_at),
        updated_at: Timestamp::from_micros(m.updated_at),
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

    /// Starts a legacy transaction when migrating.
    pub(crate) async fn begin_legacy(&self) -> Result<Option<(LegacyLink, LegacyTx)>, CoreError> {
        match self.legacy() {
            Some(link) => {
                let tx = link.db.begin().await?;
                Ok(Some((link, tx)))
            }
            None => Ok(None),
        }
    }

    /// Commits the legacy's writes, then the identity service's; or rolls both back.
    pub(crate) async fn finish_both(
        &self,
        legacy: Option<(LegacyLink, LegacyTx)>,
        tx: identity_store::Tx,
        dry_run: bool,
    ) -> Result<(), CoreError> {
        if let Some((_, ltx)) = legacy {
            if dry_run {
                ltx.rollback().await.map_err(LegacyError::from)?;
            } else {
                ltx.commit().await.map_err(LegacyError::from)?;
            }
        }
        tx.finish(dry_run).await?;
        Ok(())
    }

    /// A digest of a secret nobody knows, in the legacy's format (withdrawal).
    pub(crate) async fn unusable_legacy_digest(
        &self,
        link: &LegacyLink,
    ) -> Result<String, CoreError> {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|_| CoreError::Unavailable)?;
        let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
        Ok(self
            .inner
            .hasher
            .legacy_bcrypt(&hex, link.bcrypt_cost)
            .await?)
    }
}
