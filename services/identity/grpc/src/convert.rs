//! Conversions between domain values and `identity.v1` messages, and from domain errors
//! to gRPC statuses.

use identity_core::{ChangeKind, ChangeRow, CoreError, CursorError, IssuedSession, MemberRow};
use identity_proto::identity::v1 as pb;
use member_contract::{Errors, Timestamp};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

pub fn timestamp(t: Timestamp) -> prost_types::Timestamp {
    let micros = t.as_micros();
    prost_types::Timestamp {
        seconds: micros.div_euclid(1_000_000),
        nanos: (micros.rem_euclid(1_000_000) * 1000) as i32,
    }
}

pub fn member(m: &MemberRow) -> pb::Member {
    pb::Member {
        id: m.id,
        email: m.email.clone(),
        nickname: m.nickname.clone(),
        phone_number: m.phone_number.clone(),
        profile_image_url: m.profile_image_url.clone(),
        create_time: Some(timestamp(Timestamp::from_micros(m.created_at))),
        update_time: Some(timestamp(Timestamp::from_micros(m.updated_at))),
    }
}

pub fn public_member(m: &MemberRow) -> pb::PublicMember {
    pb::PublicMember {
        id: m.id,
        nickname: m.nickname.clone(),
        profile_image_url: m.profile_image_url.clone(),
        create_time: Some(timestamp(Timestamp::from_micros(m.created_at))),
    }
}

pub fn session(s: &IssuedSession) -> pb::Session {
    pb::Session {
        access_token: s.access_token.clone(),
        refresh_token: s.refresh_token.clone(),
        access_token_expire_time: Some(timestamp(s.access_expires_at)),
        refresh_token_expire_time: Some(timestamp(s.refresh_expires_at)),
        session_id: s.session_id.clone(),
        member: Some(member(&s.member)),
    }
}

/// Field violations in the legacy's words.
pub fn invalid(errors: &Errors) -> Status {
    let violations: Vec<FieldViolation> = errors
        .iter()
        .map(|(field, message)| FieldViolation::new(field.name(), message))
        .collect();
    let code = if errors.only_taken() {
        Code::AlreadyExists
    } else {
        Code::InvalidArgument
    };
    let summary = errors
        .iter()
        .map(|(f, m)| format!("{} {m}", f.name()))
        .collect::<Vec<_>>()
        .join("; ");
    Status::with_error_details(code, summary, ErrorDetails::with_bad_request(violations))
}

pub fn status(e: CoreError) -> Status {
    if matches!(e, CoreError::Unavailable(_)) {
        // The one log line of an internal failure, with its cause.
        tracing::error!(error = %e.chain(), "request failed");
    }
    match e {
        CoreError::Validation(errors) => invalid(&errors),
        CoreError::InvalidCredentials => Status::unauthenticated("Invalid email or password"),
        CoreError::InvalidRefreshToken => Status::unauthenticated("Invalid refresh token"),
        CoreError::Unauthorized => Status::unauthenticated("Unauthorized"),
        CoreError::NotFound => Status::not_found("Not Found"),
        CoreError::Throttled { retry_after_secs } => Status::with_error_details(
            Code::ResourceExhausted,
            "Too many attempts",
            ErrorDetails::with_retry_info(Some(std::time::Duration::from_secs(retry_after_secs))),
        ),
        CoreError::Busy => Status::with_error_details(
            Code::ResourceExhausted,
            "password hashing is saturated",
            ErrorDetails::with_retry_info(Some(std::time::Duration::from_secs(1))),
        ),
        CoreError::Cursor(e) => cursor(e),
        CoreError::Unavailable(_) | CoreError::Declined => {
            Status::unavailable("temporarily unavailable")
        }
    }
}

/// The replica's change streams are all taken: RESOURCE_EXHAUSTED, retry in a second.
pub fn too_many_followers() -> Status {
    Status::with_error_details(
        Code::ResourceExhausted,
        "too many change streams on this replica: retry later or elsewhere",
        ErrorDetails::with_retry_info(Some(std::time::Duration::from_secs(1))),
    )
}

/// A cursor of the change log that cannot be followed: OUT_OF_RANGE with the reason
/// (`CURSOR_EXPIRED`, `CURSOR_AHEAD`) and the bounds in google.rpc.ErrorInfo.
fn cursor(e: CursorError) -> Status {
    let (reason, metadata) = match e {
        CursorError::Negative => return bad_field("after_seq", "must not be negative"),
        CursorError::Expired { first_kept, .. } => (
            "CURSOR_EXPIRED",
            [("first_kept_seq".to_owned(), first_kept.to_string())],
        ),
        CursorError::Ahead { last, .. } => {
            ("CURSOR_AHEAD", [("last_seq".to_owned(), last.to_string())])
        }
    };
    Status::with_error_details(
        Code::OutOfRange,
        e.to_string(),
        ErrorDetails::with_error_info(reason, "identity.v1", metadata),
    )
}

/// One change of the log as its message; a withdrawal carries no member.
pub fn member_change(c: &ChangeRow) -> pb::MemberChange {
    let kind = match c.kind {
        ChangeKind::Created => pb::member_change::Kind::Created,
        ChangeKind::Updated => pb::member_change::Kind::Updated,
        ChangeKind::Withdrawn => pb::member_change::Kind::Withdrawn,
    };
    pb::MemberChange {
        seq: c.seq,
        member_id: c.member_id,
        kind: kind.into(),
        change_time: Some(timestamp(Timestamp::from_micros(c.changed_at))),
        member: c.member.as_ref().map(public_member),
    }
}

/// One invalid field, for requests that break a rule before any flow runs.
pub fn bad_field(field: &str, message: &str) -> Status {
    Status::with_error_details(
        Code::InvalidArgument,
        format!("{field} {message}"),
        ErrorDetails::with_bad_request(vec![FieldViolation::new(field, message)]),
    )
}

/// Refuses text with NUL characters (PostgreSQL cannot store them).
pub fn reject_nul(fields: &[(&str, Option<&str>)]) -> Result<(), Status> {
    match fields
        .iter()
        .find(|(_, v)| v.is_some_and(|v| v.contains('\0')))
    {
        Some((name, _)) => Err(bad_field(name, "must not contain NUL characters")),
        None => Ok(()),
    }
}
