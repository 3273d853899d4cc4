//! Refresh rotation with reuse detection: the old pair stops working; a token rotated
//! already is refused, and past the grace period its reuse ends the whole session.
//!
//! While migrating, the session's legacy row is ended first (the lock order of
//! `legacy`). When it is already gone, either the session was ended on the legacy (a
//! log-out or a refresh there) or a concurrent refresh of this same token got there
//! first; the rotation here tells which (it waits for the winner and finds the token
//! rotated), so a race ends nobody's session, as when standalone.

use identity_store::SessionRow;
use identity_tokens::hash_refresh_token;
use member_contract::Timestamp;

use crate::legacy::LegacyWrites;
use crate::sessions::{IssuedSession, MICROS, legacy_row, random};
use crate::{CoreError, Identity, RequestCtx};

impl Identity {
    /// Rotates a refresh token. The old pair stops working. A token that was already
    /// rotated is refused; past the grace period its reuse ends the whole session.
    pub async fn refresh(
        &self,
        refresh_token: &str,
        ctx: &RequestCtx,
    ) -> Result<IssuedSession, CoreError> {
        if refresh_token.is_empty() {
            return Err(CoreError::InvalidRefreshToken);
        }
        let now = self.now();
        let hash = hash_refresh_token(refresh_token);
        let mut legacy = self.legacy_writes(ctx.dry_run).await?;
        let mut tx = self.inner.store.begin().await?;
        let Some(found) = tx.refresh_token(&hash).await? else {
            // A legacy refresh token, while migrating: rotated into a session of ours.
            return self
                .refresh_legacy(refresh_token, legacy, tx, now, ctx)
                .await;
        };
        let session = &found.session;
        if session.is_ended() || session.refresh_expires_at <= now.as_micros() {
            return Err(CoreError::InvalidRefreshToken);
        }
        if let Some(rotated_at) = found.rotated_at {
            if now.as_micros() - rotated_at > self.inner.config.refresh_reuse_grace_secs * MICROS {
                tracing::warn!(session = %session.id, "rotated refresh token reused: ending the session");
                self.end_both(&mut legacy, &mut tx, session, "refresh token reuse", now)
                    .await?;
                self.finish_both(legacy, tx, ctx.dry_run).await?;
            }
            return Err(CoreError::InvalidRefreshToken);
        }
        let member = match tx.session_with_member(&session.id).await? {
            Some((_, m)) if !m.is_withdrawn() => m,
            _ => return Err(CoreError::InvalidRefreshToken),
        };
        let legacy_live = match session.legacy_session_id {
            Some(lid) => legacy.end_session(lid).await?,
            None => true,
        };
        let new_token = random(32)?;
        let jti = random(16)?;
        let access_expires_at = now.plus_secs(self.inner.tokens.config().access_ttl_secs);
        let access_token = self
            .inner
            .tokens
            .issue(member.id, &session.id, &jti, now.as_secs());
        let rotated = tx
            .rotate_refresh(
                &hash,
                &hash_refresh_token(&new_token),
                &session.id,
                &jti,
                access_expires_at.as_micros(),
                now.as_micros(),
            )
            .await?;
        if !rotated {
            // A concurrent refresh of the same token won: refused, and its session
            // (now the winner's) left alone.
            return Err(CoreError::InvalidRefreshToken);
        }
        if !legacy_live {
            // Ended on the legacy side (logged out or refreshed there): refused here
            // too, and ended here.
            tx.end_session(&session.id, "ended on the legacy", now.as_micros())
                .await?;
            self.finish_both(legacy, tx, ctx.dry_run).await?;
            return Err(CoreError::InvalidRefreshToken);
        }
        let refresh_expires_at = Timestamp::from_micros(session.refresh_expires_at);
        if let Some(lid) = legacy
            .insert_session(&legacy_row(
                member.id,
                &access_token,
                &new_token,
                access_expires_at,
                refresh_expires_at,
                now,
            ))
            .await?
        {
            tx.set_legacy_session(&session.id, Some(lid)).await?;
        }
        self.finish_both(legacy, tx, ctx.dry_run).await?;
        Ok(IssuedSession {
            access_token,
            refresh_token: new_token,
            access_expires_at,
            refresh_expires_at,
            session_id: session.id.clone(),
            member,
        })
    }

    /// Ends a session on both sides: its legacy row first, then ours.
    pub(crate) async fn end_both(
        &self,
        legacy: &mut LegacyWrites,
        tx: &mut identity_store::Tx,
        session: &SessionRow,
        reason: &str,
        now: Timestamp,
    ) -> Result<(), CoreError> {
        if let Some(lid) = session.legacy_session_id {
            legacy.end_session(lid).await?;
        }
        tx.end_session(&session.id, reason, now.as_micros()).await?;
        Ok(())
    }

    /// A legacy refresh token presented here: the legacy pair is destroyed (as the
    /// legacy's rotation does) and a session of ours replaces it.
    async fn refresh_legacy(
        &self,
        refresh_token: &str,
        mut legacy: LegacyWrites,
        mut tx: identity_store::Tx,
        now: Timestamp,
        ctx: &RequestCtx,
    ) -> Result<IssuedSession, CoreError> {
        let Some(old) = legacy.refreshable_session(refresh_token, now).await? else {
            return Err(CoreError::InvalidRefreshToken);
        };
        // Of two racing refreshes of one legacy token, the one that deletes its row wins.
        if !legacy.end_session(old.id).await? {
            return Err(CoreError::InvalidRefreshToken);
        }
        // A member signed up on the legacy moments ago may not be here yet (the sync's
        // lag): imported now, as a log-in would, rather than the session refused.
        let member = match tx.member_by_id(old.user_id).await? {
            Some(m) if !m.is_withdrawn() => m,
            Some(_) => return Err(CoreError::InvalidRefreshToken),
            None => match self.import_into(&mut tx, old.user_id).await {
                Ok(m) => m,
                Err(CoreError::InvalidCredentials) => return Err(CoreError::InvalidRefreshToken),
                Err(e) => return Err(e),
            },
        };
        let issued = self.new_session(&mut legacy, &mut tx, member, now).await?;
        self.finish_both(legacy, tx, ctx.dry_run).await?;
        Ok(issued)
    }
}
