//! Every method of `identity.v1` over a real HTTP/2 connection, with its errors, plus
//! health and reflection.

use identity_proto::identity::v1 as pb;
use tonic::Code;
use tonic::transport::Channel;
use tonic_types::StatusExt;

use crate::grpc_client::{NICKNAME, access_token, bearer, client, connect, sign_up};
use crate::on_both_databases;
use crate::support::{Db, spawn};

fn violations(status: &tonic::Status) -> Vec<(String, String)> {
    status
        .get_details_bad_request()
        .map(|b| {
            b.field_violations
                .iter()
                .map(|v| (v.field.clone(), v.description.clone()))
                .collect()
        })
        .unwrap_or_default()
}

on_both_databases!(every_method, |db: Db| async move {
    let app = spawn(db).await;
    let mut c = client(&app).await;

    // SignUp, with the contract's rules and messages.
    let m = c
        .sign_up(sign_up(" G@Example.com"))
        .await
        .unwrap()
        .into_inner()
        .member
        .unwrap();
    assert_eq!(m.email, "g@example.com");
    assert_eq!(m.create_time, m.update_time);
    let bad = c
        .sign_up(pb::SignUpRequest {
            email: "nope".into(),
            password: "x".into(),
            nickname: "".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert_eq!(
        violations(&bad),
        vec![
            ("email".into(), "is invalid".into()),
            (
                "password".into(),
                "is too short (minimum is 8 characters)".into()
            ),
            ("nickname".into(), "can't be blank".into())
        ]
    );
    let taken = c.sign_up(sign_up("g@example.com")).await.unwrap_err();
    assert_eq!(taken.code(), Code::AlreadyExists);
    assert_eq!(
        violations(&taken),
        vec![("email".into(), "has already been taken".into())]
    );

    // Reads.
    let got = c
        .get_member(pb::GetMemberRequest { id: m.id })
        .await
        .unwrap()
        .into_inner()
        .member
        .unwrap();
    assert_eq!(got.nickname, NICKNAME);
    assert_eq!(
        c.get_member(pb::GetMemberRequest { id: 0 })
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    let batch = c
        .batch_get_members(pb::BatchGetMembersRequest {
            ids: vec![424242, m.id, m.id],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(batch.members.len(), 1);
    assert_eq!(batch.missing_ids, vec![424242]);
    let too_many = c
        .batch_get_members(pb::BatchGetMembersRequest {
            ids: (1..=1001).collect(),
        })
        .await
        .unwrap_err();
    assert_eq!(too_many.code(), Code::InvalidArgument);
    let found = c
        .lookup_member(pb::LookupMemberRequest {
            key: Some(pb::lookup_member_request::Key::Email(
                "G@EXAMPLE.COM".into(),
            )),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(found.member.unwrap().id, m.id);

    // Authenticate and introspection.
    let wrong = c
        .authenticate(pb::AuthenticateRequest {
            email: "g@example.com".into(),
            password: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), Code::Unauthenticated);
    let s = c
        .authenticate(pb::AuthenticateRequest {
            email: "g@example.com".into(),
            password: "password123".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();
    let v = c
        .verify_access_token(pb::VerifyAccessTokenRequest {
            access_token: s.access_token.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(v.active);
    assert_eq!(
        (v.member_id, v.session_id.as_str()),
        (m.id, s.session_id.as_str())
    );
    let garbage = c
        .verify_access_token(pb::VerifyAccessTokenRequest {
            access_token: "garbage".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!garbage.active);

    // Acting for the member.
    assert_eq!(
        c.update_profile(pb::UpdateProfileRequest {
            nickname: Some("x2".into()),
            ..Default::default()
        })
        .await
        .unwrap_err()
        .code(),
        Code::Unauthenticated
    );
    let updated = c
        .update_profile(bearer(
            pb::UpdateProfileRequest {
                phone_number: Some("+821099998888".into()),
                ..Default::default()
            },
            &s.access_token,
        ))
        .await
        .unwrap()
        .into_inner()
        .member
        .unwrap();
    assert_eq!(updated.phone_number.as_deref(), Some("+821099998888"));
    let invalid = c
        .update_profile(bearer(
            pb::UpdateProfileRequest {
                phone_number: Some(String::new()),
                ..Default::default()
            },
            &s.access_token,
        ))
        .await
        .unwrap_err();
    assert_eq!(
        violations(&invalid),
        vec![("phone_number".into(), "is invalid".into())]
    );
    let cleared = c
        .update_profile(bearer(
            pb::UpdateProfileRequest {
                clear_phone_number: true,
                ..Default::default()
            },
            &s.access_token,
        ))
        .await
        .unwrap()
        .into_inner()
        .member
        .unwrap();
    assert_eq!(cleared.phone_number, None);

    // RefreshSession rotates; the old access token goes inactive.
    let r = c
        .refresh_session(pb::RefreshSessionRequest {
            refresh_token: s.refresh_token.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();
    assert_eq!(r.session_id, s.session_id);
    assert!(
        !c.verify_access_token(pb::VerifyAccessTokenRequest {
            access_token: s.access_token.clone()
        })
        .await
        .unwrap()
        .into_inner()
        .active
    );
    assert_eq!(
        c.refresh_session(pb::RefreshSessionRequest {
            refresh_token: s.refresh_token.clone()
        })
        .await
        .unwrap_err()
        .code(),
        Code::Unauthenticated
    );

    // ChangePassword: a wrong current password is a field violation.
    let cp = c
        .change_password(bearer(
            pb::ChangePasswordRequest {
                current_password: "nope".into(),
                new_password: "password456".into(),
            },
            &r.access_token,
        ))
        .await
        .unwrap_err();
    assert_eq!(
        violations(&cp),
        vec![("current_password".into(), "is invalid".into())]
    );
    c.change_password(bearer(
        pb::ChangePasswordRequest {
            current_password: "password123".into(),
            new_password: "password456".into(),
        },
        &r.access_token,
    ))
    .await
    .unwrap();

    // RevokeSession by refresh token ends it.
    c.revoke_session(pb::RevokeSessionRequest {
        token: Some(pb::revoke_session_request::Token::RefreshToken(
            r.refresh_token.clone(),
        )),
    })
    .await
    .unwrap();
    assert!(
        !c.verify_access_token(pb::VerifyAccessTokenRequest {
            access_token: r.access_token.clone()
        })
        .await
        .unwrap()
        .into_inner()
        .active
    );

    // WithdrawMember: the member is gone everywhere.
    let s2 = c
        .authenticate(pb::AuthenticateRequest {
            email: "g@example.com".into(),
            password: "password456".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();
    c.withdraw_member(bearer(pb::WithdrawMemberRequest {}, &s2.access_token))
        .await
        .unwrap();
    assert_eq!(
        c.get_member(pb::GetMemberRequest { id: m.id })
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    assert!(
        !c.verify_access_token(pb::VerifyAccessTokenRequest {
            access_token: s2.access_token
        })
        .await
        .unwrap()
        .into_inner()
        .active
    );
    let again = c
        .sign_up(sign_up("g@example.com"))
        .await
        .unwrap()
        .into_inner()
        .member
        .unwrap();
    assert!(again.id > m.id);
});

on_both_databases!(health_and_reflection, |db: Db| async move {
    let app = spawn(db).await;
    let channel = Channel::from_shared(format!("http://{}", app.grpc))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let channel_for = |app: &crate::support::TestApp| {
        let url = format!("http://{}", app.grpc);
        async move { Channel::from_shared(url).unwrap().connect().await.unwrap() }
    };
    let status = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "identity.v1.IdentityService".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status;
    assert_eq!(
        status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    let overall = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .status;
    assert_eq!(
        overall,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    // Reflection lists the service (what grpcurl asks first).
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let mut reflection = ServerReflectionClient::new(channel_for(&app).await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = reflection
        .server_reflection_info(futures_util::stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let answer = answers.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
        panic!("not a service list: {answer:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.iter().any(|n| n == "identity.v1.IdentityService"),
        "{names:?}"
    );
});

/// A database connection that goes silent for good (black-holed by the network: no
/// answer, no error, never) fails the reads that were on it, within the read timeout,
/// and the reads after it go on, on new connections. (Whether the first read after the
/// cut lands on a severed connection is the pool's choice: it failed 1 run in 3.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_go_on_after_their_connections_go_silent() {
    use std::time::{Duration, Instant};
    use test_support::tcp_gate::TcpGate;

    let database = test_support::fresh_postgres_database();
    let (gate, through) = TcpGate::in_front_of(&database).await;
    let app = crate::support::spawn_on(&through, tempfile::tempdir().unwrap(), &[]).await;
    let mut c = client(&app).await;
    let m = c
        .sign_up(sign_up("silent@x.io"))
        .await
        .unwrap()
        .into_inner()
        .member
        .unwrap();
    let get = || pb::GetMemberRequest { id: m.id };
    c.get_member(get()).await.unwrap();

    gate.sever();
    let started = Instant::now();
    // A read on a severed connection fails by the read timeout; one the pool sends on a
    // connection it opened since passes. Neither hangs.
    if let Err(failed) = c.get_member(get()).await {
        assert_eq!(failed.code(), Code::Unavailable, "{failed:?}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(14),
        "answered within the read timeout"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match c.get_member(get()).await {
            Ok(r) => {
                assert_eq!(r.into_inner().member.unwrap().id, m.id);
                break;
            }
            Err(e) => assert!(
                Instant::now() < deadline,
                "reads never went on after their connections went silent: {e:?}"
            ),
        }
    }
}

// The calls of many clients that connect at the same instant are each answered, on
// every serving thread, beside connections that never speak (one that never sent its
// preface, one that stopped after it): those hold up no call, whichever thread they
// landed on. Reads, verifications and writes, so that the database's batches run on
// the serving threads too.
on_both_databases!(
    many_clients_at_once_beside_silent_connections,
    |db: Db| async move {
        let app = crate::support::spawn_with(db, &["--grpc-threads", "2"]).await;
        let mut c = client(&app).await;
        let m = c
            .sign_up(sign_up("many@x.io"))
            .await
            .unwrap()
            .into_inner()
            .member
            .unwrap();
        let token = access_token(&mut c, "many@x.io").await;
        let mut silent = Vec::new();
        for n in 0..8 {
            let mut tcp = tokio::net::TcpStream::connect(app.grpc).await.unwrap();
            if n % 2 == 0 {
                tokio::io::AsyncWriteExt::write_all(&mut tcp, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
                    .await
                    .unwrap();
            }
            silent.push(tcp);
        }
        let clients: Vec<_> = (0..24)
            .map(|n| {
                let (grpc, token, id) = (app.grpc, token.clone(), m.id);
                tokio::spawn(async move {
                    let mut c = connect(grpc).await;
                    let calls = (0..16).map(|k| {
                        let (mut c, token) = (c.clone(), token.clone());
                        async move {
                            match k % 4 {
                                0 => {
                                    let got = c.get_member(pb::GetMemberRequest { id }).await;
                                    assert_eq!(got.unwrap().into_inner().member.unwrap().id, id);
                                }
                                1 => {
                                    let absent = c
                                        .get_member(pb::GetMemberRequest { id: id + 1_000_000 })
                                        .await
                                        .unwrap_err();
                                    assert_eq!(absent.code(), Code::NotFound);
                                }
                                2 => {
                                    let verified = c
                                        .verify_access_token(pb::VerifyAccessTokenRequest {
                                            access_token: token,
                                        })
                                        .await
                                        .unwrap()
                                        .into_inner();
                                    assert_eq!(verified.member_id, id);
                                }
                                _ => {
                                    let listed = c
                                        .batch_get_members(pb::BatchGetMembersRequest {
                                            ids: vec![id, id + 1_000_000],
                                        })
                                        .await
                                        .unwrap()
                                        .into_inner();
                                    assert_eq!(listed.members.len(), 1);
                                }
                            }
                        }
                    });
                    futures_util::future::join_all(calls).await;
                    // A write on each connection.
                    let signed = c.sign_up(sign_up(&format!("many-{n}@x.io"))).await;
                    assert!(signed.is_ok(), "{signed:?}");
                })
            })
            .collect();
        for answered in tokio::time::timeout(
            std::time::Duration::from_secs(60),
            futures_util::future::join_all(clients),
        )
        .await
        .expect("every client answered within a minute")
        {
            answered.expect("every call answered as it should be");
        }
        drop(silent);
    }
);
