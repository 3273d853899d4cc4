//! The legacy member API: every request under `/api/v1` (and any unknown path) comes
//! here, is routed as Rails routes it, parsed with Rails' parameter rules and answered
//! with the contract's bodies and Rails' headers.

use std::net::SocketAddr;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, Method, Response};
use identity_core::{CoreError, Principal, RequestCtx, member_view};
use member_contract::auth::bearer_token;
use member_contract::errors::Flavor;
use member_contract::exchange::Exchange;
use member_contract::forms::{self, CredentialsForm, PasswordChangeForm, ProfileForm, SignUpForm};
use member_contract::render::{session_json, users_json};
use member_contract::{ContractError, Endpoint, Params};

use crate::AppState;
use crate::respond::{self, Answer};

/// Why a request got no answer of its endpoint: an answer of the contract, or a dry
/// run the service declined (no answer of the contract at all).
enum Refused {
    Contract(ContractError),
    /// The service could not answer (hashing saturated, a database failed): the
    /// contract's answer, and the cause for the metrics.
    Failed(ContractError, &'static str),
    /// Not served: the proxy counts the replay as skipped, not as the new side's
    /// failure.
    Declined,
}

impl From<ContractError> for Refused {
    fn from(e: ContractError) -> Self {
        Refused::Contract(e)
    }
}

/// A domain failure as the request's answer.
fn refused(e: CoreError) -> Refused {
    match (e.failure_cause(), e) {
        (_, CoreError::Declined) => Refused::Declined,
        (Some(cause), other) => Refused::Failed(contract_error(other), cause),
        (None, other) => Refused::Contract(contract_error(other)),
    }
}

/// Maps a domain failure to the legacy's answer.
fn contract_error(e: CoreError) -> ContractError {
    if matches!(e, CoreError::Unavailable(_) | CoreError::Cursor(_)) {
        // The one log line of an internal failure, with its cause.
        tracing::error!(error = %e.chain(), "request failed");
    }
    match e {
        CoreError::Validation(errors) => ContractError::Validation(errors),
        CoreError::InvalidCredentials => ContractError::InvalidCredentials,
        CoreError::InvalidRefreshToken => ContractError::InvalidRefreshToken,
        CoreError::Unauthorized => ContractError::Unauthorized,
        CoreError::NotFound => ContractError::NotFound,
        CoreError::Throttled { retry_after_secs } => {
            ContractError::TooManyAttempts { retry_after_secs }
        }
        CoreError::Busy | CoreError::Declined => ContractError::Unavailable {
            retry_after_secs: 1,
        },
        // No REST route follows the change log.
        CoreError::Unavailable(_) | CoreError::Cursor(_) => ContractError::Unavailable {
            retry_after_secs: 5,
        },
    }
}

/// The client address for throttling.
fn client_address(
    state: &AppState,
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
) -> Option<String> {
    if state.trust_forwarded_for {
        let forwarded = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok());
        if let Some(ip) = identity_core::forwarded_client(forwarded, state.trusted_proxy_hops) {
            return Some(ip);
        }
    }
    peer.map(|p| p.ip().to_string())
}

pub async fn handle(State(state): State<AppState>, request: Request) -> Response<Body> {
    let started = Instant::now();
    let _in_flight = state.metrics.in_flight();
    let (parts, body) = request.into_parts();
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let (method, uri, headers) = (parts.method, parts.uri, parts.headers);
    let Ok(body) = axum::body::to_bytes(body, state.max_body_bytes).await else {
        state
            .metrics
            .observe_http("body too large", 413, started.elapsed());
        return Response::builder()
            .status(413)
            .body(Body::empty())
            .unwrap_or_default();
    };
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let mut exchange = Exchange::set_up(method.as_str(), uri.path(), header, || {
        let mut bytes = [0u8; 16];
        let _ = getrandom::fill(&mut bytes);
        bytes
    });
    let ctx = RequestCtx {
        dry_run: header("x-shadow").is_some_and(|v| v.eq_ignore_ascii_case("dry-run")),
        client: client_address(&state, &headers, peer),
    };
    let label = exchange
        .endpoint
        .as_ref()
        .map_or("no route", Endpoint::label);
    let answer = match exchange.endpoint {
        None => Err(Refused::Contract(ContractError::RouteNotFound)),
        Some(ep) => match read_params(&mut exchange, method.as_str(), &headers, uri.query(), &body)
        {
            Ok(mut params) => {
                dispatch(
                    &state,
                    ep,
                    &mut params,
                    header("authorization").as_deref(),
                    &ctx,
                )
                .await
            }
            Err(e) => Err(e.into()),
        },
    };
    let outcome = match answer {
        Ok(a) => Ok((a.status, a.body, a.retry_after_secs)),
        Err(Refused::Contract(e)) => Err(e),
        Err(Refused::Failed(e, cause)) => {
            state.metrics.count_failure(cause);
            Err(e)
        }
        Err(Refused::Declined) => {
            state
                .metrics
                .observe_http("dry run declined", 503, started.elapsed());
            return respond::declined();
        }
    };
    let (rendered, retry_after) = exchange.render(outcome, Flavor::Identity, started.elapsed());
    state
        .metrics
        .observe_http(label, rendered.status, started.elapsed());
    // Every request is counted in the metrics; the log keeps server errors (and, at
    // debug level, everything) so that the hot path does not write a line per request.
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    if rendered.status >= 500 {
        tracing::warn!(request_id = %exchange.facts.request_id, endpoint = label, status = rendered.status, dry_run = ctx.dry_run, elapsed_ms, "request failed");
    } else {
        tracing::debug!(request_id = %exchange.facts.request_id, endpoint = label, status = rendered.status, dry_run = ctx.dry_run, elapsed_ms, "request");
    }
    let is_head = method == Method::HEAD;
    respond::to_http(rendered, retry_after, is_head)
}

/// The request's parameters; a NUL character in any is refused (PostgreSQL cannot store
/// it; the legacy crashes on it: the first intended difference).
fn read_params(
    exchange: &mut Exchange<'_>,
    method: &str,
    headers: &HeaderMap,
    query: Option<&str>,
    body: &[u8],
) -> Result<Params, ContractError> {
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok());
    let params = exchange.read_params(method, content_type, query, body)?;
    if params.contains_nul() {
        return Err(ContractError::LegacyCrash(
            "parameters must not contain NUL characters",
        ));
    }
    Ok(params)
}

async fn authorize(
    state: &AppState,
    authorization: Option<&str>,
    ctx: &RequestCtx,
) -> Result<Principal, Refused> {
    let token = bearer_token(authorization).ok_or(ContractError::Unauthorized)?;
    state
        .identity
        .authorize_with(&token, ctx.dry_run)
        .await
        .map_err(refused)
}

async fn dispatch(
    state: &AppState,
    endpoint: Endpoint<'_>,
    params: &mut Params,
    authorization: Option<&str>,
    ctx: &RequestCtx,
) -> Result<Answer, Refused> {
    let id = &state.identity;
    match endpoint {
        Endpoint::SignUp => {
            let form = SignUpForm::from_params(params)?;
            let member = id.sign_up(&form, ctx).await.map_err(refused)?;
            Ok(Answer::json(201, &member_view(&member).private_json()))
        }
        Endpoint::BatchLookup => {
            let ids = forms::batch_ids(params)?;
            let members = id.batch_get_members(&ids).await.map_err(refused)?;
            let views: Vec<_> = members.iter().map(member_view).collect();
            Ok(Answer::json(200, &users_json(&views)))
        }
        Endpoint::ShowMember(raw) => {
            let member_id: i64 = raw.parse().map_err(|_| ContractError::NotFound)?;
            let member = id.get_member(member_id).await.map_err(refused)?;
            Ok(Answer::json(200, &member_view(&member).public_json()))
        }
        Endpoint::ShowMe => {
            let who = authorize(state, authorization, ctx).await?;
            Ok(Answer::json(200, &member_view(&who.member).private_json()))
        }
        Endpoint::UpdateMe => {
            let who = authorize(state, authorization, ctx).await?;
            let form = ProfileForm::from_params(params)?;
            let changes = form.validate().map_err(ContractError::from)?;
            let member = id
                .update_profile(&who, &changes, ctx)
                .await
                .map_err(refused)?;
            Ok(Answer::json(200, &member_view(&member).private_json()))
        }
        Endpoint::Withdraw => {
            let who = authorize(state, authorization, ctx).await?;
            id.withdraw(&who, ctx).await.map_err(refused)?;
            Ok(Answer::empty(204))
        }
        Endpoint::ChangePassword => {
            let who = authorize(state, authorization, ctx).await?;
            let form = PasswordChangeForm::from_params(params)?;
            id.change_password(&who, &form, ctx)
                .await
                .map_err(refused)?;
            Ok(Answer::empty(204))
        }
        Endpoint::LogIn => {
            let form = CredentialsForm::from_params(params);
            let s = id.authenticate(&form, ctx).await.map_err(refused)?;
            let body = session_json(
                &s.access_token,
                &s.refresh_token,
                s.access_expires_at,
                &member_view(&s.member),
            );
            Ok(Answer::json(201, &body))
        }
        Endpoint::Refresh => {
            let token = forms::refresh_token_param(params).unwrap_or_default();
            let s = id.refresh(&token, ctx).await.map_err(refused)?;
            let body = session_json(
                &s.access_token,
                &s.refresh_token,
                s.access_expires_at,
                &member_view(&s.member),
            );
            Ok(Answer::json(201, &body))
        }
        Endpoint::LogOut => {
            if let Some(token) = bearer_token(authorization) {
                id.revoke_by_access_token(&token, ctx)
                    .await
                    .map_err(refused)?;
            }
            Ok(Answer::empty(204))
        }
    }
}
