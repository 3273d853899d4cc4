//! The rollout guards itself: when the new side fails, clients get the legacy's answers
//! for safe requests, and the route's new weight drops to 0 within the window, until an
//! operator resumes it.

use crate::support::{eventually, stack};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_new_side_is_fallen_back_on_and_aborted() {
    let mut s = stack(50, 50, 0.0).await;
    s.seed_sides().await;
    s.stop_identity().await;
    // Every safe request still succeeds: the legacy answers when the new side fails.
    for i in 0..60 {
        let (status, body) = s.get_as(&format!("u{i}"), "/api/v1/users/1").await;
        assert_eq!(status, 200, "request {i}: {body}");
        assert_eq!(body["nickname"], "legacy-one");
    }
    assert!(
        eventually(|| async { s.route("reads").await["state"] == "aborted" }).await,
        "the guard aborts"
    );
    let route = s.route("reads").await;
    assert_eq!(route["new_share_percent"], 0.0);
    assert!(
        s.metrics()
            .await
            .contains(r#"proxy_guard_aborted{route="reads"} 1"#)
    );
    assert!(
        s.metrics()
            .await
            .contains(r#"proxy_fallbacks_total{route="reads"}"#)
    );
    // It stays aborted until resumed.
    let (status, _) = s.admin("POST", "/admin/routes/reads/resume", None).await;
    assert_eq!(status, 200);
    assert!(eventually(|| async { s.route("reads").await["state"] == "running" }).await);
    assert_eq!(s.route("reads").await["new_share_percent"], 50.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_needs_its_token() {
    let s = stack(100, 0, 0.0).await;
    let anon = s
        .client
        .get(format!("http://{}/admin/status", s.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(anon.status().as_u16(), 401);
    let wrong = s
        .client
        .get(format!("http://{}/admin/status", s.admin))
        .bearer_auth("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
    let (status, _) = s
        .admin(
            "PUT",
            "/admin/routes/reads/weight",
            Some(serde_json::json!({"percent": 150})),
        )
        .await;
    assert_eq!(status, 400);
    let (status, _) = s.admin("POST", "/admin/routes/nope/abort", None).await;
    assert_eq!(status, 404);
    assert_eq!(
        s.client
            .get(format!("http://{}/readyz", s.admin))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
}
