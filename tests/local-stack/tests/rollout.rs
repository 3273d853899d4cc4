//! A whole rollout under steady client traffic, with the real services' code on real
//! sockets: the legacy simulator on SQLite, the identity service migrating from it, the
//! proxy in front. 0% with shadowing, the autopilot along the plan to 100% (its
//! decommission report passing), an abort back to 0%, 100% again, verify, cutover and
//! a phase on the identity service alone: no lost write, no
//! unexpected answer, no forced log-out (also for apps holding a legacy token), a clean
//! verify. `tests/run.sh` runs the same rehearsal with the Rails app on PostgreSQL.

use local_stack::rehearsal::{RehearsalOptions, rehearse};
use local_stack::{LegacySource, Stack, StackOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_rollout_and_cutover_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let any = "127.0.0.1:0".parse().unwrap();
    let stack = Stack::start(&StackOptions {
        data_dir: dir.path().to_path_buf(),
        legacy: LegacySource::Simulator(any),
        identity_database_url: None,
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
    let report = rehearse(&stack, &RehearsalOptions::default()).await;
    stack.stop().await;
    let report = report.unwrap();
    println!("{}", report.summary());
    assert!(report.problems().is_empty(), "{:?}", report.problems());
    assert!(report.traffic.requests > 500, "traffic ran");
    let clients = report
        .traffic
        .members
        .iter()
        .filter(|(_, email, _)| email.starts_with("client-") || email.starts_with("sleeper-"))
        .count();
    assert_eq!(clients, 8, "every client took part");
    assert!(
        report.traffic.members.len() > clients,
        "newcomers signed up all along"
    );
    // The sleepers' legacy sessions were live at cutover.
    assert!(
        report.imported_sessions >= 2,
        "{}",
        report.imported_sessions
    );
    let compared: u64 = report
        .comparisons
        .iter()
        .filter(|(labels, _)| labels.contains(r#"result="match""#))
        .map(|(_, n)| n)
        .sum();
    assert!(compared > 100, "the proxy compared answers: {compared}");
}
