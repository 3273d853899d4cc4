//! The dashboard: its page is served without the token, holds no data and no token,
//! and runs under a CSP whose nonce changes with every response; the status it polls
//! carries each route's share changes with their causes, and the guard's thresholds.

use serde_json::{Value, json};

use crate::support::{ADMIN_TOKEN, eventually, stack, virtual_service, write_virtual_service};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_page_needs_no_token_and_holds_none() {
    let s = stack(100, 0, 0.0).await;
    let mut nonces = Vec::new();
    for _ in 0..2 {
        let r = s
            .client
            .get(format!("http://{}/dashboard", s.admin))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let header = |name: &str| {
            r.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        assert!(header("content-type").starts_with("text/html"));
        assert_eq!(header("x-content-type-options"), "nosniff");
        assert_eq!(header("cache-control"), "no-store");
        let csp = header("content-security-policy");
        for directive in [
            "default-src 'none'",
            "connect-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(csp.contains(directive), "{directive} missing from {csp}");
        }
        assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"));
        let nonce = csp
            .split("'nonce-")
            .nth(1)
            .and_then(|rest| rest.split('\'').next())
            .unwrap()
            .to_owned();
        let body = r.text().await.unwrap();
        assert!(body.contains(&format!("<script nonce=\"{nonce}\">")));
        assert!(body.contains(&format!("<style nonce=\"{nonce}\">")));
        assert!(!body.contains("{{NONCE}}"));
        assert!(!body.contains(ADMIN_TOKEN));
        nonces.push(nonce);
    }
    assert_ne!(nonces[0], nonces[1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_keeps_each_routes_share_changes_and_their_causes() {
    let s = stack(100, 0, 0.0).await;
    let (status, _) = s
        .admin(
            "PUT",
            "/admin/routes/reads/weight",
            Some(json!({"percent": 42})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = s.admin("POST", "/admin/routes/reads/abort", None).await;
    assert_eq!(status, 200);
    // A manifest change moves the route without an override; `reads` keeps its own.
    write_virtual_service(&s.vs_path, &virtual_service(50, 50, 0.0));
    assert!(eventually(|| async { s.route("writes").await["new_share_percent"] == 50.0 }).await);

    let changes = |route: &Value| -> Vec<(f64, String)> {
        route["share_history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                assert!(c["secs_ago"].as_f64().unwrap() >= 0.0);
                (
                    c["percent"].as_f64().unwrap(),
                    c["cause"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let reads = changes(&s.route("reads").await);
    let expected = [(0.0, "start"), (42.0, "admin_weight"), (0.0, "admin_abort")];
    assert_eq!(
        reads,
        expected.map(|(p, c)| (p, c.to_owned())).to_vec(),
        "reads"
    );
    let writes = changes(&s.route("writes").await);
    let expected = [(0.0, "start"), (50.0, "reload")];
    assert_eq!(
        writes,
        expected.map(|(p, c)| (p, c.to_owned())).to_vec(),
        "writes"
    );

    let (_, status) = s.admin("GET", "/admin/status", None).await;
    assert_eq!(status["guard"]["max_mismatch_rate"], 0.5);
    assert_eq!(status["guard"]["window_secs"], 30);
}
