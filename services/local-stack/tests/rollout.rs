//! A whole rollout under steady client traffic, with real processes' code on real
//! sockets: the legacy simulator on SQLite, the identity service migrating from it, the
//! proxy in front. 0% with shadowing, 1%, 25%, 100%, an abort back to 0%, 100% again,
//! verify, cutover: no lost write, no unexpected answer, no forced log-out, a clean
//! verify.

use std::time::Duration;

use local_stack::{Stack, StackOptions, Traffic};

async fn pause(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_rollout_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let any = "127.0.0.1:0".parse().unwrap();
    let stack = Stack::start(&StackOptions {
        data_dir: dir.path().to_path_buf(),
        legacy_addr: any,
        identity_http: any,
        identity_grpc: any,
        proxy_addr: any,
        admin_addr: any,
        seed_members: 100,
        bcrypt_cost: 4,
        new_percent: 0,
        fast_hashing: true,
    })
    .await
    .unwrap();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let traffic = Traffic::start(
        &format!("http://{}", stack.proxy),
        6,
        Duration::from_millis(15),
        stop_rx,
    );

    pause(2500).await; // 0%: everything served by the legacy, shadowed to the identity service
    for percent in [1, 25, 100] {
        stack.set_weight(percent).await.unwrap();
        pause(2500).await;
    }
    // An operator aborts: every user back on the legacy, with the sessions they got from
    // the identity service.
    for route in ["sessions", "users-read", "users-write"] {
        assert_eq!(
            stack
                .admin("POST", &format!("/admin/routes/{route}/abort"))
                .await
                .unwrap(),
            200
        );
    }
    assert!(stack.shares().await.unwrap().iter().all(|s| *s == 0.0));
    pause(2500).await;
    for route in ["sessions", "users-read", "users-write"] {
        assert_eq!(
            stack
                .admin("POST", &format!("/admin/routes/{route}/resume"))
                .await
                .unwrap(),
            200
        );
    }
    assert!(stack.shares().await.unwrap().iter().all(|s| *s == 100.0));
    pause(2500).await;
    let _ = stop_tx.send(true);
    let report = traffic.await.unwrap();
    pause(800).await; // the sync's last poll

    let metrics = reqwest::get(format!("http://{}/metrics", stack.admin))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let comparisons: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("proxy_comparisons_total"))
        .collect();
    println!(
        "rollout: {} requests ({:?}), {} writes, {} unexpected, {} forced log-outs, {} stale reads\n{}",
        report.requests,
        report.by_status,
        report.writes,
        report.unexpected,
        report.forced_logouts,
        report.stale_reads,
        comparisons.join("\n")
    );
    assert!(report.requests > 500, "traffic ran: {}", report.requests);
    assert_eq!(report.unexpected, 0, "{:?}", report.examples);
    assert_eq!(report.forced_logouts, 0);

    // No lost write: every client's last nickname is on both sides.
    let store = identity_store::Store::connect(
        &stack.identity_database_url,
        &identity_store::StoreConfig::default(),
    )
    .await
    .unwrap();
    let legacy = legacy_db::LegacyDb::connect(&stack.legacy_database_url, 2)
        .await
        .unwrap();
    assert_eq!(report.members.len(), 6);
    for (id, _, nickname) in &report.members {
        let on_legacy = legacy
            .user_by_id(legacy.pool(), *id)
            .await
            .unwrap()
            .unwrap();
        let on_identity = store.member_by_id(*id).await.unwrap().unwrap();
        assert_eq!(&on_legacy.nickname, nickname, "member {id} on the legacy");
        assert_eq!(
            &on_identity.nickname, nickname,
            "member {id} on the identity service"
        );
    }
    let verify = identity_migration::verify(&store, &legacy, 10)
        .await
        .unwrap();
    assert!(verify.is_clean(), "{:?}", verify.examples);
    identity_migration::cutover(&store, &legacy).await.unwrap();
    stack.stop().await;
}
