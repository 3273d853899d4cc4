//! The timing and retry settings of a rule: `timeout`, `retries` and the durations in
//! them, in Istio's syntax, checked and converted.

use std::time::Duration;

use crate::duration::parse_duration;
use crate::route::{Retries, RetryOn};
use crate::virtual_service::HttpRetry;
use crate::{Location, RoutingError};

/// A rule's retry policy: `None` when `attempts` is 0 or absent (Istio's "retries
/// disabled"), after checking the other fields all the same, so that a typo is caught
/// before retries are turned on.
pub(super) fn retries(spec: &HttpRetry, at: &Location) -> Result<Option<Retries>, RoutingError> {
    let attempts = spec.attempts.unwrap_or(0);
    let attempts = u32::try_from(attempts)
        .ok()
        .filter(|attempts| i32::try_from(*attempts).is_ok())
        .ok_or_else(|| {
            RoutingError::invalid(
                at,
                "retries.attempts",
                format!("must be from 0 to {}, got {attempts}", i32::MAX),
            )
        })?;
    let optional = |text: &Option<String>, field| {
        text.as_deref()
            .map(|text| duration(text, at, field))
            .transpose()
    };
    let retries = Retries {
        attempts,
        per_try_timeout: optional(&spec.per_try_timeout, "retries.perTryTimeout")?,
        retry_on: match spec.retry_on.as_deref() {
            Some(text) => retry_conditions(text, at)?,
            None => vec![
                RetryOn::ConnectFailure,
                RetryOn::RefusedStream,
                RetryOn::Status(503),
            ],
        },
        backoff: optional(&spec.backoff, "retries.backoff")?,
    };
    Ok((attempts > 0).then_some(retries))
}

/// Istio's `retryOn`: Envoy's HTTP conditions and status codes. `retriable-status-codes`
/// and the gRPC conditions (`cancelled`, `deadline-exceeded`, `internal`,
/// `resource-exhausted`, `unavailable`) are accepted and never hold: listed codes are
/// retried by themselves, and the member API answers no gRPC.
fn retry_conditions(text: &str, at: &Location) -> Result<Vec<RetryOn>, RoutingError> {
    let mut conditions = Vec::new();
    for item in text
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
    {
        let condition = match item {
            "5xx" => RetryOn::ServerError,
            "gateway-error" => RetryOn::GatewayError,
            "reset" => RetryOn::Reset,
            "reset-before-request" => RetryOn::ResetBeforeRequest,
            "connect-failure" => RetryOn::ConnectFailure,
            "refused-stream" => RetryOn::RefusedStream,
            "retriable-4xx" => RetryOn::Retriable4xx,
            "retriable-status-codes"
            | "cancelled"
            | "deadline-exceeded"
            | "internal"
            | "resource-exhausted"
            | "unavailable" => continue,
            code => match code.parse::<u16>() {
                Ok(status) if (100..600).contains(&status) => RetryOn::Status(status),
                _ => {
                    return Err(RoutingError::invalid(
                        at,
                        "retries.retryOn",
                        format!(
                            "has {code:?}, which is not a retry condition the proxy knows (5xx, gateway-error, \
                             reset, reset-before-request, connect-failure, refused-stream, retriable-4xx, \
                             or a status code)"
                        ),
                    ));
                }
            },
        };
        if !conditions.contains(&condition) {
            conditions.push(condition);
        }
    }
    Ok(conditions)
}

/// A duration field of a rule, at least 1ms as Istio's schema requires.
pub(super) fn duration(text: &str, at: &Location, field: &str) -> Result<Duration, RoutingError> {
    let value = parse_duration(text).map_err(|error| {
        RoutingError::invalid(
            at,
            field,
            format!("is not a valid duration ({text:?}): {}", error.reason),
        )
    })?;
    if value < Duration::from_millis(1) {
        return Err(RoutingError::invalid(
            at,
            field,
            format!("must be at least 1ms, got {text:?}"),
        ));
    }
    Ok(value)
}
