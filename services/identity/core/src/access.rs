//! The access check of every authenticated request, and introspection: a bearer token
//! to the acting member and its session. An ended session's token is refused from that
//! moment, whichever side ended it. While migrating, the member is read as the legacy
//! has it at that moment, so that nobody reads their own profile stale after being
//! moved here.

use identity_store::{LiveSession, SessionRow};
use identity_tokens::AccessClaims;
use identity_tokens::hash_refresh_token;
use member_contract::Timestamp;

use crate::sessions::{Introspection, Principal, is_jwt};
use crate::{CoreError, Identity};

/// What a bearer token names (see [`Identity::session_named_by`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedSession {
    pub member_id: i64,
    /// The identity service's session, for one of its tokens.
    pub session_id: Option<String>,
    /// The legacy's session row: a legacy token's, or the one linked to ours.
    pub legacy_session_id: Option<i64>,
}

/// Whether a token's claims name the live session's current access token, unexpired.
fn is_current(live: &LiveSession, claims: &AccessClaims, now: Timestamp) -> bool {
    live.access_jti == claims.jti
        && live.access_expires_at > now.as_micros()
        && Some(live.member_id) == claims.member_id()
}

impl Identity {
    /// The acting member of a bearer access token, if the token is valid and its
    /// session current.
    pub async fn authorize(&self, access_token: &str) -> Result<Principal, CoreError> {
        self.authorize_with(access_token, false).await
    }

    /// `authorize` for a request that may be a dry run: a dry run brings nothing of the
    /// legacy's row over, it only reads it.
    pub async fn authorize_with(
        &self,
        access_token: &str,
        dry_run: bool,
    ) -> Result<Principal, CoreError> {
        let now = self.now();
        if !is_jwt(access_token) {
            return self.authorize_legacy(access_token, now, dry_run).await;
        }
        let claims = self
            .inner
            .tokens
            .verify(access_token, now.as_secs())
            .map_err(|_| CoreError::Unauthorized)?;
        let Some(link) = self.legacy() else {
            let Some((session, member)) = self.inner.store.session_with_member(&claims.sid).await?
            else {
                return Err(CoreError::Unauthorized);
            };
            let current = LiveSession::of(&session, &member)
                .is_some_and(|live| is_current(&live, &claims, now));
            if !current {
                return Err(CoreError::Unauthorized);
            }
            return Ok(Principal { member, session });
        };
        // While migrating, the legacy's session row must still be there (not ended on
        // that side), and the member is read as the legacy has it now. A session the
        // cache holds as current, whose member was seen to agree with this very legacy
        // row, needs nothing more read here (see `agreed`).
        let mut legacy_read = None;
        if let Some(live) = self.inner.store.cached_live_session(&claims.sid)
            && is_current(&live, &claims, now)
            && let Some(lid) = live.legacy_session_id
        {
            let Some(user) = link.db.owner_of_live_session_batched(lid, now).await? else {
                return Err(CoreError::Unauthorized);
            };
            if let Some(member) = self.inner.agreed.get(&user) {
                if member.is_withdrawn() || member.id != live.member_id {
                    return Err(CoreError::Unauthorized);
                }
                return Ok(Principal {
                    member,
                    session: live.row(&claims.sid),
                });
            }
            legacy_read = Some((lid, user));
        }
        let Some((session, here, recorded_digest)) =
            self.inner.store.session_read_for_cache(&claims.sid).await?
        else {
            return Err(CoreError::Unauthorized);
        };
        let current =
            LiveSession::of(&session, &here).is_some_and(|live| is_current(&live, &claims, now));
        if !current {
            return Err(CoreError::Unauthorized);
        }
        let Some(lid) = session.legacy_session_id else {
            return Ok(Principal {
                member: here,
                session,
            });
        };
        let user = match legacy_read {
            Some((read, user)) if read == lid => user,
            _ => match link.db.owner_of_live_session_batched(lid, now).await? {
                Some(user) => user,
                None => return Err(CoreError::Unauthorized),
            },
        };
        let member = self
            .member_as_legacy_has_it(&user, Some((&here, recorded_digest.as_deref())), dry_run)
            .await?;
        if member.is_withdrawn() || member.id != session.member_id {
            return Err(CoreError::Unauthorized);
        }
        if member == here {
            self.inner.agreed.keep(&user, &here);
        }
        Ok(Principal { member, session })
    }

    /// A legacy access token: while migrating, its live `sessions` row and member; after
    /// the cutover, the session imported from it (until it expires or is refreshed).
    async fn authorize_legacy(
        &self,
        token: &str,
        now: Timestamp,
        dry_run: bool,
    ) -> Result<Principal, CoreError> {
        let Some(link) = self.legacy() else {
            return self.authorize_imported(token, now).await;
        };
        let db = &link.db;
        let Some(ls) = db
            .read(|pool| db.live_session_by_token(pool, token, now))
            .await?
        else {
            return Err(CoreError::Unauthorized);
        };
        // The member as the legacy has it now (imported or brought up to date).
        let Some(user) = db.read(|pool| db.user_by_id(pool, ls.user_id)).await? else {
            return Err(CoreError::Unauthorized);
        };
        let member = self.import_legacy_user(&user, dry_run).await?;
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

    /// The member and session a bearer token names, whatever the session's state now
    /// (a write's effects are looked up after the write: a log-out ended the session, a
    /// withdrawal every session). Our token must be ours and unexpired; a legacy token
    /// is found while its legacy row is there. `None` when it names nothing.
    pub async fn session_named_by(
        &self,
        access_token: &str,
    ) -> Result<Option<NamedSession>, CoreError> {
        let now = self.now();
        if is_jwt(access_token) {
            let Ok(claims) = self.inner.tokens.verify(access_token, now.as_secs()) else {
                return Ok(None);
            };
            let found = self.inner.store.session_with_member(&claims.sid).await?;
            return Ok(found.map(|(session, member)| NamedSession {
                member_id: member.id,
                session_id: Some(session.id),
                legacy_session_id: session.legacy_session_id,
            }));
        }
        let Some(link) = self.legacy() else {
            return Ok(None);
        };
        let db = &link.db;
        let found = db
            .read(|pool| db.live_session_by_token(pool, access_token, now))
            .await?;
        Ok(found.map(|ls| NamedSession {
            member_id: ls.user_id,
            session_id: None,
            legacy_session_id: Some(ls.id),
        }))
    }

    /// Introspection: `None` for a token that is not active.
    pub async fn introspect(&self, access_token: &str) -> Result<Option<Introspection>, CoreError> {
        // Standing alone, the session of one of our tokens is read through the session
        // cache (PostgreSQL; see identity_store::LiveSession); with the same checks as
        // `authorize`. While migrating, the legacy's session is checked every time.
        if self.legacy().is_none() && is_jwt(access_token) {
            let now = self.now();
            let Ok(claims) = self.inner.tokens.verify(access_token, now.as_secs()) else {
                return Ok(None);
            };
            let Some(live) = self.inner.store.live_session(&claims.sid).await? else {
                return Ok(None);
            };
            return Ok(is_current(&live, &claims, now).then(|| Introspection {
                member_id: live.member_id,
                session_id: claims.sid.clone(),
                expires_at: Timestamp::from_micros(live.access_expires_at),
            }));
        }
        // Boxed: the migrating path's future is some 4 KiB, which every call of the
        // path above would otherwise carry and copy as it is moved into place.
        match Box::pin(self.authorize(access_token)).await {
            Ok(p) => Ok(Some(Introspection {
                member_id: p.member.id,
                session_id: p.session.id,
                expires_at: Timestamp::from_micros(p.session.access_expires_at),
            })),
            Err(CoreError::Unauthorized) => Ok(None),
            Err(e) => Err(e),
        }
    }
}
