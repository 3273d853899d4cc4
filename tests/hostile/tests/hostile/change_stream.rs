//! A service that keeps members in a cache follows `WatchMemberChanges` and acts on
//! each change once. Its own process dies mid-stream (a change received, not yet acted
//! on), then the replica it streams from is killed (SIGKILL) while members are being
//! written through another replica: resumed from the cursor it kept, it has acted on
//! every change exactly once, in order, and on nothing that was not written.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use identity_proto::identity::v1 as pb;
use identity_proto::identity::v1::identity_service_client::IdentityServiceClient;
use pb::member_change::Kind;
use tonic::transport::Channel;

use crate::support::identity;

async fn client(addr: std::net::SocketAddr) -> IdentityServiceClient<Channel> {
    IdentityServiceClient::connect(format!("http://{addr}"))
        .await
        .expect("gRPC connects")
}

async fn follow(addr: std::net::SocketAddr, after: i64) -> tonic::Streaming<pb::MemberChange> {
    client(addr)
        .await
        .watch_member_changes(pb::WatchMemberChangesRequest {
            after_seq: Some(after),
        })
        .await
        .expect("the watch starts")
        .into_inner()
}

/// The follower's durable state: the changes it acted on, and its cursor.
#[derive(Default)]
struct Follower {
    acted: Vec<(i64, i64, Kind)>,
}

impl Follower {
    fn cursor(&self) -> i64 {
        self.acted.last().map_or(0, |a| a.0)
    }

    fn act(&mut self, change: &pb::MemberChange) {
        self.acted
            .push((change.seq, change.member_id, change.kind()));
    }
}

async fn next(
    stream: &mut tonic::Streaming<pb::MemberChange>,
) -> Result<Option<pb::MemberChange>, tonic::Status> {
    tokio::time::timeout(Duration::from_secs(30), stream.message())
        .await
        .expect("a change within 30 s")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_and_its_replica_killed_mid_stream_miss_nothing_and_repeat_nothing() {
    let database = test_support::fresh_postgres_database();
    let dir = tempfile::tempdir().unwrap();
    let (a_dir, b_dir) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir_all(&a_dir).unwrap();
    std::fs::create_dir_all(&b_dir).unwrap();
    let writer_replica = identity(&a_dir, Some(&database), &[]);
    let streamed_replica = identity(&b_dir, Some(&database), &[]);

    // Members written through replica A, each sign-up followed by a rename for every
    // other member: what was written, in the order the answers came.
    let written = Arc::new(Mutex::new(Vec::<(i64, Kind)>::new()));
    let writer = {
        let written = Arc::clone(&written);
        let addr = writer_replica.grpc;
        tokio::spawn(async move {
            let mut c = client(addr).await;
            for i in 0..120 {
                let email = format!("cached-{i}@x.io");
                let m = c
                    .sign_up(pb::SignUpRequest {
                        email: email.clone(),
                        password: "password123".into(),
                        nickname: format!("member {i}"),
                        ..Default::default()
                    })
                    .await
                    .expect("sign-up")
                    .into_inner()
                    .member
                    .unwrap();
                written.lock().unwrap().push((m.id, Kind::Created));
                if i % 2 == 0 {
                    let token = c
                        .authenticate(pb::AuthenticateRequest {
                            email,
                            password: "password123".into(),
                        })
                        .await
                        .expect("log-in")
                        .into_inner()
                        .session
                        .unwrap()
                        .access_token;
                    let mut req = tonic::Request::new(pb::UpdateProfileRequest {
                        nickname: Some(format!("renamed {i}")),
                        ..Default::default()
                    });
                    req.metadata_mut()
                        .insert("authorization", format!("Bearer {token}").parse().unwrap());
                    c.update_profile(req).await.expect("rename");
                    written.lock().unwrap().push((m.id, Kind::Updated));
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };

    let mut follower = Follower::default();
    // 1. Streaming from replica B, the follower acts on 30 changes, receives one more
    //    and dies before acting on it.
    {
        let mut stream = follow(streamed_replica.grpc, follower.cursor()).await;
        for _ in 0..30 {
            let change = next(&mut stream).await.unwrap().unwrap();
            follower.act(&change);
        }
        let _received_not_acted = next(&mut stream).await.unwrap().unwrap();
    }
    // 2. Restarted, it resumes from its cursor on B, acts on 30 more; then B is killed,
    //    and the follower acts on whatever B had sent before it died.
    let mut stream = follow(streamed_replica.grpc, follower.cursor()).await;
    for _ in 0..30 {
        let change = next(&mut stream).await.unwrap().unwrap();
        follower.act(&change);
    }
    drop(streamed_replica);
    while let Ok(Some(change)) = next(&mut stream).await {
        follower.act(&change);
    }
    // 3. It resumes from its cursor on replica A until every write is seen.
    let mut stream = follow(writer_replica.grpc, follower.cursor()).await;
    writer.await.unwrap();
    let expected = written.lock().unwrap().clone();
    let deadline = Instant::now() + Duration::from_secs(60);
    while follower.acted.len() < expected.len() {
        assert!(
            Instant::now() < deadline,
            "the follower stalled at {}",
            follower.cursor()
        );
        let change = next(&mut stream).await.unwrap().unwrap();
        follower.act(&change);
    }

    let seqs: Vec<i64> = follower.acted.iter().map(|a| a.0).collect();
    assert_eq!(
        seqs,
        (1..=expected.len() as i64).collect::<Vec<_>>(),
        "every change acted on once, in order"
    );
    let mut acted_per_member: HashMap<i64, Vec<Kind>> = HashMap::new();
    for (_, member, kind) in &follower.acted {
        acted_per_member.entry(*member).or_default().push(*kind);
    }
    let mut written_per_member: HashMap<i64, Vec<Kind>> = HashMap::new();
    for (member, kind) in &expected {
        written_per_member.entry(*member).or_default().push(*kind);
    }
    assert_eq!(acted_per_member, written_per_member);
}
