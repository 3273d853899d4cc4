//! Hot reload: no request fails while the VirtualService changes under load, and a bad
//! manifest is refused with the previous table left in force.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::support::{eventually, stack, virtual_service, write_virtual_service};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_under_load_lose_no_request() {
    let s = Arc::new(stack(100, 0, 0.0).await);
    s.seed_sides().await;
    let failures = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let mut load = Vec::new();
    for worker in 0..4 {
        let (s, failures, done) = (Arc::clone(&s), Arc::clone(&failures), Arc::clone(&done));
        load.push(tokio::spawn(async move {
            for i in 0..100 {
                let (status, _) = s.get_as(&format!("w{worker}-{i}"), "/api/v1/users/1").await;
                if status != 200 {
                    failures.fetch_add(1, Ordering::SeqCst);
                }
                done.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    for i in 0..10 {
        let (l, n) = if i % 2 == 0 { (50, 50) } else { (90, 10) };
        write_virtual_service(&s.vs_path, &virtual_service(l, n, 0.0));
        tokio::time::sleep(std::time::Duration::from_millis(120)).await;
    }
    for t in load {
        t.await.unwrap();
    }
    assert_eq!(done.load(Ordering::SeqCst), 400);
    assert_eq!(failures.load(Ordering::SeqCst), 0);
    assert!(eventually(|| async { s.route("reads").await["new_share_percent"] == 10.0 }).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_manifests_are_refused_and_the_previous_table_stays() {
    let s = stack(80, 20, 0.0).await;
    let rejected = || async {
        let m = s.metrics().await;
        m.lines()
            .find(|l| l.starts_with(r#"proxy_reloads_total{result="rejected"}"#))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
    };
    for (n, bad) in [
        virtual_service(0, 0, 0.0),
        virtual_service(80, 20, 0.0).replace("weight: 20", "weight: -5"),
        virtual_service(80, 20, 0.0).replace("host: identity.test}", "host: unknown.test}"),
        "spec: [this is: not a virtualservice".to_owned(),
    ]
    .into_iter()
    .enumerate()
    {
        write_virtual_service(&s.vs_path, &bad);
        // The refusal is counted once the reload attempt is over: the table is then
        // whatever the attempt left in force.
        let expected = n as u64 + 1;
        assert!(
            eventually(|| async { rejected().await == expected }).await,
            "manifest {n} is refused, once"
        );
        assert_eq!(
            s.route("reads").await["new_share_percent"],
            20.0,
            "the previous table stays in force"
        );
    }
    assert_eq!(rejected().await, 4);
    // A good manifest applies again.
    write_virtual_service(&s.vs_path, &virtual_service(40, 60, 0.0));
    assert!(eventually(|| async { s.route("reads").await["new_share_percent"] == 60.0 }).await);
}

/// The proxy config is reloaded too: new guard thresholds apply without a restart, and
/// a config the guard refuses (a rate of 0 it cannot judge by) leaves the previous
/// thresholds (and table) in force, even when the manifest changed at the same time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guard_thresholds_follow_the_config_file() {
    let s = stack(80, 20, 0.0).await;
    let threshold = || async {
        let (status, body) = s.admin("GET", "/admin/status", None).await;
        assert_eq!(status, 200);
        body["guard"]["max_error_rate"].as_f64()
    };
    assert_eq!(threshold().await, Some(0.2));
    let stricter = s
        .cfg_text
        .replace("max_error_rate: 0.2", "max_error_rate: 0.05");
    assert_ne!(stricter, s.cfg_text);
    write_virtual_service(&s.cfg_path, &stricter);
    assert!(eventually(|| async { threshold().await == Some(0.05) }).await);
    let impossible = s
        .cfg_text
        .replace("max_error_rate: 0.2", "max_error_rate: 0");
    let refusals = |n: u64| {
        let s = &s;
        async move {
            s.metrics()
                .await
                .contains(&format!(r#"proxy_reloads_total{{result="rejected"}} {n}"#))
        }
    };
    // The config alone first (refused), then a good manifest beside it: each write is a
    // new attempt, refused whole.
    write_virtual_service(&s.cfg_path, &impossible);
    assert!(eventually(|| refusals(1)).await);
    write_virtual_service(&s.vs_path, &virtual_service(60, 40, 0.0));
    assert!(eventually(|| refusals(2)).await);
    assert_eq!(threshold().await, Some(0.05));
    assert_eq!(
        s.route("reads").await["new_share_percent"],
        20.0,
        "the manifest is not applied without its config"
    );
}
