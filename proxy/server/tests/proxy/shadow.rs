//! Shadow comparison: a planted difference is reported (masked), what the rules ignore
//! is not, and replayed writes are dry runs that change nothing on either side.

use serde_json::json;

use crate::support::{eventually, stack};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planted_difference_is_reported_masked_and_ignored_fields_are_not() {
    let s = stack(100, 0, 100.0).await;
    s.seed_sides().await; // member 1: nicknames differ (planted)
    // Member 2: the same on both sides but for created_at (ignored by the config).
    s.seed(s.legacy, "two@example.com", "same-two").await;
    s.seed(s.identity, "two@example.com", "same-two").await;
    for _ in 0..5 {
        assert_eq!(s.get_as("k", "/api/v1/users/1").await.0, 200);
        assert_eq!(s.get_as("k", "/api/v1/users/2").await.0, 200);
    }
    assert!(
        eventually(|| async {
            let m = s.metrics().await;
            m.contains(r#"proxy_comparisons_total{route="reads",result="mismatch"} 5"#)
                && m.contains(r#"proxy_comparisons_total{route="reads",result="match"} 5"#)
        })
        .await,
        "{}",
        s.metrics().await
    );
    let route = s.route("reads").await;
    assert_eq!(
        route["figures"]["top_fields"][0]["field"], "$.nickname",
        "{route}"
    );
    let (_, samples) = s.admin("GET", "/admin/samples", None).await;
    let text = samples.to_string();
    assert!(text.contains("$.nickname"), "{text}");
    assert!(
        !text.contains("legacy-one") && !text.contains("identity-one"),
        "values must be masked: {text}"
    );
    assert!(
        !text.contains("Bearer"),
        "no credentials in samples: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_writes_are_dry_runs() {
    let s = stack(100, 0, 100.0).await;
    let r = s
        .client
        .post(format!("http://{}/api/v1/users", s.proxy))
        .json(&json!({"user": {"email": "dry@example.com", "password": "password123", "nickname": "dry"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201, "the legacy answers the client");
    assert!(
        eventually(|| async {
            s.metrics()
                .await
                .contains(r#"proxy_shadow_requests_total{route="writes",side="new"} 1"#)
        })
        .await
    );
    // The identity service answered the dry run but kept nothing: the email is free there.
    assert!(
        eventually(|| async {
            s.metrics()
                .await
                .contains(r#"proxy_comparisons_total{route="writes""#)
        })
        .await
    );
    let direct = s
        .client
        .post(format!("http://{}/api/v1/sessions", s.identity))
        .json(&json!({"email": "dry@example.com", "password": "password123"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        direct.status().as_u16(),
        401,
        "the dry-run sign-up must not exist on the new side"
    );
    // A client cannot ask for a dry run itself: the proxy strips the header.
    let r = s
        .client
        .post(format!("http://{}/api/v1/users", s.proxy))
        .header("x-shadow", "dry-run")
        .json(&json!({"user": {"email": "real@example.com", "password": "password123", "nickname": "real"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let login = s
        .client
        .post(format!("http://{}/api/v1/sessions", s.legacy))
        .json(&json!({"email": "real@example.com", "password": "password123"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        login.status().as_u16(),
        201,
        "the client's write was applied on the legacy"
    );
    // A log-out answers 204 without a body: its replay is compared all the same.
    let token = login.json::<serde_json::Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = s
        .client
        .delete(format!("http://{}/api/v1/sessions", s.proxy))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    let compared = |m: &str| -> u64 {
        m.lines()
            .filter(|l| l.starts_with(r#"proxy_comparisons_total{route="writes""#))
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<u64>().ok())
            .sum()
    };
    assert!(
        eventually(|| async { compared(&s.metrics().await) == 3 }).await,
        "the two sign-ups and the log-out compared: {}",
        s.metrics().await
    );
    let m = s.metrics().await;
    assert!(m.contains(r#"proxy_shadow_requests_total{route="writes",side="new"} 3"#));
    assert!(!m.contains(r#"route="writes",result="skipped_"#), "{m}");
}
