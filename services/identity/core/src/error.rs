//! What a flow can fail with; the adapters map it to the legacy's HTTP answers and to
//! gRPC status codes. Internal details are logged here, never handed to clients.

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
    /// The database is unreachable or failed.
    #[error("unavailable")]
    Unavailable,
}

impl From<StoreError> for CoreError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "store failure");
        CoreError::Unavailable
    }
}

impl From<PasswordError> for CoreError {
    fn from(e: PasswordError) -> Self {
        match e {
            PasswordError::Busy => CoreError::Busy,
            PasswordError::Internal(reason) => {
                tracing::error!(%reason, "password hashing failure");
                CoreError::Unavailable
            }
        }
    }
}

impl From<Errors> for CoreError {
    fn from(e: Errors) -> Self {
        CoreError::Validation(e)
    }
}
