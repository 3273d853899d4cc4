//! The legacy controllers, as `tests/legacy-rails` writes them, on the shared contract
//! crate: routing, parameters, validation, rendering and Rails' headers.

use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method, Response};
use identity_passwords::{Hasher, Verdict};
use legacy_db::{LegacyDb, LegacyError, LegacySession, LegacyUser, NewLegacyUser};
use member_contract::auth::bearer_token;
use member_contract::errors::Flavor;
use member_contract::exchange::Exchange;
use member_contract::forms::{
    self, CredentialsForm, Input, PasswordChangeForm, ProfileForm, SignUpForm,
};
use member_contract::headers::Rendered;
use member_contract::render::{session_json, users_json};
use member_contract::{
    ContractError, Endpoint, Errors, Field, MemberView, Params, Rule, Timestamp, json_response_body,
};

#[derive(Clone)]
pub struct SimState {
    pub db: LegacyDb,
    pub hasher: Hasher,
    pub bcrypt_cost: u32,
}

type Answer = Result<(u16, Option<String>), ContractError>;

pub fn router(state: SimState) -> Router {
    Router::new().fallback(handle).with_state(state)
}

fn internal(e: impl std::fmt::Display) -> ContractError {
    tracing::error!(error = %e, "legacy-sim failure");
    ContractError::Internal
}

fn view(u: &LegacyUser) -> MemberView {
    MemberView {
        id: u.id,
        email: u.email.clone(),
        nickname: u.nickname.clone(),
        phone_number: u.phone_number.clone(),
        profile_image_url: u.profile_image_url.clone(),
        created_at: u.created_at,
        updated_at: u.updated_at,
    }
}

async fn handle(State(state): State<SimState>, request: Request) -> Response<Body> {
    let started = Instant::now();
    let (parts, body) = request.into_parts();
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let path = parts.uri.path().to_owned();
    let mut exchange = Exchange::set_up(parts.method.as_str(), &path, header, || {
        let mut bytes = [0u8; 16];
        let _ = getrandom::fill(&mut bytes);
        bytes
    });
    let body = axum::body::to_bytes(body, 16 * 1024 * 1024)
        .await
        .unwrap_or_default();
    let outcome = match exchange.endpoint {
        None => Err(ContractError::RouteNotFound),
        Some(ep) => {
            let content_type = header("content-type");
            match exchange.read_params(
                parts.method.as_str(),
                content_type.as_deref(),
                parts.uri.query(),
                &body,
            ) {
                Ok(mut params) => {
                    dispatch(&state, ep, &mut params, header("authorization").as_deref())
                        .await
                        .map(|(status, body)| (status, body, None))
                }
                Err(e) => Err(e),
            }
        }
    };
    let (rendered, _) = exchange.render(outcome, Flavor::Legacy, started.elapsed());
    to_http(rendered, parts.method == Method::HEAD)
}

fn to_http(r: Rendered, is_head: bool) -> Response<Body> {
    let mut builder = Response::builder().status(r.status);
    if let Some(headers) = builder.headers_mut() {
        for (name, value) in r.headers {
            if name == "content-length" {
                continue;
            }
            if let Ok(v) = HeaderValue::from_str(&value) {
                headers.append(HeaderName::from_static(name), v);
            }
        }
    }
    builder
        .body(if is_head {
            Body::empty()
        } else {
            Body::from(r.body)
        })
        .unwrap_or_default()
}

/// `current_session`: the live session of the bearer token, and its user.
async fn current(
    state: &SimState,
    authorization: Option<&str>,
) -> Result<(LegacySession, LegacyUser), ContractError> {
    let token = bearer_token(authorization).ok_or(ContractError::Unauthorized)?;
    let now = Timestamp::now_from_system();
    let session = state
        .db
        .live_session_by_token(state.db.pool(), &token, now)
        .await
        .map_err(internal)?;
    let session = session.ok_or(ContractError::Unauthorized)?;
    let user = state
        .db
        .user_by_id(state.db.pool(), session.user_id)
        .await
        .map_err(internal)?;
    Ok((session, user.ok_or(ContractError::Unauthorized)?))
}

async fn authenticate(
    state: &SimState,
    user: &LegacyUser,
    password: &str,
) -> Result<bool, ContractError> {
    let verdict = state
        .hasher
        .verify(password, Some(&user.password_digest))
        .await
        .map_err(internal)?;
    Ok(matches!(verdict, Verdict::Match { .. }))
}

/// When a row is written: as ActiveRecord stamps a row when it saves it, after the
/// password hashing or checking before it, not when the request came in (a log-in that
/// checked the old password while a password change went through then inserts its
/// session stamped after the change, as on Rails).
fn written_at() -> Timestamp {
    Timestamp::now_from_system()
}

async fn dispatch(
    state: &SimState,
    endpoint: Endpoint<'_>,
    params: &mut Params,
    authorization: Option<&str>,
) -> Answer {
    let db = &state.db;
    match endpoint {
        Endpoint::SignUp => {
            let form = SignUpForm::from_params(params)?;
            let (mut errors, valid) = form.validate();
            let (email, phone) = form.uniqueness_keys();
            if let Some(e) = &email
                && db.email_taken(db.pool(), e, 0).await.map_err(internal)?
            {
                errors.add(Field::Email, Rule::Taken);
            }
            if let Some(p) = &phone
                && db.phone_taken(db.pool(), p, 0).await.map_err(internal)?
            {
                errors.add(Field::PhoneNumber, Rule::Taken);
            }
            let valid = match valid {
                Some(v) if errors.is_empty() => v,
                _ => return Err(ContractError::Validation(errors)),
            };
            let digest = state
                .hasher
                .legacy_bcrypt(valid.password.expose(), state.bcrypt_cost)
                .await
                .map_err(internal)?;
            let new = NewLegacyUser {
                id: None,
                email: valid.email.into_inner(),
                password_digest: digest,
                nickname: valid.nickname.into_inner(),
                phone_number: valid.phone_number.map(|p| p.into_inner()),
                profile_image_url: valid.profile_image_url.map(|u| u.into_inner()),
                now: written_at(),
            };
            let id = match db.insert_user(db.pool(), &new).await {
                Ok(id) => id,
                Err(LegacyError::Taken(field)) => {
                    let mut errors = Errors::new();
                    errors.add(
                        if field == "email" {
                            Field::Email
                        } else {
                            Field::PhoneNumber
                        },
                        Rule::Taken,
                    );
                    return Err(ContractError::Validation(errors));
                }
                Err(e) => return Err(internal(e)),
            };
            let user = db
                .user_by_id(db.pool(), id)
                .await
                .map_err(internal)?
                .ok_or(ContractError::Internal)?;
            Ok((201, Some(json_response_body(&view(&user).private_json()))))
        }
        Endpoint::BatchLookup => {
            let ids = forms::batch_ids(params)?;
            let users = db
                .active_users_by_ids(db.pool(), &ids)
                .await
                .map_err(internal)?;
            let views: Vec<MemberView> = users.iter().map(view).collect();
            Ok((200, Some(json_response_body(&users_json(&views)))))
        }
        Endpoint::ShowMember(raw) => {
            let id: i64 = raw.parse().map_err(|_| ContractError::NotFound)?;
            match db.user_by_id(db.pool(), id).await.map_err(internal)? {
                Some(u) if !u.is_withdrawn() => {
                    Ok((200, Some(json_response_body(&view(&u).public_json()))))
                }
                _ => Err(ContractError::NotFound),
            }
        }
        Endpoint::ShowMe => {
            let (_, user) = current(state, authorization).await?;
            Ok((200, Some(json_response_body(&view(&user).private_json()))))
        }
        Endpoint::UpdateMe => {
            let (_, user) = current(state, authorization).await?;
            let form = ProfileForm::from_params(params)?;
            let changes = form.validate()?;
            let mut next = user.clone();
            if let Some(n) = changes.nickname {
                next.nickname = n.into_inner();
            }
            if let Some(p) = changes.phone_number {
                next.phone_number = p.map(|p| p.into_inner());
            }
            if let Some(u) = changes.profile_image_url {
                next.profile_image_url = u.map(|u| u.into_inner());
            }
            if let (Input::Text(_), Some(phone)) = (&form.phone_number, &next.phone_number)
                && db
                    .phone_taken(db.pool(), phone, user.id)
                    .await
                    .map_err(internal)?
            {
                let mut errors = Errors::new();
                errors.add(Field::PhoneNumber, Rule::Taken);
                return Err(ContractError::Validation(errors));
            }
            if next != user {
                next.updated_at = written_at();
                db.update_profile(db.pool(), &next)
                    .await
                    .map_err(|e| match e {
                        LegacyError::Taken(_) => {
                            let mut errors = Errors::new();
                            errors.add(Field::PhoneNumber, Rule::Taken);
                            ContractError::Validation(errors)
                        }
                        e => internal(e),
                    })?;
            }
            Ok((200, Some(json_response_body(&view(&next).private_json()))))
        }
        Endpoint::Withdraw => {
            let (_, user) = current(state, authorization).await?;
            let mut secret = [0u8; 32];
            let _ = getrandom::fill(&mut secret);
            let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
            let digest = state
                .hasher
                .legacy_bcrypt(&hex, state.bcrypt_cost)
                .await
                .map_err(internal)?;
            let mut tx = db.begin().await.map_err(internal)?;
            db.delete_user_sessions(&mut *tx, user.id, None)
                .await
                .map_err(internal)?;
            db.withdraw_user(&mut *tx, user.id, &digest, written_at())
                .await
                .map_err(internal)?;
            tx.commit().await.map_err(internal)?;
            Ok((204, None))
        }
        Endpoint::ChangePassword => {
            let (session, user) = current(state, authorization).await?;
            let form = PasswordChangeForm::from_params(params)?;
            if !authenticate(state, &user, form.current_password.as_deref().unwrap_or("")).await? {
                let mut errors = Errors::new();
                errors.add(Field::CurrentPassword, Rule::Invalid);
                return Err(ContractError::Validation(errors));
            }
            let mut tx = db.begin().await.map_err(internal)?;
            // `has_secure_password` ignores an empty password: nothing to save.
            if form.password.as_deref() != Some("") {
                let password = form.validate_new()?;
                let digest = state
                    .hasher
                    .legacy_bcrypt(password.expose(), state.bcrypt_cost)
                    .await
                    .map_err(internal)?;
                db.update_digest(&mut *tx, user.id, &digest, written_at())
                    .await
                    .map_err(internal)?;
            }
            db.delete_user_sessions(&mut *tx, user.id, Some(session.id))
                .await
                .map_err(internal)?;
            tx.commit().await.map_err(internal)?;
            Ok((204, None))
        }
        Endpoint::LogIn => {
            let form = CredentialsForm::from_params(params);
            let user = match form.email.as_deref() {
                Some(email) => db
                    .active_user_by_email(db.pool(), email)
                    .await
                    .map_err(internal)?,
                None => None,
            };
            let Some(user) = user else {
                return Err(ContractError::InvalidCredentials);
            };
            let Some(password) = form.password.as_deref() else {
                return Err(ContractError::InvalidCredentials);
            };
            if !authenticate(state, &user, password).await? {
                return Err(ContractError::InvalidCredentials);
            }
            let mut conn = db.pool().acquire().await.map_err(internal)?;
            let session = db
                .create_session(&mut conn, user.id, written_at())
                .await
                .map_err(internal)?;
            Ok((
                201,
                Some(json_response_body(&session_json(
                    &session.token,
                    &session.refresh_token,
                    session.expires_at,
                    &view(&user),
                ))),
            ))
        }
        Endpoint::Refresh => {
            let token = forms::refresh_token_param(params).unwrap_or_default();
            let Some(old) = db
                .refreshable_session(db.pool(), &token, Timestamp::now_from_system())
                .await
                .map_err(internal)?
            else {
                return Err(ContractError::InvalidRefreshToken);
            };
            let mut tx = db.begin().await.map_err(internal)?;
            // Rotation: only one refresh may win the old pair.
            if db
                .delete_session(&mut *tx, old.id)
                .await
                .map_err(internal)?
                != 1
            {
                return Err(ContractError::InvalidRefreshToken);
            }
            let fresh = db
                .create_session(&mut tx, old.user_id, written_at())
                .await
                .map_err(internal)?;
            tx.commit().await.map_err(internal)?;
            let user = db
                .user_by_id(db.pool(), old.user_id)
                .await
                .map_err(internal)?
                .ok_or(ContractError::InvalidRefreshToken)?;
            Ok((
                201,
                Some(json_response_body(&session_json(
                    &fresh.token,
                    &fresh.refresh_token,
                    fresh.expires_at,
                    &view(&user),
                ))),
            ))
        }
        Endpoint::LogOut => {
            if let Some(token) = bearer_token(authorization) {
                db.delete_sessions_by_token(db.pool(), &token)
                    .await
                    .map_err(internal)?;
            }
            Ok((204, None))
        }
    }
}
