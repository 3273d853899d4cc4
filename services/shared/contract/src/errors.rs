//! The contract's error answers: which status and body each failure gets, for the legacy
//! and for the identity service (they differ only in the contract's intended differences).

use serde_json::json;

use crate::render::json_response_body;
use crate::validation::Errors;

/// Who is answering: the legacy (and its simulator) or the new identity service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    Legacy,
    Identity,
}

/// A failure a client can observe.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ContractError {
    /// A body that cannot be parsed: `400`, empty body.
    #[error("malformed request body")]
    MalformedBody,
    /// `params.require(name)` found nothing: `400 {"error":"param is missing ..."}`.
    #[error("param is missing or the value is empty: {0}")]
    ParamMissing(&'static str),
    /// Where the legacy crashes (`500`, empty body) the identity service answers `400`
    /// with this message (intended difference 1).
    #[error("{0}")]
    LegacyCrash(&'static str),
    /// No route: `404`, empty body.
    #[error("no route")]
    RouteNotFound,
    /// No member with that id: `404 {"error":"Not Found"}`.
    #[error("Not Found")]
    NotFound,
    #[error("Unauthorized")]
    Unauthorized,
    #[error("Invalid email or password")]
    InvalidCredentials,
    #[error("Invalid refresh token")]
    InvalidRefreshToken,
    /// `422 {"errors":{...}}`.
    #[error("validation failed")]
    Validation(Errors),
    /// Throttled log-ins (identity only, intended difference 4).
    #[error("Too many attempts")]
    TooManyAttempts { retry_after_secs: u64 },
    /// Overloaded or a dependency down: `503`, retry later.
    #[error("Service Unavailable")]
    Unavailable { retry_after_secs: u64 },
    /// A bug or an unexpected failure: `500`, empty body, details only in logs.
    #[error("internal error")]
    Internal,
}

/// A rendered error: status, JSON body (if any) and a `Retry-After` value (if any).
/// `exception` marks answers that Rails' exception handling produces rather than a
/// controller (see `headers::render_exception`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorAnswer {
    pub status: u16,
    pub body: Option<String>,
    pub retry_after_secs: Option<u64>,
    pub exception: bool,
}

impl ContractError {
    pub fn answer(&self, flavor: Flavor) -> ErrorAnswer {
        let error = |status: u16, msg: &str| ErrorAnswer {
            status,
            body: Some(json_response_body(&json!({ "error": msg }))),
            retry_after_secs: None,
            exception: false,
        };
        let exception = |status: u16| ErrorAnswer {
            status,
            body: None,
            retry_after_secs: None,
            exception: true,
        };
        match self {
            ContractError::MalformedBody => exception(400),
            ContractError::ParamMissing(name) => error(
                400,
                &format!("param is missing or the value is empty: {name}"),
            ),
            ContractError::LegacyCrash(msg) => match flavor {
                Flavor::Legacy => exception(500),
                Flavor::Identity => error(400, msg),
            },
            ContractError::RouteNotFound => exception(404),
            ContractError::NotFound => error(404, "Not Found"),
            ContractError::Unauthorized => error(401, "Unauthorized"),
            ContractError::InvalidCredentials => error(401, "Invalid email or password"),
            ContractError::InvalidRefreshToken => error(401, "Invalid refresh token"),
            ContractError::Validation(errors) => ErrorAnswer {
                status: 422,
                body: Some(json_response_body(&errors.to_json())),
                retry_after_secs: None,
                exception: false,
            },
            ContractError::TooManyAttempts { retry_after_secs } => ErrorAnswer {
                retry_after_secs: Some(*retry_after_secs),
                ..error(429, "Too many attempts")
            },
            ContractError::Unavailable { retry_after_secs } => ErrorAnswer {
                retry_after_secs: Some(*retry_after_secs),
                ..error(503, "Service Unavailable")
            },
            ContractError::Internal => exception(500),
        }
    }
}

impl From<Errors> for ContractError {
    fn from(e: Errors) -> Self {
        ContractError::Validation(e)
    }
}

impl From<crate::params::BodyError> for ContractError {
    fn from(_: crate::params::BodyError) -> Self {
        ContractError::MalformedBody
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crash_differs_by_flavor() {
        let e = ContractError::LegacyCrash("param is not an object: user");
        assert_eq!(
            e.answer(Flavor::Legacy),
            ErrorAnswer {
                status: 500,
                body: None,
                retry_after_secs: None,
                exception: true
            }
        );
        assert_eq!(e.answer(Flavor::Identity).status, 400);
        assert_eq!(
            ContractError::ParamMissing("user")
                .answer(Flavor::Legacy)
                .body
                .unwrap(),
            r#"{"error":"param is missing or the value is empty: user"}"#
        );
    }
}
