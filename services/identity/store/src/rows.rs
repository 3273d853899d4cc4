//! Rows as read from the database.

use sqlx::Row;
use sqlx::any::AnyRow;

/// A member row. Times are microseconds since the epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRow {
    pub id: i64,
    pub email: String,
    pub password_hash: String,
    pub nickname: String,
    pub phone_number: Option<String>,
    pub profile_image_url: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub deleted_at: Option<i64>,
}

/// The member columns, for `concat!` into static queries.
macro_rules! member_columns {
    () => {
        "m.id, m.email, m.password_hash, m.nickname, m.phone_number, m.profile_image_url, m.created_at, m.updated_at, m.deleted_at"
    };
}
pub(crate) use member_columns;

impl MemberRow {
    pub fn is_withdrawn(&self) -> bool {
        self.deleted_at.is_some()
    }

    pub(crate) fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            id: row.try_get("id")?,
            email: row.try_get("email")?,
            password_hash: row.try_get("password_hash")?,
            nickname: row.try_get("nickname")?,
            phone_number: row.try_get("phone_number")?,
            profile_image_url: row.try_get("profile_image_url")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
            deleted_at: row.try_get("deleted_at")?,
        })
    }
}

/// A session (one log-in) row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    pub id: String,
    pub member_id: i64,
    /// The `jti` of the one access token that is current for this session.
    pub access_jti: String,
    pub created_at: i64,
    pub access_expires_at: i64,
    /// Absolute: refresh rotation does not extend it.
    pub refresh_expires_at: i64,
    pub ended_at: Option<i64>,
    /// Its row in the legacy's `sessions` table, while migrating.
    pub legacy_session_id: Option<i64>,
}

/// The session columns, for `concat!` into static queries.
macro_rules! session_columns {
    () => {
        "s.id AS session_id, s.member_id, s.access_jti, s.created_at AS session_created_at, s.access_expires_at, s.refresh_expires_at, s.ended_at, s.legacy_session_id"
    };
}
pub(crate) use session_columns;

impl SessionRow {
    pub fn is_ended(&self) -> bool {
        self.ended_at.is_some()
    }

    pub(crate) fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            id: row.try_get("session_id")?,
            member_id: row.try_get("member_id")?,
            access_jti: row.try_get("access_jti")?,
            created_at: row.try_get("session_created_at")?,
            access_expires_at: row.try_get("access_expires_at")?,
            refresh_expires_at: row.try_get("refresh_expires_at")?,
            ended_at: row.try_get("ended_at")?,
            legacy_session_id: row.try_get("legacy_session_id")?,
        })
    }
}

/// A refresh token (by hash) and the session it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshRow {
    pub token_hash: String,
    pub rotated_at: Option<i64>,
    pub session: SessionRow,
}
