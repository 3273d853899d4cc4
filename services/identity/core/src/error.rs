//! What a flow can fail with; the adapters map it to the legacy's HTTP answers and to
//! gRPC status codes. An internal failure keeps its cause (the database's, the legacy's,
//! the hashing pool's) for the one log line the adapter writes; clients never see it.

use identity_passwords::PasswordError;
use identity_store::StoreError;
use member_contract::Errors;

#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// Broken field rules (422 / INVALID_ARGUMENT, or ALREADY_EXISTS when only taken).
    #[error("validation failed")]
    Validation(Errors),
    /// Log-in refused (unknown email, wrong password, withdrawn member alike).
    #[error("invalid email or password")]
    InvalidCredentials,
    #[error("invalid refresh token")]
    InvalidRefreshToken,
    /// No valid, current access token.
    #[error("unauthorized")]
    Unauthorized,
    #[error("not found")]
    NotFound,
    /// Too many failed log-ins: retry after this many seconds.
    #[error("too many attempts")]
    Throttled { retry_after_secs: u64 },
    /// Password hashing saturated: retry shortly.
    #[error("busy")]
    Busy,
    /// A dry run declined: it would have taken hashing capacity from real requests.
    /// Not an answer of the contract; the proxy counts the replay as skipped.
    #[error("dry run declined")]
    Declined,
    /// A change-log cursor that cannot be followed.
    #[error(transparent)]
    Cursor(#[from] crate::changes::CursorError),
    /// The database (either side's) is unreachable or failed, or a resource is
    /// missing; the cause is kept for the log.
    #[error("unavailable: {0}")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl CoreError {
    /// What made the service unable to answer, for metrics (`None` for answers of the
    /// contract): `hashing_busy` (password hashing saturated), `legacy_database` (the
    /// legacy's database failed: a write-through or a read while migrating),
    /// `database` (its own), `internal`.
    pub fn failure_cause(&self) -> Option<&'static str> {
        match self {
            CoreError::Busy => Some("hashing_busy"),
            CoreError::Unavailable(source) => Some(
                if source.downcast_ref::<legacy_db::LegacyError>().is_some() {
                    "legacy_database"
                } else if source.downcast_ref::<StoreError>().is_some() {
                    "database"
                } else {
                    "internal"
                },
            ),
            _ => None,
        }
    }

    /// An internal failure with its cause.
    pub fn unavailable(cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        CoreError::Unavailable(cause.into())
    }

    /// The error and its causes, for a log line.
    pub fn chain(&self) -> String {
        let mut out = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            let text = cause.to_string();
            if !out.ends_with(&text) {
                out.push_str(": ");
                out.push_str(&text);
            }
            source = cause.source();
        }
        out
    }
}

impl From<StoreError> for CoreError {
    fn from(e: StoreError) -> Self {
        CoreError::unavailable(e)
    }
}

impl From<PasswordError> for CoreError {
    fn from(e: PasswordError) -> Self {
        match e {
            PasswordError::Busy => CoreError::Busy,
            PasswordError::Internal(reason) => {
                CoreError::unavailable(format!("password hashing: {reason}"))
            }
        }
    }
}

impl From<Errors> for CoreError {
    fn from(e: Errors) -> Self {
        CoreError::Validation(e)
    }
}
