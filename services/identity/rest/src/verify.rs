//! `POST /internal/verify`: the migration proxy asks, for the rollout autopilot, whether
//! the members written in a step's window are the same on both sides (the data verify of
//! `identity_migration::verify_changed_since`: every member either side changed at or
//! after `x-verify-since`, microseconds since the epoch, compared field by field, what
//! differs compared again after pauses). Only requests with the mark `x-shadow: verify`,
//! which the proxy strips from every client's request, are answered; without it the path
//! is no route, as on the legacy. Nothing is written; the answer names fields, never
//! values or members:
//!
//! - `200 {"since":"2026-12-04T20:00:00.000Z","compared":120,"deviating":0,"settled":1,
//!   "fields":{"nickname":1}}`;
//! - `409` when there is no legacy database to compare with (not migrating);
//! - `422` without a readable `x-verify-since`, or when too many members changed for a
//!   window (a whole verify is `identity migrate verify`'s);
//! - `503` when a database does not answer.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{Response, StatusCode};
use identity_migration::{MigrationError, VerifyOptions, verify_changed_since};
use member_contract::Timestamp;
use serde_json::json;

use crate::AppState;
use crate::effects::{answer, marked, refuse};

/// The proxy's mark on a verify question.
pub const MARK: &str = "verify";

/// Members whose deviations are told apart by field (the rest are counted).
const MAX_EXAMPLES: usize = 1000;

pub async fn handle(State(state): State<AppState>, request: Request) -> Response<Body> {
    if !marked(&request, MARK) {
        return crate::contract::handle(State(state), request).await;
    }
    let Some(link) = state.identity.legacy() else {
        return refuse(StatusCode::CONFLICT, "not migrating: no legacy database");
    };
    let Some(since) = request
        .headers()
        .get("x-verify-since")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i64>().ok())
        .filter(|micros| *micros >= 0)
    else {
        return refuse(
            StatusCode::UNPROCESSABLE_ENTITY,
            "x-verify-since (microseconds since the epoch) is required",
        );
    };
    let since = Timestamp::from_micros(since);
    // Within the request's deadline: a write still on its way is compared again
    // after a pause longer than the sync's interval.
    let options = VerifyOptions {
        max_examples: MAX_EXAMPLES,
        settle: Duration::from_secs(1),
        rounds: 3,
    };
    match verify_changed_since(state.identity.store(), &link.db, since, &options).await {
        Ok(report) => {
            let mut fields: BTreeMap<&str, u64> = BTreeMap::new();
            for d in &report.examples {
                for f in &d.fields {
                    *fields.entry(f).or_default() += 1;
                }
            }
            answer(
                StatusCode::OK,
                json!({
                    "since": since.to_json_string(),
                    "compared": report.compared,
                    "deviating": report.deviating_members,
                    "settled": report.settled,
                    "fields": fields,
                }),
            )
        }
        Err(MigrationError::Refused(why)) => refuse(StatusCode::UNPROCESSABLE_ENTITY, &why),
        Err(e) => {
            tracing::warn!(error = %e, "verify not done");
            refuse(StatusCode::SERVICE_UNAVAILABLE, "a database did not answer")
        }
    }
}
