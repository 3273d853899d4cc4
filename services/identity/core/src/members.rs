//! Member flows: reads, sign-up, profile changes and withdrawal.

use identity_store::{MemberRow, NewMember, ProfileUpdate, StoreError};
use legacy_db::ProfileColumn;
use member_contract::forms::{ProfileChanges, SignUpForm};
use member_contract::{Errors, Field, MemberView, Rule, Timestamp};

use crate::sessions::Principal;
use crate::{CoreError, Identity, RequestCtx};

/// The most ids one batch read takes (gRPC; REST reads at most 100).
pub const MAX_BATCH_IDS: usize = 1000;

/// A member row as the contract renders it.
pub fn member_view(row: &MemberRow) -> MemberView {
    MemberView {
        id: row.id,
        email: row.email.clone(),
        nickname: row.nickname.clone(),
        phone_number: row.phone_number.clone(),
        profile_image_url: row.profile_image_url.clone(),
        created_at: Timestamp::from_micros(row.created_at),
        updated_at: Timestamp::from_micros(row.updated_at),
    }
}

fn taken_field(field: &'static str) -> Field {
    if field == "email" {
        Field::Email
    } else {
        Field::PhoneNumber
    }
}

impl Identity {
    /// An active member by id.
    pub async fn get_member(&self, id: i64) -> Result<MemberRow, CoreError> {
        match self.inner.store.member_by_id(id).await? {
            Some(m) if !m.is_withdrawn() => Ok(m),
            _ => Err(CoreError::NotFound),
        }
    }

    /// The active members among `ids`, ordered by id.
    pub async fn batch_get_members(&self, ids: &[i64]) -> Result<Vec<MemberRow>, CoreError> {
        Ok(self.inner.store.active_members_by_ids(ids).await?)
    }

    /// An active member by email (normalised as the contract says) or phone number.
    pub async fn lookup_member(
        &self,
        email: Option<&str>,
        phone: Option<&str>,
    ) -> Result<MemberRow, CoreError> {
        let found = match (email, phone) {
            (Some(e), _) => {
                self.inner
                    .store
                    .member_by_email(&member_contract::Email::normalize(e))
                    .await?
            }
            (None, Some(p)) => self.inner.store.member_by_phone(p).await?,
            (None, None) => None,
        };
        found
            .filter(|m| !m.is_withdrawn())
            .ok_or(CoreError::NotFound)
    }

    /// Creates a member: every rule of every field checked at once, uniqueness included.
    /// A dry run checks the same (on both sides while migrating) and writes nothing: no
    /// row, no hash, no value of either side's id sequence; it answers with id 0.
    pub async fn sign_up(
        &self,
        form: &SignUpForm,
        ctx: &RequestCtx,
    ) -> Result<MemberRow, CoreError> {
        let (mut errors, valid) = form.validate();
        let (email, phone) = form.uniqueness_keys();
        if let Some(e) = &email
            && self.inner.store.email_taken(e, None).await?
        {
            errors.add(Field::Email, Rule::Taken);
        }
        if let Some(p) = &phone
            && self.inner.store.phone_taken(p, None).await?
        {
            errors.add(Field::PhoneNumber, Rule::Taken);
        }
        let valid = match valid {
            Some(v) if errors.is_empty() => v,
            _ => return Err(CoreError::Validation(errors)),
        };
        let (password_hash, legacy_digest) = if ctx.dry_run {
            (String::new(), None)
        } else {
            let hash = self.inner.hasher.hash(valid.password.expose()).await?;
            let digest = match self.legacy() {
                Some(link) => Some(
                    self.inner
                        .hasher
                        .legacy_bcrypt(valid.password.expose(), link.bcrypt_cost)
                        .await?,
                ),
                None => None,
            };
            (hash, digest)
        };
        let now = self.now().as_micros();
        // While migrating, the id comes from the legacy's sequence: the row is written
        // there first, in its format.
        let mut legacy = self.legacy_writes(ctx.dry_run).await?;
        let legacy_id = legacy
            .insert_user(&legacy_db::NewLegacyUser {
                id: None,
                email: valid.email.as_str().to_owned(),
                password_digest: legacy_digest.clone().unwrap_or_default(),
                nickname: valid.nickname.as_str().to_owned(),
                phone_number: valid.phone_number.as_ref().map(|p| p.as_str().to_owned()),
                profile_image_url: valid
                    .profile_image_url
                    .as_ref()
                    .map(|u| u.as_str().to_owned()),
                now: Timestamp::from_micros(now),
            })
            .await?;
        let new = NewMember {
            id: legacy_id,
            email: valid.email.into_inner(),
            password_hash,
            nickname: valid.nickname.into_inner(),
            phone_number: valid.phone_number.map(|p| p.into_inner()),
            profile_image_url: valid.profile_image_url.map(|u| u.into_inner()),
            now,
        };
        if ctx.dry_run {
            return Ok(MemberRow {
                id: 0,
                email: new.email,
                password_hash: new.password_hash,
                nickname: new.nickname,
                phone_number: new.phone_number,
                profile_image_url: new.profile_image_url,
                created_at: now,
                updated_at: now,
                deleted_at: None,
            });
        }
        let mut tx = self.inner.store.begin().await?;
        let row = match tx.insert_member(&new).await {
            Ok(row) => row,
            Err(StoreError::Taken(field)) => {
                // Lost a race with a concurrent sign-up.
                let mut errors = Errors::new();
                errors.add(taken_field(field), Rule::Taken);
                return Err(CoreError::Validation(errors));
            }
            Err(e) => return Err(e.into()),
        };
        if let Some(digest) = &legacy_digest {
            tx.set_legacy_digest(row.id, digest).await?;
        }
        self.finish_both(legacy, tx, ctx.dry_run).await?;
        Ok(row)
    }

    /// Applies a validated profile change for the acting member. Both rows are locked
    /// while the change is applied (the legacy's first), so that two concurrent changes
    /// of different fields both stay; the legacy gets only the columns this change
    /// sets, so that a change made there meanwhile (not synced yet) stays too.
    pub async fn update_profile(
        &self,
        who: &Principal,
        changes: &ProfileChanges,
        ctx: &RequestCtx,
    ) -> Result<MemberRow, CoreError> {
        if let Some(Some(phone)) = &changes.phone_number
            && self
                .inner
                .store
                .phone_taken(phone.as_str(), Some(who.member.id))
                .await?
        {
            let mut errors = Errors::new();
            errors.add(Field::PhoneNumber, Rule::Taken);
            return Err(CoreError::Validation(errors));
        }
        let update = ProfileUpdate {
            nickname: changes.nickname.as_ref().map(|n| n.as_str().to_owned()),
            phone_number: changes
                .phone_number
                .as_ref()
                .map(|p| p.as_ref().map(|p| p.as_str().to_owned())),
            profile_image_url: changes
                .profile_image_url
                .as_ref()
                .map(|u| u.as_ref().map(|u| u.as_str().to_owned())),
        };
        let now = self.now();
        let mut legacy = self.legacy_writes(ctx.dry_run).await?;
        let legacy_row = legacy.lock_user(who.member.id).await?;
        let mut tx = self.inner.store.begin().await?;
        let current = match tx.lock_member(who.member.id).await? {
            Some(m) if !m.is_withdrawn() => m,
            _ => return Err(CoreError::Unauthorized),
        };
        let row = match tx.update_profile(&current, &update, now.as_micros()).await {
            Ok(row) => row,
            Err(StoreError::Taken(field)) => {
                let mut errors = Errors::new();
                errors.add(taken_field(field), Rule::Taken);
                return Err(CoreError::Validation(errors));
            }
            Err(e) => return Err(e.into()),
        };
        if let Some(user) = &legacy_row {
            let columns = legacy_columns(&update, user);
            // The row's own time, so that both sides hold the same `updated_at`.
            legacy
                .update_profile(user.id, &columns, Timestamp::from_micros(row.updated_at))
                .await?;
        }
        self.finish_both(legacy, tx, ctx.dry_run).await?;
        Ok(row)
    }

    /// Withdraws the acting member: every session ended, personal data scrubbed.
    pub async fn withdraw(&self, who: &Principal, ctx: &RequestCtx) -> Result<(), CoreError> {
        let digest = match self.legacy() {
            Some(link) if !ctx.dry_run => {
                Some(self.unusable_legacy_digest(link.bcrypt_cost).await?)
            }
            _ => None,
        };
        let now = self.now().as_micros();
        let id = who.member.id;
        let mut legacy = self.legacy_writes(ctx.dry_run).await?;
        legacy.end_user_sessions(id, None).await?;
        if let Some(digest) = &digest {
            legacy
                .withdraw_user(id, digest, Timestamp::from_micros(now))
                .await?;
        }
        let mut tx = self.inner.store.begin().await?;
        tx.withdraw(id, now).await?;
        tx.end_member_sessions(id, None, "withdrawn", now).await?;
        if let Some(digest) = &digest {
            tx.set_legacy_digest(id, digest).await?;
        }
        self.finish_both(legacy, tx, ctx.dry_run).await?;
        Ok(())
    }
}

/// The columns of `update` whose value differs from the legacy's row: what an
/// ActiveRecord partial write of the same change would set.
fn legacy_columns<'a>(
    update: &'a ProfileUpdate,
    user: &legacy_db::LegacyUser,
) -> Vec<(ProfileColumn, Option<&'a str>)> {
    let mut columns = Vec::new();
    if let Some(n) = &update.nickname
        && *n != user.nickname
    {
        columns.push((ProfileColumn::Nickname, Some(n.as_str())));
    }
    if let Some(p) = &update.phone_number
        && *p != user.phone_number
    {
        columns.push((ProfileColumn::PhoneNumber, p.as_deref()));
    }
    if let Some(u) = &update.profile_image_url
        && *u != user.profile_image_url
    {
        columns.push((ProfileColumn::ProfileImageUrl, u.as_deref()));
    }
    columns
}
