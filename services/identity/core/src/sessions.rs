//! Session flows: log-in, refresh rotation with reuse detection, log-out, the access
//! check of every authenticated request, introspection and the password change.

use identity_passwords::Verdict;
use identity_store::{MemberRow, SessionRow};
use identity_tokens::{hash_refresh_token, random_token};
use member_contract::forms::{CredentialsForm, PasswordChangeForm};
use member_contract::{Errors, Field, Rule, Timestamp};

use crate::{CoreError, Identity, RequestCtx};

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

const MICROS: i64 = 1_000_000;

fn token() -> Result<String, CoreError> {
    random_token(32).map_err(|e| {
        tracing::error!(error = %e, "no randomness");
        CoreError::Unavailable
    })
}

fn short_id() -> Result<String, CoreError> {
    random_token(16).map_err(|e| {
        tracing::error!(error = %e, "no randomness");
        CoreError::Unavailable
    })
}

impl Identity {
    /// Email and password to a new session. Unknown email, wrong password and withdrawn
    /// member get the same answer after the same work.
    pub async fn authenticate(
        &self,
        form: &CredentialsForm,
        ctx: &RequestCtx,
    ) -> Result<IssuedSession, CoreError> {
        let email = form.email.clone().unwrap_or_default();
        let member = match form.email.as_deref() {
            Some(e) if !e.is_empty() => self.inner.store.member_by_email(e).await?,
            _ => None,
        }
        .filter(|m| !m.is_withdrawn());
        let keys = self.throttle_keys(&email, ctx.client.as_deref());
        self.check_throttle(&keys, member.as_ref().map(|m| m.id), ctx.client.as_deref())
            .await?;
        let password = form.password.as_deref().unwrap_or("");
        let verdict = self
            .inner
            .hasher
            .verify(password, member.as_ref().map(|m| m.password_hash.as_str()))
            .await?;
        let (Verdict::Match { rehash }, Some(member)) = (verdict, member) else {
            if !ctx.dry_run {
                self.record_failure(&keys).await?;
            }
            return Err(CoreError::InvalidCredentials);
        };
        let new_hash = if rehash {
            Some(self.inner.hasher.hash(password).await?)
        } else {
            None
        };
        let now = self.now();
        let mut tx = self.inner.store.begin().await?;
        // The member may have been withdrawn while the password was being checked.
        let member = match tx.member_by_id(member.id).await? {
            Some(m) if !m.is_withdrawn() => m,
            _ => return Err(CoreError::InvalidCredentials),
        };
        if let Some(hash) = &new_hash {
            tx.set_password_hash(member.id, hash, None).await?;
        }
        if let Some(client) = &ctx.client {
            tx.remember_client(member.id, &throttle_client_key(client), now.as_micros())
                .await?;
        }
        let issued = self.new_session(&mut tx, member, now).await?;
        tx.finish(ctx.dry_run).await?;
        Ok(issued)
    }

    async fn new_session(
        &self,
        tx: &mut identity_store::Tx,
        member: MemberRow,
        now: Timestamp,
    ) -> Result<IssuedSession, CoreError> {
        let session_id = short_id()?;
        let jti = short_id()?;
        let refresh_token = token()?;
        let access_expires_at = now.plus_secs(self.inner.tokens.config().access_ttl_secs);
        let refresh_expires_at = now.plus_secs(self.inner.config.refresh_ttl_secs);
        let row = SessionRow {
            id: session_id.clone(),
            member_id: member.id,
            access_jti: jti.clone(),
            created_at: now.as_micros(),
            access_expires_at: access_expires_at.as_micros(),
            refresh_expires_at: refresh_expires_at.as_micros(),
            ended_at: None,
        };
        tx.insert_session(&row, &hash_refresh_token(&refresh_token))
            .await?;
        let access_token = self
            .inner
            .tokens
            .issue(member.id, &session_id, &jti, now.as_secs());
        Ok(IssuedSession {
            access_token,
            refresh_token,
            access_expires_at,
            refresh_expires_at,
            session_id,
            member,
        })
    }

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
        let mut tx = self.inner.store.begin().await?;
        let Some(found) = tx.refresh_token(&hash).await? else {
            return Err(CoreError::InvalidRefreshToken);
        };
        let session = &found.session;
        if session.is_ended() || session.refresh_expires_at <= now.as_micros() {
            return Err(CoreError::InvalidRefreshToken);
        }
        if let Some(rotated_at) = found.rotated_at {
            if now.as_micros() - rotated_at > self.inner.config.refresh_reuse_grace_secs * MICROS {
                tracing::warn!(session = %session.id, "rotated refresh token reused: ending the session");
                tx.end_session(&session.id, "refresh token reuse", now.as_micros())
                    .await?;
                tx.finish(ctx.dry_run).await?;
            }
            return Err(CoreError::InvalidRefreshToken);
        }
        let member = match tx.session_with_member(&session.id).await? {
            Some((_, m)) if !m.is_withdrawn() => m,
            _ => return Err(CoreError::InvalidRefreshToken),
        };
        let new_token = token()?;
        let jti = short_id()?;
        let access_expires_at = now.plus_secs(self.inner.tokens.config().access_ttl_secs);
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
            return Err(CoreError::InvalidRefreshToken);
        }
        tx.finish(ctx.dry_run).await?;
        Ok(IssuedSession {
            access_token: self
                .inner
                .tokens
                .issue(member.id, &session.id, &jti, now.as_secs()),
            refresh_token: new_token,
            access_expires_at,
            refresh_expires_at: Timestamp::from_micros(session.refresh_expires_at),
            session_id: session.id.clone(),
            member,
        })
    }

    /// The acting member of a bearer access token, if the token is valid and its
    /// session current: an ended session's token is refused from that moment.
    pub async fn authorize(&self, access_token: &str) -> Result<Principal, CoreError> {
        let now = self.now();
        let claims = self
            .inner
            .tokens
            .verify(access_token, now.as_secs())
            .map_err(|_| CoreError::Unauthorized)?;
        let Some((session, member)) = self.inner.store.session_with_member(&claims.sid).await?
        else {
            return Err(CoreError::Unauthorized);
        };
        let current = !session.is_ended()
            && session.access_jti == claims.jti
            && session.access_expires_at > now.as_micros()
            && Some(member.id) == claims.member_id()
            && !member.is_withdrawn();
        if current {
            Ok(Principal { member, session })
        } else {
            Err(CoreError::Unauthorized)
        }
    }

    /// Introspection: `None` for a token that is not active.
    pub async fn introspect(&self, access_token: &str) -> Result<Option<Introspection>, CoreError> {
        match self.authorize(access_token).await {
            Ok(p) => Ok(Some(Introspection {
                member_id: p.member.id,
                session_id: p.session.id,
                expires_at: Timestamp::from_micros(p.session.access_expires_at),
            })),
            Err(CoreError::Unauthorized) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Log-out by access token (signature checked, expiry not: an expired token still
    /// ends its session). Anything else is ignored: log-out always succeeds.
    pub async fn revoke_by_access_token(
        &self,
        access_token: &str,
        ctx: &RequestCtx,
    ) -> Result<(), CoreError> {
        let Ok(claims) = self.inner.tokens.verify(access_token, i64::MIN) else {
            return Ok(());
        };
        let mut tx = self.inner.store.begin().await?;
        if let Some((session, _)) = tx.session_with_member(&claims.sid).await?
            && session.access_jti == claims.jti
        {
            tx.end_session(&session.id, "logged out", self.now().as_micros())
                .await?;
        }
        tx.finish(ctx.dry_run).await?;
        Ok(())
    }

    /// Ends the session of a refresh token (unused or not). Unknown tokens are ignored.
    pub async fn revoke_by_refresh_token(
        &self,
        refresh_token: &str,
        ctx: &RequestCtx,
    ) -> Result<(), CoreError> {
        let mut tx = self.inner.store.begin().await?;
        if let Some(found) = tx.refresh_token(&hash_refresh_token(refresh_token)).await? {
            tx.end_session(&found.session.id, "logged out", self.now().as_micros())
                .await?;
        }
        tx.finish(ctx.dry_run).await?;
        Ok(())
    }

    /// Changes the acting member's password and ends every other session.
    pub async fn change_password(
        &self,
        who: &Principal,
        form: &PasswordChangeForm,
        ctx: &RequestCtx,
    ) -> Result<(), CoreError> {
        let current = form.current_password.as_deref().unwrap_or("");
        let verdict = self
            .inner
            .hasher
            .verify(current, Some(&who.member.password_hash))
            .await?;
        if verdict == Verdict::Mismatch {
            let mut errors = Errors::new();
            errors.add(Field::CurrentPassword, Rule::Invalid);
            return Err(CoreError::Validation(errors));
        }
        // `has_secure_password` ignores an empty new password: the digest stays, the
        // request succeeds and the other sessions still end, as in the legacy.
        let hash = match form.password.as_deref() {
            Some("") => None,
            _ => Some(
                self.inner
                    .hasher
                    .hash(form.validate_new()?.expose())
                    .await?,
            ),
        };
        let now = self.now().as_micros();
        let mut tx = self.inner.store.begin().await?;
        if let Some(hash) = &hash {
            tx.set_password_hash(who.member.id, hash, Some(now)).await?;
        }
        tx.end_member_sessions(
            who.member.id,
            Some(&who.session.id),
            "password changed",
            now,
        )
        .await?;
        tx.finish(ctx.dry_run).await?;
        Ok(())
    }
}

/// How a client address is kept in the database: hashed, never in clear.
pub(crate) fn throttle_client_key(client: &str) -> String {
    crate::throttle::digest(&format!("client|{client}"))
}
