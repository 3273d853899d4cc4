//! `WatchMemberChanges` over real HTTP/2: each change once, in commit order, with the
//! member attached (none once withdrawn); resuming from a cursor; concurrent writers
//! numbered without gaps; cursors refused with their reason; open streams ended by a
//! shutdown.

use std::collections::HashMap;
use std::time::Duration;

use identity_proto::identity::v1 as pb;
use pb::member_change::Kind;
use tonic::{Code, Streaming};
use tonic_types::StatusExt;

use crate::grpc_client::{NICKNAME, access_token, bearer, client, sign_up};
use crate::on_both_databases;
use test_support::tcp_gate::{Gate, TcpGate};

use crate::support::{Db, TestApp, spawn, spawn_on, spawn_with};

async fn watch(
    app: &TestApp,
    after: Option<i64>,
) -> Result<Streaming<pb::MemberChange>, tonic::Status> {
    client(app)
        .await
        .watch_member_changes(pb::WatchMemberChangesRequest { after_seq: after })
        .await
        .map(tonic::Response::into_inner)
}

async fn next(stream: &mut Streaming<pb::MemberChange>) -> pb::MemberChange {
    tokio::time::timeout(Duration::from_secs(20), stream.message())
        .await
        .expect("a change within 20 s")
        .expect("the stream goes on")
        .expect("a change, not the end")
}

on_both_databases!(changes_are_streamed_and_resumed, |db: Db| async move {
    let app = spawn(db).await;
    let mut c = client(&app).await;
    let mut live = watch(&app, None).await.unwrap();

    let a = c
        .sign_up(sign_up("a@x.io"))
        .await
        .unwrap()
        .into_inner()
        .member
        .unwrap();
    let created = next(&mut live).await;
    assert_eq!(
        (created.seq, created.member_id, created.kind()),
        (1, a.id, Kind::Created)
    );
    let shown = created.member.expect("the member");
    assert_eq!((shown.id, shown.nickname.as_str()), (a.id, NICKNAME));
    assert!(created.change_time.is_some());

    let token = access_token(&mut c, "a@x.io").await;
    c.update_profile(bearer(
        pb::UpdateProfileRequest {
            nickname: Some("renamed".into()),
            ..Default::default()
        },
        &token,
    ))
    .await
    .unwrap();
    let updated = next(&mut live).await;
    assert_eq!((updated.seq, updated.kind()), (2, Kind::Updated));
    assert_eq!(updated.member.map(|m| m.nickname), Some("renamed".into()));

    c.withdraw_member(bearer(pb::WithdrawMemberRequest {}, &token))
        .await
        .unwrap();
    let withdrawn = next(&mut live).await;
    assert_eq!(
        (withdrawn.seq, withdrawn.member_id, withdrawn.kind()),
        (3, a.id, Kind::Withdrawn)
    );
    assert_eq!(
        withdrawn.member, None,
        "a withdrawal carries no personal data"
    );

    // From the start: the same changes again, none of them showing the withdrawn member.
    let mut replay = watch(&app, Some(0)).await.unwrap();
    let mut seen = Vec::new();
    for _ in 0..3 {
        let m = next(&mut replay).await;
        assert_eq!(m.member, None);
        seen.push((m.seq, m.member_id, m.kind()));
    }
    assert_eq!(
        seen,
        vec![
            (1, a.id, Kind::Created),
            (2, a.id, Kind::Updated),
            (3, a.id, Kind::Withdrawn)
        ]
    );

    // From the last change: only what comes next, on every stream.
    let mut resumed = watch(&app, Some(3)).await.unwrap();
    let b = c
        .sign_up(sign_up("b@x.io"))
        .await
        .unwrap()
        .into_inner()
        .member
        .unwrap();
    for stream in [&mut resumed, &mut live, &mut replay] {
        let m = next(stream).await;
        assert_eq!((m.seq, m.member_id, m.kind()), (4, b.id, Kind::Created));
    }

    // Cursors that cannot be followed, with their reason.
    let ahead = watch(&app, Some(99)).await.unwrap_err();
    assert_eq!(ahead.code(), Code::OutOfRange, "{ahead:?}");
    let info = ahead.get_details_error_info().expect("ErrorInfo");
    assert_eq!(info.reason, "CURSOR_AHEAD");
    assert_eq!(info.metadata.get("last_seq").map(String::as_str), Some("4"));
    let negative = watch(&app, Some(-1)).await.unwrap_err();
    assert_eq!(negative.code(), Code::InvalidArgument, "{negative:?}");
    let store = identity_store::Store::connect(&app.database_url, &Default::default())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2)).await;
    assert_eq!(store.prune_changes(Duration::ZERO).await.unwrap(), 4);
    let expired = watch(&app, Some(0)).await.unwrap_err();
    assert_eq!(expired.code(), Code::OutOfRange, "{expired:?}");
    let info = expired.get_details_error_info().expect("ErrorInfo");
    assert_eq!(info.reason, "CURSOR_EXPIRED");
    assert_eq!(
        info.metadata.get("first_kept_seq").map(String::as_str),
        Some("5")
    );
    // A follower at the last change goes on after the pruning.
    assert!(watch(&app, Some(4)).await.is_ok());
});

on_both_databases!(
    concurrent_writers_are_numbered_without_gaps,
    |db: Db| async move {
        let app = spawn(db).await;
        let mut live = watch(&app, None).await.unwrap();
        const WRITERS: usize = 6;
        const MEMBERS: usize = 8;
        let mut writers = Vec::new();
        for w in 0..WRITERS {
            let mut c = client(&app).await;
            writers.push(tokio::spawn(async move {
                for i in 0..MEMBERS {
                    let email = format!("w{w}-{i}@x.io");
                    c.sign_up(sign_up(&email)).await.unwrap();
                    let token = access_token(&mut c, &email).await;
                    c.update_profile(bearer(
                        pb::UpdateProfileRequest {
                            nickname: Some(format!("w{w} m{i}")),
                            ..Default::default()
                        },
                        &token,
                    ))
                    .await
                    .unwrap();
                }
            }));
        }
        for w in writers {
            w.await.unwrap();
        }
        let total = (WRITERS * MEMBERS * 2) as i64;
        let mut kinds: HashMap<i64, Vec<Kind>> = HashMap::new();
        for expected in 1..=total {
            let m = next(&mut live).await;
            assert_eq!(
                m.seq, expected,
                "numbers follow each other as the commits did"
            );
            kinds.entry(m.member_id).or_default().push(m.kind());
        }
        assert_eq!(kinds.len(), WRITERS * MEMBERS);
        assert!(
            kinds.values().all(|k| k == &[Kind::Created, Kind::Updated]),
            "{kinds:?}"
        );
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_ends_open_streams_with_unavailable() {
    let app = spawn(Db::Sqlite).await;
    let mut live = watch(&app, None).await.unwrap();
    let grpc = app.grpc;
    drop(app);
    let ended = tokio::time::timeout(Duration::from_secs(10), live.message())
        .await
        .expect("the stream ends before the grace period does");
    let status = ended.expect_err("ended by the server");
    assert_eq!(status.code(), Code::Unavailable, "{status:?} from {grpc}");
    assert!(status.message().contains("resume"), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_beyond_the_limit_are_refused_until_one_leaves() {
    let app = spawn_with(Db::Sqlite, &["--max-change-followers", "2"]).await;
    let first = watch(&app, None).await.unwrap();
    let _second = watch(&app, None).await.unwrap();
    let refused = watch(&app, None).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(refused.get_details_retry_info().is_some(), "{refused:?}");
    // A follower that goes away gives its place back.
    drop(first);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match watch(&app, None).await {
            Ok(_) => break,
            Err(e) => assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}"),
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the place of a cancelled stream came back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

on_both_databases!(
    a_follower_that_stops_reading_holds_nothing_up_and_loses_nothing,
    |db: Db| async move {
        let app = spawn(db).await;
        // Subscribed, then never read: HTTP/2 flow control stops the server's writes.
        let mut stalled = watch(&app, None).await.unwrap();
        const MEMBERS: i64 = 1200;
        let store = identity_store::Store::connect(&app.database_url, &Default::default())
            .await
            .unwrap();
        for batch in 0..MEMBERS / 100 {
            let mut tx = store.begin().await.unwrap();
            for i in 0..100 {
                let n = batch * 100 + i;
                tx.insert_member(&identity_store::NewMember {
                    id: None,
                    email: format!("stalled-{n}@x.io"),
                    password_hash: "x".into(),
                    nickname: format!("member {n}"),
                    phone_number: None,
                    profile_image_url: Some(format!("https://img.example.com/{n}.png")),
                    now: 1_800_000_000_000_000,
                })
                .await
                .unwrap();
            }
            tx.commit().await.unwrap();
        }
        // Another follower reads every change meanwhile.
        let mut other = watch(&app, Some(0)).await.unwrap();
        for seq in 1..=MEMBERS {
            assert_eq!(next(&mut other).await.seq, seq);
        }
        // And the stalled one, reading at last, has lost nothing.
        for seq in 1..=MEMBERS {
            assert_eq!(next(&mut stalled).await.seq, seq);
        }
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_hangs_ends_the_stream_for_a_resume_elsewhere() {
    let database = test_support::fresh_postgres_database();
    let (gate, through) = TcpGate::in_front_of(&database).await;
    let app = spawn_on(&through, tempfile::tempdir().unwrap(), &[]).await;
    let mut live = watch(&app, None).await.unwrap();
    // Every connection to the database stops answering, none is closed.
    gate.set(Gate::Closed);
    let ended = tokio::time::timeout(Duration::from_secs(30), live.message())
        .await
        .expect("the stream ends instead of hanging with its read");
    let status = ended.expect_err("ended with an error");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    gate.set(Gate::Open);
}
