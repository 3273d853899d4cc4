//! The `identity.v1.IdentityService` implementation: translation only, the flows are in
//! `identity-core`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use identity_core::{Identity, MAX_BATCH_IDS, Principal, RequestCtx};
use identity_proto::identity::v1 as pb;
use identity_proto::identity::v1::identity_service_server::IdentityService;
use member_contract::auth::bearer_token;
use member_contract::forms::{CredentialsForm, Input, PasswordChangeForm, ProfileForm, SignUpForm};
use member_contract::{Email, Field, Rule};
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};

use crate::convert;

/// Records each call's method, status code and duration (metrics).
pub type Observer = Arc<dyn Fn(&'static str, tonic::Code, Duration) + Send + Sync>;

/// How the service treats its callers.
#[derive(Debug, Clone)]
pub struct GrpcSettings {
    /// Read the client address from `X-Forwarded-For` (behind proxies).
    pub trust_forwarded_for: bool,
    /// How many proxies in front append to `X-Forwarded-For`.
    pub trusted_proxy_hops: usize,
    /// `WatchMemberChanges` streams open at once on this replica; more are refused
    /// (each one reads the log on every change).
    pub max_change_followers: usize,
}

#[derive(Clone)]
pub struct GrpcService {
    identity: Identity,
    observer: Observer,
    trust_forwarded_for: bool,
    trusted_proxy_hops: usize,
    /// One permit per open change stream.
    followers: Arc<tokio::sync::Semaphore>,
    /// Turns true when the server shuts down: open streams end.
    stopping: tokio::sync::watch::Receiver<bool>,
}

impl GrpcService {
    /// `stopping` turns true when the server shuts down: open streams end then (the
    /// server waits for its calls to end); its sender must live as long as the server.
    pub fn new(
        identity: Identity,
        observer: Observer,
        settings: &GrpcSettings,
        stopping: tokio::sync::watch::Receiver<bool>,
    ) -> Self {
        Self {
            identity,
            observer,
            trust_forwarded_for: settings.trust_forwarded_for,
            trusted_proxy_hops: settings.trusted_proxy_hops,
            followers: Arc::new(tokio::sync::Semaphore::new(settings.max_change_followers)),
            stopping,
        }
    }

    fn ctx<T>(&self, req: &Request<T>) -> RequestCtx {
        let md = req.metadata();
        let forwarded = if self.trust_forwarded_for {
            let entries = md
                .get_all("x-forwarded-for")
                .iter()
                .filter_map(|v| v.to_str().ok());
            identity_core::forwarded_client(entries, self.trusted_proxy_hops)
        } else {
            None
        };
        RequestCtx {
            dry_run: md
                .get("x-shadow")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.eq_ignore_ascii_case("dry-run")),
            client: forwarded.or_else(|| req.remote_addr().map(|a| a.ip().to_string())),
        }
    }

    async fn principal(&self, md: &MetadataMap) -> Result<Principal, Status> {
        let header = md.get("authorization").and_then(|v| v.to_str().ok());
        let token = bearer_token(header)
            .ok_or_else(|| Status::unauthenticated("missing bearer access token"))?;
        self.identity
            .authorize(&token)
            .await
            .map_err(convert::status)
    }

    /// One call of `method`: its work, timed, and its outcome (the status code) and
    /// duration recorded; the one place every method goes through.
    async fn call<T>(
        &self,
        method: &'static str,
        work: impl std::future::Future<Output = Result<T, Status>>,
    ) -> Result<Response<T>, Status> {
        let started = Instant::now();
        let result = work.await;
        let code = result
            .as_ref()
            .map_or_else(Status::code, |_| tonic::Code::Ok);
        (self.observer)(method, code, started.elapsed());
        result.map(Response::new)
    }
}

fn optional_input(value: Option<String>, clear: bool) -> Input {
    match (value, clear) {
        (Some(v), _) => Input::Text(v),
        (None, true) => Input::Null,
        (None, false) => Input::Absent,
    }
}

#[tonic::async_trait]
impl IdentityService for GrpcService {
    type WatchMemberChangesStream = crate::changes::ChangeStream;

    async fn watch_member_changes(
        &self,
        req: Request<pb::WatchMemberChangesRequest>,
    ) -> Result<Response<Self::WatchMemberChangesStream>, Status> {
        // Timed and counted up to the stream's start.
        self.call("WatchMemberChanges", async {
            // Held by the stream until it ends.
            let permit = Arc::clone(&self.followers)
                .try_acquire_owned()
                .map_err(|_| convert::too_many_followers())?;
            let watch = self
                .identity
                .watch_changes(req.get_ref().after_seq)
                .await
                .map_err(convert::status)?;
            Ok(crate::changes::follow(watch, permit, self.stopping.clone()))
        })
        .await
    }

    async fn get_member(
        &self,
        req: Request<pb::GetMemberRequest>,
    ) -> Result<Response<pb::GetMemberResponse>, Status> {
        self.call("GetMember", async {
            let m = self
                .identity
                .get_member(req.get_ref().id)
                .await
                .map_err(convert::status)?;
            Ok(pb::GetMemberResponse {
                member: Some(convert::public_member(&m)),
            })
        })
        .await
    }

    async fn batch_get_members(
        &self,
        req: Request<pb::BatchGetMembersRequest>,
    ) -> Result<Response<pb::BatchGetMembersResponse>, Status> {
        self.call("BatchGetMembers", async {
            let ids = &req.get_ref().ids;
            if ids.len() > MAX_BATCH_IDS {
                return Err(convert::bad_field(
                    "ids",
                    &format!("at most {MAX_BATCH_IDS} ids"),
                ));
            }
            let found = self
                .identity
                .batch_get_members(ids)
                .await
                .map_err(convert::status)?;
            let mut missing: Vec<i64> = ids
                .iter()
                .copied()
                .filter(|id| !found.iter().any(|m| m.id == *id))
                .collect();
            missing.sort_unstable();
            missing.dedup();
            Ok(pb::BatchGetMembersResponse {
                members: found.iter().map(convert::public_member).collect(),
                missing_ids: missing,
            })
        })
        .await
    }

    async fn lookup_member(
        &self,
        req: Request<pb::LookupMemberRequest>,
    ) -> Result<Response<pb::LookupMemberResponse>, Status> {
        self.call("LookupMember", async {
            use pb::lookup_member_request::Key;
            if let Some(Key::Email(v) | Key::PhoneNumber(v)) = &req.get_ref().key {
                convert::reject_nul(&[("key", Some(v))])?;
            }
            let m = match &req.get_ref().key {
                Some(Key::Email(e)) => self.identity.lookup_member(Some(e), None).await,
                Some(Key::PhoneNumber(p)) => self.identity.lookup_member(None, Some(p)).await,
                None => {
                    return Err(convert::bad_field(
                        "key",
                        "email or phone_number is required",
                    ));
                }
            }
            .map_err(convert::status)?;
            Ok(pb::LookupMemberResponse {
                member: Some(convert::public_member(&m)),
            })
        })
        .await
    }

    async fn sign_up(
        &self,
        req: Request<pb::SignUpRequest>,
    ) -> Result<Response<pb::SignUpResponse>, Status> {
        let ctx = self.ctx(&req);
        self.call("SignUp", async {
            let r = req.into_inner();
            convert::reject_nul(&[
                ("email", Some(&r.email)),
                ("password", Some(&r.password)),
                ("nickname", Some(&r.nickname)),
                ("phone_number", r.phone_number.as_deref()),
                ("profile_image_url", r.profile_image_url.as_deref()),
            ])?;
            let form = SignUpForm {
                email: Some(r.email),
                password: Some(r.password),
                nickname: Some(r.nickname),
                phone_number: r.phone_number,
                profile_image_url: r.profile_image_url,
            };
            let m = self
                .identity
                .sign_up(&form, &ctx)
                .await
                .map_err(convert::status)?;
            Ok(pb::SignUpResponse {
                member: Some(convert::member(&m)),
            })
        })
        .await
    }

    async fn authenticate(
        &self,
        req: Request<pb::AuthenticateRequest>,
    ) -> Result<Response<pb::AuthenticateResponse>, Status> {
        let ctx = self.ctx(&req);
        self.call("Authenticate", async {
            let r = req.into_inner();
            convert::reject_nul(&[("email", Some(&r.email)), ("password", Some(&r.password))])?;
            let form = CredentialsForm {
                email: Some(Email::normalize(&r.email)),
                password: Some(r.password),
            };
            let s = self
                .identity
                .authenticate(&form, &ctx)
                .await
                .map_err(convert::status)?;
            Ok(pb::AuthenticateResponse {
                session: Some(convert::session(&s)),
            })
        })
        .await
    }

    async fn refresh_session(
        &self,
        req: Request<pb::RefreshSessionRequest>,
    ) -> Result<Response<pb::RefreshSessionResponse>, Status> {
        let ctx = self.ctx(&req);
        self.call("RefreshSession", async {
            let s = self
                .identity
                .refresh(&req.get_ref().refresh_token, &ctx)
                .await
                .map_err(convert::status)?;
            Ok(pb::RefreshSessionResponse {
                session: Some(convert::session(&s)),
            })
        })
        .await
    }

    async fn revoke_session(
        &self,
        req: Request<pb::RevokeSessionRequest>,
    ) -> Result<Response<pb::RevokeSessionResponse>, Status> {
        let ctx = self.ctx(&req);
        self.call("RevokeSession", async {
            use pb::revoke_session_request::Token;
            match &req.get_ref().token {
                Some(Token::AccessToken(t)) => self.identity.revoke_by_access_token(t, &ctx).await,
                Some(Token::RefreshToken(t)) => {
                    self.identity.revoke_by_refresh_token(t, &ctx).await
                }
                None => {
                    return Err(convert::bad_field(
                        "token",
                        "access_token or refresh_token is required",
                    ));
                }
            }
            .map_err(convert::status)?;
            Ok(pb::RevokeSessionResponse {})
        })
        .await
    }

    async fn verify_access_token(
        &self,
        req: Request<pb::VerifyAccessTokenRequest>,
    ) -> Result<Response<pb::VerifyAccessTokenResponse>, Status> {
        self.call("VerifyAccessToken", async {
            let found = self
                .identity
                .introspect(&req.get_ref().access_token)
                .await
                .map_err(convert::status)?;
            Ok(match found {
                Some(i) => pb::VerifyAccessTokenResponse {
                    active: true,
                    member_id: i.member_id,
                    session_id: i.session_id,
                    expire_time: Some(convert::timestamp(i.expires_at)),
                },
                None => pb::VerifyAccessTokenResponse::default(),
            })
        })
        .await
    }

    async fn update_profile(
        &self,
        req: Request<pb::UpdateProfileRequest>,
    ) -> Result<Response<pb::UpdateProfileResponse>, Status> {
        let ctx = self.ctx(&req);
        self.call("UpdateProfile", async {
            let who = self.principal(req.metadata()).await?;
            let r = req.into_inner();
            convert::reject_nul(&[
                ("nickname", r.nickname.as_deref()),
                ("phone_number", r.phone_number.as_deref()),
                ("profile_image_url", r.profile_image_url.as_deref()),
            ])?;
            let form = ProfileForm {
                nickname: r.nickname.map_or(Input::Absent, Input::Text),
                phone_number: optional_input(r.phone_number, r.clear_phone_number),
                profile_image_url: optional_input(r.profile_image_url, r.clear_profile_image_url),
            };
            let changes = form.validate().map_err(|e| convert::invalid(&e))?;
            let m = self
                .identity
                .update_profile(&who, &changes, &ctx)
                .await
                .map_err(convert::status)?;
            Ok(pb::UpdateProfileResponse {
                member: Some(convert::member(&m)),
            })
        })
        .await
    }

    async fn change_password(
        &self,
        req: Request<pb::ChangePasswordRequest>,
    ) -> Result<Response<pb::ChangePasswordResponse>, Status> {
        let ctx = self.ctx(&req);
        self.call("ChangePassword", async {
            let who = self.principal(req.metadata()).await?;
            let r = req.into_inner();
            convert::reject_nul(&[
                ("current_password", Some(&r.current_password)),
                ("password", Some(&r.new_password)),
            ])?;
            if r.new_password.is_empty() {
                return Err(convert::bad_field(
                    Field::Password.name(),
                    &Rule::Blank.message(),
                ));
            }
            let form = PasswordChangeForm {
                current_password: Some(r.current_password),
                password: Some(r.new_password),
            };
            self.identity
                .change_password(&who, &form, &ctx)
                .await
                .map_err(convert::status)?;
            Ok(pb::ChangePasswordResponse {})
        })
        .await
    }

    async fn withdraw_member(
        &self,
        req: Request<pb::WithdrawMemberRequest>,
    ) -> Result<Response<pb::WithdrawMemberResponse>, Status> {
        let ctx = self.ctx(&req);
        self.call("WithdrawMember", async {
            let who = self.principal(req.metadata()).await?;
            self.identity
                .withdraw(&who, &ctx)
                .await
                .map_err(convert::status)?;
            Ok(pb::WithdrawMemberResponse {})
        })
        .await
    }
}
