//! Log-in: email and password to a new session. While migrating, a member the legacy
//! holds but the sync has not brought yet (signed up there moments ago) is imported on
//! the spot; a dry run reads that member without importing it.

use identity_passwords::{PasswordError, Verdict};
use identity_store::MemberRow;
use member_contract::forms::CredentialsForm;

use crate::sessions::IssuedSession;
use crate::throttle::throttle_client_key;
use crate::{CoreError, Identity, RequestCtx};

impl Identity {
    /// An active member by normalised email; while migrating, a member signed up on the
    /// legacy moments ago (not synced yet) is imported on the spot (read, for a dry run).
    async fn member_for_log_in(
        &self,
        email: &str,
        dry_run: bool,
    ) -> Result<Option<MemberRow>, CoreError> {
        if email.is_empty() {
            return Ok(None);
        }
        if let Some(m) = self.inner.store.member_by_email(email).await? {
            return Ok((!m.is_withdrawn()).then_some(m));
        }
        let Some(link) = self.legacy() else {
            return Ok(None);
        };
        let db = &link.db;
        let Some(user) = db.read(|pool| db.active_user_by_email(pool, email)).await? else {
            return Ok(None);
        };
        self.import_legacy_user(&user, dry_run).await.map(Some)
    }

    /// One legacy member as it is now, imported (the sync would within moments), or
    /// only read for a dry run.
    pub(crate) async fn import_legacy_user(
        &self,
        user: &legacy_db::LegacyUser,
        dry_run: bool,
    ) -> Result<MemberRow, CoreError> {
        let mut current = self
            .inner
            .store
            .members_with_legacy_digests(&[user.id])
            .await?;
        let here = current.remove(&user.id);
        self.member_as_legacy_has_it(user, here.as_ref().map(|(m, d)| (m, d.as_deref())), dry_run)
            .await
    }

    /// The member as the legacy's row says, given the member as it is here and the
    /// legacy digest recorded for it. The write transaction is taken only when they
    /// differ, so that the authenticated reads that call this do not queue for the
    /// write lock; a dry run writes nothing and answers with the member as it would be.
    pub(crate) async fn member_as_legacy_has_it(
        &self,
        user: &legacy_db::LegacyUser,
        here: Option<(&MemberRow, Option<&str>)>,
        dry_run: bool,
    ) -> Result<MemberRow, CoreError> {
        let target = identity_migration::target_for(user, here);
        match (target, here) {
            (None, Some((member, _))) => return Ok(member.clone()),
            (Some(target), _) if dry_run => return Ok(target),
            _ => {}
        }
        let mut tx = self.inner.store.begin().await?;
        let (member, changed) = self.apply_under_lock(&mut tx, user).await?;
        if changed {
            tx.commit().await?;
        } else {
            tx.rollback().await?;
        }
        Ok(member)
    }

    /// The legacy's row applied here within `tx`, read again under the member's lock.
    /// The row given was read before: a write of this member (a profile or password
    /// change, on either side) may have committed both databases since, or another
    /// request may have applied a newer row. The lock here is taken only after such a
    /// write is done (each holds it until it commits both databases), even for a member
    /// not here yet, and the legacy's row is read again under it, so that a row read
    /// before another write is never applied over it.
    async fn apply_under_lock(
        &self,
        tx: &mut identity_store::Tx,
        given: &legacy_db::LegacyUser,
    ) -> Result<(MemberRow, bool), CoreError> {
        tx.lock_member_even_absent(given.id).await?;
        let fresh = match self.legacy() {
            Some(link) => {
                link.db
                    .read(|pool| link.db.user_by_id(pool, given.id))
                    .await?
            }
            None => None,
        };
        let user = fresh.as_ref().unwrap_or(given);
        Ok(identity_migration::apply_legacy_user(tx, user).await?)
    }

    /// The legacy's member `id`, imported within `tx`.
    pub(crate) async fn import_into(
        &self,
        tx: &mut identity_store::Tx,
        id: i64,
    ) -> Result<MemberRow, CoreError> {
        let link = self.legacy().ok_or(CoreError::InvalidCredentials)?;
        let user = link
            .db
            .read(|pool| link.db.user_by_id(pool, id))
            .await?
            .ok_or(CoreError::InvalidCredentials)?;
        let (member, _) = self.apply_under_lock(tx, &user).await?;
        if member.is_withdrawn() {
            return Err(CoreError::InvalidCredentials);
        }
        Ok(member)
    }

    /// Checks a password against a stored digest. A dry run takes a hashing slot only
    /// if one is free at once, and is declined otherwise: it never takes capacity from
    /// real requests.
    pub(crate) async fn check_password(
        &self,
        password: &str,
        stored: Option<&str>,
        dry_run: bool,
    ) -> Result<Verdict, CoreError> {
        if !dry_run {
            return Ok(self.inner.hasher.verify(password, stored).await?);
        }
        match self.inner.hasher.verify_if_free(password, stored).await {
            Ok(verdict) => Ok(verdict),
            Err(PasswordError::Busy) => Err(CoreError::Declined),
            Err(e) => Err(e.into()),
        }
    }

    /// Email and password to a new session. Unknown email, wrong password and withdrawn
    /// member get the same answer after the same work.
    pub async fn authenticate(
        &self,
        form: &CredentialsForm,
        ctx: &RequestCtx,
    ) -> Result<IssuedSession, CoreError> {
        let email = form.email.clone().unwrap_or_default();
        let member = self.member_for_log_in(&email, ctx.dry_run).await?;
        let keys = self.throttle_keys(&email, ctx.client.as_deref());
        self.check_throttle(&keys, member.as_ref().map(|m| m.id), ctx.client.as_deref())
            .await?;
        let password = form.password.as_deref().unwrap_or("");
        let verdict = self
            .check_password(
                password,
                member.as_ref().map(|m| m.password_hash.as_str()),
                ctx.dry_run,
            )
            .await?;
        let (Verdict::Match { rehash }, Some(member)) = (verdict, member) else {
            if !ctx.dry_run {
                self.record_failure(&keys).await?;
            }
            return Err(CoreError::InvalidCredentials);
        };
        let new_hash = if rehash && !ctx.dry_run {
            let hash = self.inner.hasher.hash(password).await?;
            Some((member.password_hash.clone(), hash))
        } else {
            None
        };
        let now = self.now();
        let mut legacy = self.legacy_writes(ctx.dry_run).await?;
        let mut tx = self.inner.store.begin().await?;
        // The member may have been withdrawn while the password was being checked. A
        // dry run's member may exist only on the legacy: it is imported in this
        // transaction, which the dry run rolls back.
        let member = match tx.member_by_id(member.id).await? {
            Some(m) if !m.is_withdrawn() => m,
            None if ctx.dry_run => self.import_into(&mut tx, member.id).await?,
            _ => return Err(CoreError::InvalidCredentials),
        };
        let id = member.id;
        let issued = self.new_session(&mut legacy, &mut tx, member, now).await?;
        if let Some((verified, hash)) = &new_hash {
            tx.rehash_password(id, verified, hash).await?;
        }
        if let Some(client) = &ctx.client {
            tx.remember_client(id, &throttle_client_key(client), now.as_micros())
                .await?;
        }
        self.finish_both(legacy, tx, ctx.dry_run).await?;
        Ok(issued)
    }
}
