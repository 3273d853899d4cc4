//! Session flows: log-in, refresh rotation with reuse detection, log-out, the access
//! check of every authenticated request, introspection and the password change. While
//! migrating, every session also lives in the legacy's `sessions` table, and the
//! legacy's own tokens are accepted here.

use identity_passwords::Verdict;
use identity_store::{MemberRow, SessionRow};
use identity_tokens::{hash_refresh_token, random_token};
use legacy_db::LegacySession;
use member_contract::forms::{CredentialsForm, PasswordChangeForm};
use member_contract::{Errors, Field, Rule, Timestamp};

use crate::legacy::{LegacyLink, LegacyTx};
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

fn random(n: usize) -> Result<String, CoreError> {
    random_token(n).map_err(|e| {
        tracing::error!(error = %e, "no randomness");
        CoreError::Unavailable
    })
}

/// Legacy tokens are 24 base58 characters; ours are JWTs (with dots) or 43 base64url.
fn is_jwt(token: &str) -> bool {
    token.contains('.')
}

impl Identity {
    /// An active member by normalised email; while migrating, a member signed up on the
    /// legacy moments ago (not synced yet) is imported on the spot.
    async fn member_for_log_in(&self, email: &str) -> Result<Option<MemberRow>, CoreError> {
        if email.is_empty() {
            return Ok(None);
        }
        if let Some(m) = self.inner.store.member_by_email(email).await? {
            return Ok((!m.is_withdrawn()).then_some(m));
        }
        let Some(link) = self.legacy() else {
            return Ok(None);
        };
        let Some(user) = link.db.active_user_by_email(link.db.pool(), email).await? else {
            return Ok(None);
        };
        self.import_legacy_user(&user).await.map(Some)
    }

    /// Copies one legacy member as it is now (the sync would within moments).
    async fn import_legacy_user(
        &self,
        user: &legacy_db::LegacyUser,
    ) -> Result<MemberRow, CoreError> {
        let mut current = self
            .inner
            .store
            .members_with_legacy_digests(&[user.id])
            .await?;
        let here = current.remove(&user.id);
        self.member_as_legacy_has_it(user, here.as_ref().map(|(m, d)| (m, d.as_deref())))
            .await
    }

    /// The member as the legacy's row says, given the member as it is here and the
    /// legacy digest recorded for it. The write transaction is taken only when they
    /// differ, so that the authenticated reads that call this do not queue for the
    /// write lock.
    async fn member_as_legacy_has_it(
        &self,
        user: &legacy_db::LegacyUser,
        here: Option<(&MemberRow, Option<&str>)>,
    ) -> Result<MemberRow, CoreError> {
        if let Some((member, _)) = here
            && identity_migration::target_for(user, here).is_none()
        {
            return Ok(member.clone());
        }
        let mut tx = self.inner.store.begin().await?;
        let (member, changed) = identity_migration::apply_legacy_user(&mut tx, user).await?;
        if changed {
            tx.commit().await?;
        } else {
            tx.rollback().await?;
        }
        Ok(member)
    }

    /// Email and password to a new session. Unknown email, wrong password and withdrawn
    /// member get the same answer after the same work.
    pub async fn authenticate(
        &self,
        form: &CredentialsForm,
        ctx: &RequestCtx,
    ) -> Result<IssuedSession, CoreError> {
        let email = form.email.clone().unwrap_or_default();
        let member = self.member_for_log_in(&email).await?;
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
        let mut legacy = self.begin_legacy().await?;
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
        let issued = self
            .new_session(&mut tx, legacy.as_mut(), member, now)
            .await?;
        self.finish_both(legacy, tx, ctx.dry_run).await?;
        Ok(issued)
    }

    /// A new session, also written to the legacy's `sessions` table while migrating
    /// (so that the legacy accepts its tokens).
    async fn new_session(
        &self,
        tx: &mut identity_store::Tx,
        legacy: Option<&mut (LegacyLink, LegacyTx)>,
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
        let legacy_session_id = match legacy {
            Some((link, ltx)) => Some(
                link.db
                    .insert_session(
                        &mut **ltx,
                        &LegacySession {
                            id: 0,
                            user_id: member.id,
                            token: access_token.clone(),
                            refresh_token: refresh_token.clone(),
                            expires_at: access_expires_at,
                            refresh_expires_at,
                            created_at: now,
                        },
                    )
                    .await?,
            ),
            None => None,
        };
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
        let mut legacy = self.begin_legacy().await?;
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
                tx.end_session(&session.id, "refresh token reuse", now.as_micros())
                    .await?;
                if let (Some((link, ltx)), Some(lid)) = (legacy.as_mut(), session.legacy_session_id)
                {
                    link.db.delete_session(&mut **ltx, lid).await?;
                }
                self.finish_both(legacy, tx, ctx.dry_run).await?;
            }
            return Err(CoreError::InvalidRefreshToken);
        }
        let member = match tx.session_with_member(&session.id).await? {
            Some((_, m)) if !m.is_withdrawn() => m,
            _ => return Err(CoreError::InvalidRefreshToken),
        };
        // Ended on the legacy side (logged out or refreshed there): refused here too.
        if let (Some((link, ltx)), Some(lid)) = (legacy.as_mut(), session.legacy_session_id)
            && link.db.delete_session(&mut **ltx, lid).await? != 1
        {
            tx.end_session(&session.id, "ended on the legacy", now.as_micros())
                .await?;
            self.finish_both(legacy, tx, ctx.dry_run).await?;
            return Err(CoreError::InvalidRefreshToken);
        }
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
            return Err(CoreError::InvalidRefreshToken);
        }
        let refresh_expires_at = Timestamp::from_micros(session.refresh_expires_at);
        if let Some((link, ltx)) = legacy.as_mut() {
            let lid = link
                .db
                .insert_session(
                    &mut **ltx,
                    &LegacySession {
                        id: 0,
                        user_id: member.id,
                        token: access_token.clone(),
                        refresh_token: new_token.clone(),
                        expires_at: access_expires_at,
                        refresh_expires_at,
                        created_at: now,
                    },
                )
                .await?;
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

    /// A legacy refresh token presented here: the legacy pair is destroyed (as the
    /// legacy's rotation does) and a session of ours replaces it.
    async fn refresh_legacy(
        &self,
        refresh_token: &str,
        mut legacy: Option<(LegacyLink, LegacyTx)>,
        mut tx: identity_store::Tx,
        now: Timestamp,
        ctx: &RequestCtx,
    ) -> Result<IssuedSession, CoreError> {
        let Some((link, ltx)) = legacy.as_mut() else {
            return Err(CoreError::InvalidRefreshToken);
        };
        let Some(old) = link
            .db
            .refreshable_session(&mut **ltx, refresh_token, now)
            .await?
        else {
            return Err(CoreError::InvalidRefreshToken);
        };
        if link.db.delete_session(&mut **ltx, old.id).await? != 1 {
            return Err(CoreError::InvalidRefreshToken);
        }
        let member = match tx.member_by_id(old.user_id).await? {
            Some(m) if !m.is_withdrawn() => m,
            _ => return Err(CoreError::InvalidRefreshToken),
        };
        let issued = self
            .new_session(&mut tx, legacy.as_mut(), member, now)
            .await?;
        self.finish_both(legacy, tx, ctx.dry_run).await?;
        Ok(issued)
    }

    /// The acting member of a bearer access token, if the token is valid and its
    /// session current: an ended session's token is refused from that moment, whichever
    /// side ended it.
    pub async fn authorize(&self, access_token: &str) -> Result<Principal, CoreError> {
        let now = self.now();
        if !is_jwt(access_token) {
            return self.authorize_legacy(access_token, now).await;
        }
        let claims = self
            .inner
            .tokens
            .verify(access_token, now.as_secs())
            .map_err(|_| CoreError::Unauthorized)?;
        let link = self.legacy();
        let found = match link {
            // While migrating, the legacy digest recorded here comes in the same query.
            Some(_) => {
                self.inner
                    .store
                    .session_with_member_and_legacy_digest(&claims.sid)
                    .await?
            }
            None => self
                .inner
                .store
                .session_with_member(&claims.sid)
                .await?
                .map(|(s, m)| (s, m, None)),
        };
        let Some((session, member, recorded_digest)) = found else {
            return Err(CoreError::Unauthorized);
        };
        let current = !session.is_ended()
            && session.access_jti == claims.jti
            && session.access_expires_at > now.as_micros()
            && Some(member.id) == claims.member_id()
            && !member.is_withdrawn();
        if !current {
            return Err(CoreError::Unauthorized);
        }
        // While migrating, the legacy's session row must still be there (not ended on
        // that side), and the member is read as the legacy has it now: a change made
        // there moments ago (not synced yet) is applied, so that nobody reads their own
        // profile stale after being moved here.
        let member = match (link, session.legacy_session_id) {
            (Some(link), Some(lid)) => {
                let Some(user) = link
                    .db
                    .owner_of_live_session(link.db.pool(), lid, now)
                    .await?
                else {
                    return Err(CoreError::Unauthorized);
                };
                let member = self
                    .member_as_legacy_has_it(&user, Some((&member, recorded_digest.as_deref())))
                    .await?;
                if member.is_withdrawn() || member.id != session.member_id {
                    return Err(CoreError::Unauthorized);
                }
                member
            }
            _ => member,
        };
        Ok(Principal { member, session })
    }

    /// A legacy access token: while migrating, its live `sessions` row and member; after
    /// the cutover, the session imported from it (until it expires or is refreshed).
    async fn authorize_legacy(&self, token: &str, now: Timestamp) -> Result<Principal, CoreError> {
        let Some(link) = self.legacy() else {
            return self.authorize_imported(token, now).await;
        };
        let Some(ls) = link
            .db
            .live_session_by_token(link.db.pool(), token, now)
            .await?
        else {
            return Err(CoreError::Unauthorized);
        };
        // The member as the legacy has it now (imported or brought up to date).
        let Some(user) = link.db.user_by_id(link.db.pool(), ls.user_id).await? else {
            return Err(CoreError::Unauthorized);
        };
        let member = self.import_legacy_user(&user).await?;
        if member.is_withdrawn() {
            return Err(CoreError::Unauthorized);
        }
        let session = SessionRow {
            id: format!("legacy:{}", ls.id),
            member_id: ls.user_id,
            access_jti: String::new(),
            created_at: ls.created_at.as_micros(),
            access_expires_at: ls.expires_at.as_micros(),
            refresh_expires_at: ls.refresh_expires_at.as_micros(),
            ended_at: None,
            legacy_session_id: Some(ls.id),
        };
        Ok(Principal { member, session })
    }

    /// A legacy access token after the cutover: the session imported from it.
    async fn authorize_imported(
        &self,
        token: &str,
        now: Timestamp,
    ) -> Result<Principal, CoreError> {
        let Some((session, member)) = self
            .inner
            .store
            .imported_legacy_session(&hash_refresh_token(token))
            .await?
        else {
            return Err(CoreError::Unauthorized);
        };
        let current = !session.is_ended()
            && session.access_jti == identity_store::IMPORTED_LEGACY_JTI
            && session.access_expires_at > now.as_micros()
            && !member.is_withdrawn();
        if !current {
            return Err(CoreError::Unauthorized);
        }
        Ok(Principal { member, session })
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
        let mut legacy = self.begin_legacy().await?;
        if !is_jwt(access_token) {
            if let Some((link, ltx)) = legacy.as_mut() {
                link.db
                    .delete_sessions_by_token(&mut **ltx, access_token)
                    .await?;
            }
            // Imported at cutover (also while this replica still writes through).
            let mut tx = self.inner.store.begin().await?;
            tx.end_imported_legacy_session(
                &hash_refresh_token(access_token),
                "logged out",
                self.now().as_micros(),
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
            tx.end_session(&session.id, "logged out", self.now().as_micros())
                .await?;
            if let (Some((link, ltx)), Some(lid)) = (legacy.as_mut(), session.legacy_session_id) {
                link.db.delete_session(&mut **ltx, lid).await?;
            }
        }
        self.finish_both(legacy, tx, ctx.dry_run).await
    }

    /// Ends the session of a refresh token (unused or not). Unknown tokens are ignored.
    pub async fn revoke_by_refresh_token(
        &self,
        refresh_token: &str,
        ctx: &RequestCtx,
    ) -> Result<(), CoreError> {
        let mut legacy = self.begin_legacy().await?;
        let mut tx = self.inner.store.begin().await?;
        match tx.refresh_token(&hash_refresh_token(refresh_token)).await? {
            Some(found) => {
                tx.end_session(&found.session.id, "logged out", self.now().as_micros())
                    .await?;
                if let (Some((link, ltx)), Some(lid)) =
                    (legacy.as_mut(), found.session.legacy_session_id)
                {
                    link.db.delete_session(&mut **ltx, lid).await?;
                }
            }
            None => {
                if let Some((link, ltx)) = legacy.as_mut() {
                    link.db
                        .delete_sessions_by_refresh_token(&mut **ltx, refresh_token)
                        .await?;
                }
            }
        }
        self.finish_both(legacy, tx, ctx.dry_run).await
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
        let (hash, legacy_digest) = match form.password.as_deref() {
            Some("") => (None, None),
            _ => {
                let password = form.validate_new()?;
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
        };
        let now = self.now().as_micros();
        let mut legacy = self.begin_legacy().await?;
        if let Some((link, ltx)) = legacy.as_mut() {
            if let Some(digest) = &legacy_digest {
                link.db
                    .update_digest(
                        &mut **ltx,
                        who.member.id,
                        digest,
                        Timestamp::from_micros(now),
                    )
                    .await?;
            }
            link.db
                .delete_user_sessions(&mut **ltx, who.member.id, who.session.legacy_session_id)
                .await?;
        }
        let mut tx = self.inner.store.begin().await?;
        if let Some(hash) = &hash {
            tx.set_password_hash(who.member.id, hash, Some(now)).await?;
        }
        if let Some(digest) = &legacy_digest {
            tx.set_legacy_digest(who.member.id, digest).await?;
        }
        tx.end_member_sessions(
            who.member.id,
            Some(&who.session.id),
            "password changed",
            now,
        )
        .await?;
        self.finish_both(legacy, tx, ctx.dry_run).await
    }
}

/// How a client address is kept in the database: hashed, never in clear.
pub(crate) fn throttle_client_key(client: &str) -> String {
    crate::throttle::digest(&format!("client|{client}"))
}
