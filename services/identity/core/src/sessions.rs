//! What every session flow shares: the acting member of a request ([`Principal`]), a
//! session's tokens ([`IssuedSession`]), and making a new session (also a `sessions`
//! row on the legacy while migrating, so that the legacy accepts its tokens). The
//! flows themselves are `login`, `refresh`, `access`, `logout` and `password`.

use identity_store::{MemberRow, SessionRow};
use identity_tokens::{hash_refresh_token, random_token};
use legacy_db::LegacySession;
use member_contract::Timestamp;

use crate::legacy::LegacyWrites;
use crate::{CoreError, Identity};

/// The acting member of an authenticated request and the session it came with.
#[derive(Debug, Clone)]
pub struct Principal {
    pub member: MemberRow,
    pub session: SessionRow,
}

/// A new or refreshed session's tokens.
#[derive(Debug, Clone)]
pub struct IssuedSession {
    pub access_token: String,
    pub refresh_token: String,
    pub access_expires_at: Timestamp,
    pub refresh_expires_at: Timestamp,
    pub session_id: String,
    pub member: MemberRow,
}

/// What introspection tells about an access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Introspection {
    pub member_id: i64,
    pub session_id: String,
    pub expires_at: Timestamp,
}

pub(crate) const MICROS: i64 = 1_000_000;

pub(crate) fn random(n: usize) -> Result<String, CoreError> {
    random_token(n).map_err(|e| CoreError::unavailable(format!("no randomness: {e}")))
}

/// Legacy tokens are 24 base58 characters; ours are JWTs (with dots) or 43 base64url.
pub(crate) fn is_jwt(token: &str) -> bool {
    token.contains('.')
}

/// A session's row as the legacy keeps it, for our tokens.
pub(crate) fn legacy_row(
    member_id: i64,
    access_token: &str,
    refresh_token: &str,
    access_expires_at: Timestamp,
    refresh_expires_at: Timestamp,
    now: Timestamp,
) -> LegacySession {
    LegacySession {
        id: 0,
        user_id: member_id,
        token: access_token.to_owned(),
        refresh_token: refresh_token.to_owned(),
        expires_at: access_expires_at,
        refresh_expires_at,
        created_at: now,
    }
}

impl Identity {
    /// A new session, also written to the legacy's `sessions` table while migrating
    /// (so that the legacy accepts its tokens). The legacy row is written first (the
    /// lock order of `legacy`).
    pub(crate) async fn new_session(
        &self,
        legacy: &mut LegacyWrites,
        tx: &mut identity_store::Tx,
        member: MemberRow,
        now: Timestamp,
    ) -> Result<IssuedSession, CoreError> {
        let session_id = random(16)?;
        let jti = random(16)?;
        let refresh_token = random(32)?;
        let access_expires_at = now.plus_secs(self.inner.tokens.config().access_ttl_secs);
        let refresh_expires_at = now.plus_secs(self.inner.config.refresh_ttl_secs);
        let access_token = self
            .inner
            .tokens
            .issue(member.id, &session_id, &jti, now.as_secs());
        let legacy_session_id = legacy
            .insert_session(&legacy_row(
                member.id,
                &access_token,
                &refresh_token,
                access_expires_at,
                refresh_expires_at,
                now,
            ))
            .await?;
        let row = SessionRow {
            id: session_id.clone(),
            member_id: member.id,
            access_jti: jti,
            created_at: now.as_micros(),
            access_expires_at: access_expires_at.as_micros(),
            refresh_expires_at: refresh_expires_at.as_micros(),
            ended_at: None,
            legacy_session_id,
        };
        tx.insert_session(&row, &hash_refresh_token(&refresh_token))
            .await?;
        Ok(IssuedSession {
            access_token,
            refresh_token,
            access_expires_at,
            refresh_expires_at,
            session_id,
            member,
        })
    }
}
