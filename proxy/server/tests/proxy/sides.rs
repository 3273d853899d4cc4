//! Which side serves, and which is asked again: writes are never replayed to the legacy
//! (it cannot roll one back) nor fallen back on (a write may have applied), safe
//! requests fall back on the legacy when the new side answers 5xx, and two proxy
//! replicas send every user to the same side without sharing anything.

use std::net::SocketAddr;

use migration_proxy::Proxy;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::support::{eventually, settings, stack, virtual_service, write_virtual_service};

/// A manifest whose rules mirror to both sides (Istio's `mirrors`), at `new` percent.
fn mirrored_both_ways(new: u32) -> String {
    virtual_service(100 - new, new, 100.0).replace(
        "    mirror: {host: identity.test}\n    mirrorPercentage: {value: 100}\n",
        "    mirrors:\n    - destination: {host: identity.test}\n      percentage: {value: 100}\n    - destination: {host: legacy.test}\n      percentage: {value: 100}\n",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_are_never_replayed_to_the_legacy() {
    let s = stack(0, 100, 100.0).await;
    let manifest = mirrored_both_ways(100);
    assert!(manifest.contains("destination: {host: legacy.test}\n      percentage"));
    write_virtual_service(&s.vs_path, &manifest);
    let (status, _) = s.admin("POST", "/admin/reload", None).await;
    assert_eq!(status, 200);
    let r = s
        .client
        .post(format!("http://{}/api/v1/users", s.proxy))
        .json(&json!({"user": {"email": "w@example.com", "password": "password123", "nickname": "writer"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    // A safe request served by the new side is replayed to the legacy, so replays do
    // reach it: the write's absence there is the rule, not an accident.
    let (status, _) = s.get_as("reader", "/api/v1/users/1").await;
    assert_eq!(status, 200);
    assert!(
        eventually(|| async {
            s.metrics()
                .await
                .contains(r#"proxy_shadow_requests_total{route="reads",side="legacy"} 1"#)
        })
        .await
    );
    let m = s.metrics().await;
    assert!(
        !m.contains(r#"proxy_shadow_requests_total{route="writes",side="legacy"}"#),
        "{m}"
    );
    let legacy = reqwest::get(format!("http://{}/api/v1/users/1", s.legacy))
        .await
        .unwrap();
    assert_eq!(
        legacy.status().as_u16(),
        404,
        "the sign-up reached the legacy"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_the_new_side_fails_is_not_fallen_back_on() {
    let mut s = stack(0, 100, 0.0).await;
    s.stop_identity().await;
    let r = s
        .client
        .post(format!("http://{}/api/v1/users", s.proxy))
        .json(&json!({"user": {"email": "f@example.com", "password": "password123", "nickname": "failed"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 502);
    let legacy = reqwest::get(format!("http://{}/api/v1/users/1", s.legacy))
        .await
        .unwrap();
    assert_eq!(
        legacy.status().as_u16(),
        404,
        "the write was sent to the legacy"
    );
    assert!(!s.metrics().await.contains("proxy_fallbacks_total"));
}

/// An upstream that answers every request `500` with a JSON body.
async fn failing_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut seen = Vec::new();
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buf[..n]);
                    while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                        seen.drain(..end + 4);
                        let body = br#"{"status":500,"error":"Internal Server Error"}"#;
                        let head = format!(
                            "HTTP/1.1 500 Internal Server Error\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                            body.len()
                        );
                        if stream.write_all(head.as_bytes()).await.is_err()
                            || stream.write_all(body).await.is_err()
                        {
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_safe_request_the_new_side_answers_5xx_is_answered_by_the_legacy() {
    let s = stack(0, 100, 0.0).await;
    s.seed(s.legacy, "one@example.com", "legacy-one").await;
    let failing = failing_upstream().await;
    let config = s
        .cfg_text
        .replace(&format!("\"{}\"", s.identity), &format!("\"{failing}\""));
    assert_ne!(config, s.cfg_text);
    write_virtual_service(&s.cfg_path, &config);
    let (status, _) = s.admin("POST", "/admin/reload", None).await;
    assert_eq!(status, 200);
    for i in 0..5 {
        let (status, body) = s.get_as(&format!("u{i}"), "/api/v1/users/1").await;
        assert_eq!(
            (status, body["nickname"].as_str()),
            (200, Some("legacy-one"))
        );
    }
    assert!(
        s.metrics()
            .await
            .contains(r#"proxy_fallbacks_total{route="reads"} 5"#)
    );
}

/// An upstream that answers every request with the `X-Forwarded-For` it received.
async fn forwarded_for_echo() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut buf = vec![0u8; 8192];
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buf[..n]);
                    while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&seen[..end]).to_string();
                        seen.drain(..end + 4);
                        let xff = head
                            .lines()
                            .find_map(|l| {
                                let (name, value) = l.split_once(':')?;
                                name.eq_ignore_ascii_case("x-forwarded-for")
                                    .then(|| value.trim().to_owned())
                            })
                            .unwrap_or_default();
                        let body = json!({ "xff": xff }).to_string();
                        let answer = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if stream.write_all(answer.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

/// `client_address.peer_is_local_sidecar`: a loopback peer (the pod's mesh sidecar) is
/// a local hop, not appended to `X-Forwarded-For`: the upstream sees the edge's entry
/// alone, as it would without the proxy in the path. Without the setting the peer is
/// appended, as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_sidecar_peer_is_not_appended_to_forwarded_for() {
    let s = stack(100, 0, 0.0).await;
    let echo = forwarded_for_echo().await;
    let to_echo = s
        .cfg_text
        .replace(&format!("\"{}\"", s.legacy), &format!("\"{echo}\""));
    let seen = |config: String| {
        write_virtual_service(&s.cfg_path, &config);
        let client = s.client.clone();
        let (proxy, reload) = (s.proxy, s.admin("POST", "/admin/reload", None));
        async move {
            let (status, body) = reload.await;
            assert_eq!(status, 200, "{body}");
            let r = client
                .get(format!("http://{proxy}/api/v1/users/1"))
                .header("x-forwarded-for", "203.0.113.9")
                .send()
                .await
                .unwrap();
            r.json::<serde_json::Value>().await.unwrap()["xff"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    assert_eq!(
        seen(format!("{to_echo}client_address: {{trusted_hops: 1}}\n")).await,
        "203.0.113.9, 127.0.0.1"
    );
    assert_eq!(
        seen(format!(
            "{to_echo}client_address: {{trusted_hops: 1, peer_is_local_sidecar: true}}\n"
        ))
        .await,
        "203.0.113.9"
    );
}

/// Takes connections and reads requests, never answers (a stuck upstream).
async fn silent_upstream() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// The test manifest at these weights, its reads tried three times of 2 s each: more
/// than the rule's 5 s.
fn three_tries_of_2s(legacy: u32, new: u32) -> String {
    let manifest = virtual_service(legacy, new, 0.0).replace(
        "retries: {attempts: 1, perTryTimeout: 2s, retryOn: connect-failure}",
        "retries: {attempts: 2, perTryTimeout: 2s, retryOn: connect-failure}",
    );
    assert!(manifest.contains("attempts: 2"));
    manifest
}

/// A legacy that never answers a safe request of a `fallback.to_new` rule keeps at most
/// half of its time: the new side answers within the rule's timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_safe_request_a_stuck_legacy_never_answers_is_answered_by_the_new_side_in_time() {
    let s = stack(100, 0, 0.0).await;
    s.seed(s.identity, "one@example.com", "new-one").await;
    let silent = silent_upstream().await;
    let config = s
        .cfg_text
        .replace(&format!("\"{}\"", s.legacy), &format!("\"{silent}\""));
    write_virtual_service(
        &s.cfg_path,
        &format!("{config}fallback: {{to_new: [reads]}}\n"),
    );
    write_virtual_service(&s.vs_path, &three_tries_of_2s(100, 0));
    assert_eq!(s.admin("POST", "/admin/reload", None).await.0, 200);
    let started = std::time::Instant::now();
    let (status, body) = s.get_as("u1", "/api/v1/users/1").await;
    assert_eq!(
        (status, body["nickname"].as_str()),
        (200, Some("new-one")),
        "after {:?}",
        started.elapsed()
    );
    assert!(
        s.metrics()
            .await
            .contains(r#"proxy_fallbacks_to_new_total{route="reads"} 1"#)
    );
}

/// A new side that never answers a safe request keeps at most half of its time: the
/// legacy answers within the rule's timeout, however many tries the rule allows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_safe_request_the_new_side_never_answers_is_answered_by_the_legacy_in_time() {
    let s = stack(0, 100, 0.0).await;
    s.seed(s.legacy, "one@example.com", "legacy-one").await;
    let silent = silent_upstream().await;
    let config = s
        .cfg_text
        .replace(&format!("\"{}\"", s.identity), &format!("\"{silent}\""));
    write_virtual_service(&s.cfg_path, &config);
    write_virtual_service(&s.vs_path, &three_tries_of_2s(0, 100));
    assert_eq!(s.admin("POST", "/admin/reload", None).await.0, 200);
    let started = std::time::Instant::now();
    let (status, body) = s.get_as("u1", "/api/v1/users/1").await;
    assert_eq!(
        (status, body["nickname"].as_str()),
        (200, Some("legacy-one")),
        "after {:?}",
        started.elapsed()
    );
    assert!(
        s.metrics()
            .await
            .contains(r#"proxy_fallbacks_total{route="reads"} 1"#)
    );
}

/// `fallback.to_new`: while the legacy fails (a 5xx, or nothing listening), a safe
/// request of a rule named there is answered by the new side; a write never is, nor a
/// safe request of another rule; a rule name the manifest lacks is refused at reload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_safe_request_the_legacy_fails_is_answered_by_the_new_side_when_its_rule_says_so() {
    let s = stack(100, 0, 100.0).await;
    // Replays to whichever side did not serve.
    write_virtual_service(&s.vs_path, &mirrored_both_ways(0));
    s.seed(s.identity, "one@example.com", "new-one").await;

    let failing = failing_upstream().await;
    let failing_legacy = s
        .cfg_text
        .replace(&format!("\"{}\"", s.legacy), &format!("\"{failing}\""));
    assert_ne!(failing_legacy, s.cfg_text);
    let reload = |text: String| {
        write_virtual_service(&s.cfg_path, &text);
        s.admin("POST", "/admin/reload", None)
    };
    // Not named: the legacy's 500 is the answer.
    assert_eq!(reload(failing_legacy.clone()).await.0, 200);
    let (status, _) = s.get_as("u1", "/api/v1/users/1").await;
    assert_eq!(status, 500);
    // A rule the manifest lacks: refused, and the config before stays.
    let (status, body) = reload(format!(
        "{failing_legacy}fallback: {{to_new: [reads, nowhere]}}\n"
    ))
    .await;
    assert_ne!(status, 200, "{body}");
    assert!(body.to_string().contains("fallback.to_new"), "{body}");
    // Named: answered by the new side, counted, not replayed to the failing legacy.
    assert_eq!(
        reload(format!("{failing_legacy}fallback: {{to_new: [reads]}}\n"))
            .await
            .0,
        200
    );
    for i in 0..5 {
        let (status, body) = s.get_as(&format!("u{i}"), "/api/v1/users/1").await;
        assert_eq!((status, body["nickname"].as_str()), (200, Some("new-one")));
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let metrics = s.metrics().await;
    assert!(
        metrics.contains(r#"proxy_fallbacks_to_new_total{route="reads"} 5"#),
        "{metrics}"
    );
    assert!(
        !metrics.contains(r#"proxy_shadow_requests_total{route="reads",side="legacy"}"#),
        "{metrics}"
    );
    // A write is never sent to the other side after the legacy failed it.
    let r = s
        .client
        .post(format!("http://{}/api/v1/users", s.proxy))
        .json(&json!({"user": {"email": "two@example.com", "password": "password-2", "nickname": "two"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 500);
    let (status, _) = s.get_as("u1", "/api/v1/users/2").await;
    assert_eq!(status, 404, "the write reached the new side");
    // Nothing listening where the legacy was: the same.
    let gone = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let closed = s
        .cfg_text
        .replace(&format!("\"{}\"", s.legacy), &format!("\"{gone}\""));
    assert_eq!(
        reload(format!("{closed}fallback: {{to_new: [reads]}}\n"))
            .await
            .0,
        200
    );
    let (status, body) = s.get_as("u1", "/api/v1/users/1").await;
    assert_eq!((status, body["nickname"].as_str()), (200, Some("new-one")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_send_every_user_to_the_same_side() {
    let s = stack(50, 50, 0.0).await;
    s.seed_sides().await;
    // A second replica on the same files, sharing nothing with the first.
    let other = Proxy::build(settings(&s.vs_path, &s.cfg_path))
        .await
        .unwrap();
    let other_addr = other.addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(other.run_until(async {
        let _ = stopped.await;
    }));
    let side_via = |proxy: SocketAddr, key: String| {
        let client = s.client.clone();
        async move {
            let r = client
                .get(format!("http://{proxy}/api/v1/users/1"))
                .header("authorization", format!("Bearer {key}"))
                .send()
                .await
                .unwrap();
            r.json::<serde_json::Value>().await.unwrap()["nickname"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let mut new = 0;
    for i in 0..300 {
        let key = format!("member-{i}-token");
        let a = side_via(s.proxy, key.clone()).await;
        let b = side_via(other_addr, key.clone()).await;
        assert_eq!(a, b, "{key}: the replicas disagree");
        new += usize::from(a == "identity-one");
    }
    // Both sides were really chosen (50/50).
    assert!((90..=210).contains(&new), "{new} of 300 on the new side");
    let _ = stop.send(());
}
