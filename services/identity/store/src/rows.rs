//! Rows as read from the database: decoded from the Any driver's rows, or straight
//! from PostgreSQL's or SQLite's own (the batched hot reads, see `reads`).

use point_reads::Decodes;
use sqlx::ColumnIndex;

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

    pub(crate) fn from_row<'r, R: Decodes<'r>>(row: &'r R) -> Result<Self, sqlx::Error>
    where
        &'r str: ColumnIndex<R>,
    {
        Ok(Self {
            id: row.int("id")?,
            email: row.text("email")?,
            password_hash: row.text("password_hash")?,
            nickname: row.text("nickname")?,
            phone_number: row.maybe_text("phone_number")?,
            profile_image_url: row.maybe_text("profile_image_url")?,
            created_at: row.int("created_at")?,
            updated_at: row.int("updated_at")?,
            deleted_at: row.maybe_int("deleted_at")?,
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

    pub(crate) fn from_row<'r, R: Decodes<'r>>(row: &'r R) -> Result<Self, sqlx::Error>
    where
        &'r str: ColumnIndex<R>,
    {
        Ok(Self {
            id: row.text("session_id")?,
            member_id: row.int("member_id")?,
            access_jti: row.text("access_jti")?,
            created_at: row.int("session_created_at")?,
            access_expires_at: row.int("access_expires_at")?,
            refresh_expires_at: row.int("refresh_expires_at")?,
            ended_at: row.maybe_int("ended_at")?,
            legacy_session_id: row.maybe_int("legacy_session_id")?,
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
