//! `POST /internal/write-effects`: the migration proxy asks, after a write it routed,
//! whether the write did the same on both sides (see `identity_migration::write_effects`).
//!
//! The proxy sends the client's request again, as it was (method and path in
//! `x-write-method` and `x-write-path`, its `authorization`, `content-type` and body),
//! when it came in at the proxy (`x-write-at`, microseconds since the epoch) and the member's
//! `updated_at` in the primary's answer (`x-write-updated-at`) and when that answer
//! came back (`x-write-answered-at`), so that no other write is held against it; the member id from the primary's answer when it had one or from
//! an earlier answer here (`x-write-member`), and the mark `x-shadow: write-effects`, which the proxy strips from every client's request:
//! without it the path is no route, as on the legacy. Nothing is written; the answer
//! names the differing fields, never their values:
//!
//! - `200 {"write":"PATCH /api/v1/users/me","member_id":5,"differences":[],
//!   "superseded":false,"behind":false}` (`superseded`: the row is not as the write
//!   left it, only the two sides' agreement was judged; `behind`: the identity
//!   service's row is older than the legacy's, the sync has not caught up);
//! - `409` when there is no legacy database to compare with (not migrating);
//! - `422` when the request is no write, or names no member (a legacy token whose row
//!   a withdrawal deleted; a log-out's is then checked to work nowhere);
//! - `503` when a database does not answer.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Response, StatusCode, header};
use identity_migration::{Current, Expected, Written, write_effects};
use identity_tokens::hash_refresh_token;
use member_contract::auth::bearer_token;
use member_contract::forms::{PasswordChangeForm, ProfileForm, SignUpForm};
use member_contract::{Endpoint, Params, parse_body, parse_query, route};
use serde_json::json;

use crate::AppState;

/// The proxy's mark on a write-effect question.
pub const MARK: &str = "write-effects";

pub(crate) fn answer(status: StatusCode, body: serde_json::Value) -> Response<Body> {
    let mut r = Response::new(Body::from(body.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}

pub(crate) fn refuse(status: StatusCode, error: &str) -> Response<Body> {
    answer(status, json!({ "error": error }))
}

/// Whether `request` carries the proxy's mark `mark` (`x-shadow`), which the proxy
/// strips from every client's request.
pub(crate) fn marked(request: &Request, mark: &str) -> bool {
    request
        .headers()
        .get("x-shadow")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(mark.as_bytes()))
}

pub async fn handle(State(state): State<AppState>, request: Request) -> Response<Body> {
    if !marked(&request, MARK) {
        // Not the proxy's question: the path is the contract's (no route).
        return crate::contract::handle(State(state), request).await;
    }
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, state.max_body_bytes).await else {
        return refuse(StatusCode::PAYLOAD_TOO_LARGE, "body too large");
    };
    let Some(link) = state.identity.legacy() else {
        return refuse(StatusCode::CONFLICT, "not migrating: no legacy database");
    };
    let headers = &parts.headers;
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(method), Some(target), Some(received_at)) = (
        text("x-write-method"),
        text("x-write-path"),
        text("x-write-at").and_then(|v| v.parse::<i64>().ok()),
    ) else {
        return refuse(
            StatusCode::UNPROCESSABLE_ENTITY,
            "x-write-method, x-write-path and x-write-at are required",
        );
    };
    let (path, query) = target
        .split_once('?')
        .map_or((target, None), |(p, q)| (p, Some(q)));
    let Some(endpoint) = route(method, path).filter(|e| !e.is_safe()) else {
        return refuse(
            StatusCode::UNPROCESSABLE_ENTITY,
            "not a write of the contract",
        );
    };
    let Some(mut params) = params(method, headers, query, &body) else {
        return refuse(StatusCode::UNPROCESSABLE_ENTITY, "unreadable parameters");
    };
    let Some(expected) = expected(endpoint, &mut params) else {
        return refuse(
            StatusCode::UNPROCESSABLE_ENTITY,
            "the write was refused: it changed nothing",
        );
    };
    let answered: Option<i64> = text("x-write-member").and_then(|v| v.parse().ok());
    let token = bearer_token(text("authorization"));
    // The bearer's session is looked up only when it matters: to name the member when
    // the answer did not, or for the sessions the write should have ended.
    let named = match &token {
        Some(token) if answered.is_none() || expected.needs_current_session() => {
            match state.identity.session_named_by(token).await {
                Ok(named) => named,
                Err(e) => return unavailable(&e),
            }
        }
        _ => None,
    };
    let written = Written {
        received_at,
        updated_at: text("x-write-updated-at").map(str::to_owned),
        answered_at: text("x-write-answered-at").and_then(|v| v.parse().ok()),
    };
    let Some(member_id) = answered.or(named.as_ref().map(|n| n.member_id)) else {
        if let (Endpoint::LogOut, Some(token)) = (endpoint, &token) {
            return logged_out(&state, endpoint, token).await;
        }
        return refuse(StatusCode::UNPROCESSABLE_ENTITY, "no member named");
    };
    let current = named
        .filter(|n| n.member_id == member_id)
        .map(|n| Current {
            session_id: n.session_id,
            legacy_session_id: n.legacy_session_id,
        })
        .unwrap_or_default();
    match write_effects(
        state.identity.store(),
        &link.db,
        state.identity.hasher(),
        member_id,
        &expected,
        &current,
        &written,
    )
    .await
    {
        Ok(effects) => answer(
            StatusCode::OK,
            json!({
                "write": endpoint.label(),
                "member_id": member_id,
                "differences": effects.differences,
                "superseded": effects.superseded,
                "behind": effects.behind,
            }),
        ),
        Err(e) => unavailable(&e),
    }
}

/// A log-out whose token names no member any more: a legacy token whose row the
/// log-out deleted. The token must then work nowhere: nor as a session imported here.
async fn logged_out(state: &AppState, endpoint: Endpoint<'_>, token: &str) -> Response<Body> {
    let imported = state
        .identity
        .store()
        .imported_legacy_session(&hash_refresh_token(token))
        .await;
    match imported {
        Ok(found) => {
            let live = found.is_some_and(|(session, _)| !session.is_ended());
            let differences: &[&str] = if live { &["identity:sessions"] } else { &[] };
            answer(
                StatusCode::OK,
                json!({
                    "write": endpoint.label(),
                    "member_id": null,
                    "differences": differences,
                    "superseded": false,
                    "behind": false,
                }),
            )
        }
        Err(e) => unavailable(&e),
    }
}

fn unavailable(e: &dyn std::fmt::Display) -> Response<Body> {
    tracing::warn!(error = %e, "write effects not read");
    refuse(StatusCode::SERVICE_UNAVAILABLE, "a database did not answer")
}

/// The written request's parameters, read as the contract reads them.
fn params(method: &str, headers: &HeaderMap, query: Option<&str>, body: &[u8]) -> Option<Params> {
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok());
    let mut params = parse_body(method, content_type, body).ok()?;
    if let Some(q) = query {
        params.merge_query(parse_query(q).ok()?);
    }
    Some(params)
}

/// What the write asked for; `None` when its request could not have changed anything
/// (the primary refused it, and so would the contract).
fn expected(endpoint: Endpoint<'_>, params: &mut Params) -> Option<Expected> {
    Some(match endpoint {
        Endpoint::SignUp => {
            let form = SignUpForm::from_params(params).ok()?;
            let (_, valid) = form.validate();
            let valid = valid?;
            Expected::SignedUp {
                email: valid.email.into_inner(),
                nickname: valid.nickname.into_inner(),
                phone_number: valid.phone_number.map(|p| p.into_inner()),
                profile_image_url: valid.profile_image_url.map(|u| u.into_inner()),
            }
        }
        Endpoint::UpdateMe => {
            let form = ProfileForm::from_params(params).ok()?;
            Expected::Profile(form.validate().ok()?)
        }
        Endpoint::ChangePassword => {
            let form = PasswordChangeForm::from_params(params).ok()?;
            match form.password.as_deref() {
                // The digest stays, as `has_secure_password` leaves it.
                Some("") => Expected::PasswordChanged(None),
                _ => Expected::PasswordChanged(Some(form.validate_new().ok()?)),
            }
        }
        Endpoint::Withdraw => Expected::Withdrawn,
        Endpoint::LogOut => Expected::LoggedOut,
        Endpoint::LogIn | Endpoint::Refresh => Expected::Agreement,
        Endpoint::BatchLookup | Endpoint::ShowMe | Endpoint::ShowMember(_) => return None,
    })
}
