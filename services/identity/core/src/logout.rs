//! Log-out, by access token or by refresh token: the session ends on both sides (its
//! legacy row first, the lock order of `legacy`). Log-out always succeeds: anything
//! that is not a current session is ignored.

use identity_tokens::hash_refresh_token;

use crate::sessions::is_jwt;
use crate::{CoreError, Identity, RequestCtx};

impl Identity {
    /// Log-out by access token (signature checked, expiry not: an expired token still
    /// ends its session).
    pub async fn revoke_by_access_token(
        &self,
        access_token: &str,
        ctx: &RequestCtx,
    ) -> Result<(), CoreError> {
        let now = self.now();
        let mut legacy = self.legacy_writes(ctx.dry_run).await?;
        if !is_jwt(access_token) {
            legacy.end_sessions_by_token(access_token).await?;
            // Imported at cutover (also while this replica still writes through).
            let mut tx = self.inner.store.begin().await?;
            tx.end_imported_legacy_session(
                &hash_refresh_token(access_token),
                "logged out",
                now.as_micros(),
            )
            .await?;
            return self.finish_both(legacy, tx, ctx.dry_run).await;
        }
        let Ok(claims) = self.inner.tokens.verify(access_token, i64::MIN) else {
            return Ok(());
        };
        let mut tx = self.inner.store.begin().await?;
        if let Some((session, _)) = tx.session_with_member(&claims.sid).await?
            && session.access_jti == claims.jti
        {
            self.end_both(&mut legacy, &mut tx, &session, "logged out", now)
                .await?;
        }
        self.finish_both(legacy, tx, ctx.dry_run).await
    }

    /// Ends the session of a refresh token (unused or not). Unknown tokens are ignored.
    pub async fn revoke_by_refresh_token(
        &self,
        refresh_token: &str,
        ctx: &RequestCtx,
    ) -> Result<(), CoreError> {
        let now = self.now();
        let mut legacy = self.legacy_writes(ctx.dry_run).await?;
        let mut tx = self.inner.store.begin().await?;
        match tx.refresh_token(&hash_refresh_token(refresh_token)).await? {
            Some(found) => {
                self.end_both(&mut legacy, &mut tx, &found.session, "logged out", now)
                    .await?;
            }
            None => legacy.end_sessions_by_refresh_token(refresh_token).await?,
        }
        self.finish_both(legacy, tx, ctx.dry_run).await
    }
}
