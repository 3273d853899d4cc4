//! Shadow comparison: a planted difference is reported (masked), what the rules ignore
//! is not, and writes are replayed, as dry runs that change nothing on either side, only
//! where their answer can still agree.

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
async fn writes_are_replayed_as_dry_runs_only_where_the_answer_can_still_agree() {
    let s = stack(100, 0, 100.0).await;
    let writes = |kind: &str, compared: &str, result: &str| {
        format!(
            r#"proxy_writes_total{{route="writes",kind="{kind}",compared="{compared}",result="{result}"}} 1"#
        )
    };
    // A sign-up replayed after the legacy took the email could only differ: not
    // replayed. Its effect is asked for, and the identity service standing alone (not
    // migrating) says there is nothing to compare.
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
            let m = s.metrics().await;
            m.contains(&writes("sign_up", "answer", "not_comparable"))
                && m.contains(&writes("sign_up", "effect", "not_migrating"))
        })
        .await,
        "{}",
        s.metrics().await
    );
    // A log-in is replayed, as a dry run: the identity service keeps nothing (the
    // member is not there, and the dry run did not bring it over).
    let login = s
        .client
        .post(format!("http://{}/api/v1/sessions", s.proxy))
        .json(&json!({"email": "dry@example.com", "password": "password123"}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status().as_u16(), 201);
    assert!(
        eventually(|| async {
            s.metrics()
                .await
                .contains(r#"proxy_shadow_requests_total{route="writes",side="new"} 1"#)
        })
        .await,
        "{}",
        s.metrics().await
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
        "the dry run must not have created the member on the new side"
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
    // Nor can it ask the new side about write effects through the proxy.
    let r = s
        .client
        .post(format!("http://{}/internal/write-effects", s.proxy))
        .header("x-shadow", "write-effects")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    // Nor have it run a data verify (a scan of both databases) through the proxy.
    let r = s
        .client
        .post(format!("http://{}/internal/verify", s.proxy))
        .header("x-shadow", "verify")
        .header("x-verify-since", "0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    // A log-out ends the session the replay would need: not replayed either.
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
    assert!(
        eventually(|| async {
            s.metrics()
                .await
                .contains(&writes("log_out", "answer", "not_comparable"))
        })
        .await,
        "{}",
        s.metrics().await
    );
    let m = s.metrics().await;
    assert!(
        m.contains(r#"proxy_shadow_requests_total{route="writes",side="new"} 1"#),
        "{m}"
    );
    assert!(!m.contains(r#"route="writes",result="skipped_"#), "{m}");
}
