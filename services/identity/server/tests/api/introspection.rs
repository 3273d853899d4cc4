//! `VerifyAccessToken` across replicas on PostgreSQL, where each replica keeps the live
//! sessions it introspected in memory: a session that ends (log-out, password change,
//! withdrawal) or whose access token a refresh replaced is refused at once by the
//! replica that ended it and by the others as soon as the database's notification
//! arrives; a replica that stops hearing the notifications stops answering from memory.

use std::time::{Duration, Instant};

use identity_proto::identity::v1 as pb;
use serde_json::json;

use test_support::tcp_gate::{Gate, TcpGate};

use crate::support::{Db, TestApp, replica, replica_on, spawn};

async fn active(app: &TestApp, token: &str) -> bool {
    crate::grpc_client::client(app)
        .await
        .verify_access_token(pb::VerifyAccessTokenRequest {
            access_token: token.to_owned(),
        })
        .await
        .unwrap()
        .into_inner()
        .active
}

/// Waits (up to 5 s) until `app` refuses `token`: the notification's way across.
async fn refused_soon(app: &TestApp, token: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while active(app, token).await {
        assert!(
            Instant::now() < deadline,
            "still active on the other replica 5 s after its end (entries live 30 s: the end was not heard)"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Introspects on both replicas, twice (the second from memory where it may serve).
async fn active_on_both(a: &TestApp, b: &TestApp, token: &str) {
    for app in [a, b, a, b] {
        assert!(active(app, token).await);
    }
}

async fn metric(app: &TestApp, name: &str) -> Option<f64> {
    let text = app.send("GET", "/metrics", None, None).await.text;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// Waits (up to 10 s) until the replica's session cache serves, or stops.
async fn cache_serving(app: &TestApp, serving: bool) {
    let want = Some(if serving { 1.0 } else { 0.0 });
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(app, "identity_session_cache_serving").await != want {
        assert!(
            Instant::now() < deadline,
            "the session cache never turned {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_end_of_a_session_reaches_every_replica() {
    let a = spawn(Db::Postgres).await;
    let b = replica(&a).await;
    cache_serving(&b, true).await;
    let (_, token, refresh) = a.member("ends@x.io").await;
    active_on_both(&a, &b, &token).await;
    assert!(
        metric(&b, "identity_session_cache_lookups_total{result=\"hit\"}").await > Some(0.0),
        "the replica answered from memory"
    );

    // A refresh replaces the access token.
    let r = a
        .send(
            "POST",
            "/api/v1/sessions/refresh",
            None,
            Some(json!({"refresh_token": refresh})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let token2 = r.json()["token"].as_str().unwrap().to_owned();
    assert!(!active(&a, &token).await, "at once where it happened");
    refused_soon(&b, &token).await;
    active_on_both(&a, &b, &token2).await;

    // A password change ends the other sessions.
    let other = a.login("ends@x.io", "password123").await.json()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    active_on_both(&a, &b, &other).await;
    let r = a
        .send(
            "PUT",
            "/api/v1/users/me/password",
            Some(&token2),
            Some(json!({"current_password": "password123", "password": "newpassword1"})),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert!(!active(&a, &other).await);
    refused_soon(&b, &other).await;

    // A log-out on the other replica.
    let third = a.login("ends@x.io", "newpassword1").await.json()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    active_on_both(&a, &b, &third).await;
    assert_eq!(
        a.send("DELETE", "/api/v1/sessions", Some(&third), None)
            .await
            .status,
        204
    );
    refused_soon(&b, &third).await;

    // A withdrawal ends them all.
    active_on_both(&a, &b, &token2).await;
    assert_eq!(
        a.send("DELETE", "/api/v1/users/me", Some(&token2), None)
            .await
            .status,
        204
    );
    assert!(!active(&a, &token2).await);
    refused_soon(&b, &token2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_loses_its_notifications_answers_from_the_database() {
    let a = spawn(Db::Postgres).await;
    let b = replica(&a).await;
    cache_serving(&b, true).await;
    let (_, token, _) = a.member("deaf@x.io").await;
    active_on_both(&a, &b, &token).await;

    // The database drops every listening connection (a failover, a restart, an
    // administrator): a session ended while a replica does not listen is never heard.
    let admin = sqlx::PgPool::connect(&a.database_url).await.unwrap();
    let dropped: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND query LIKE 'LISTEN%'",
    )
    .fetch_all(&admin)
    .await
    .unwrap();
    assert_eq!(dropped.len(), 2, "one listener per replica");
    cache_serving(&b, false).await;
    assert_eq!(
        a.send("DELETE", "/api/v1/sessions", Some(&token), None)
            .await
            .status,
        204
    );
    assert!(
        !active(&b, &token).await,
        "answered from the database, at once"
    );
    // It listens again, and serves from memory again.
    let (_, fresh, _) = a.member("heard@x.io").await;
    cache_serving(&b, true).await;
    active_on_both(&a, &b, &fresh).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_whose_listening_connection_goes_silent_answers_from_the_database() {
    let a = spawn(Db::Postgres).await;
    // Replica B reaches the database through a gate that can silence only its listening
    // connection: a firewall dropping an idle connection without a word (no reset, no
    // error), while every other connection works.
    let (gate, through) = TcpGate::in_front_of(&a.database_url).await;
    let b = replica_on(&a, &through).await;
    cache_serving(&b, true).await;
    let (_, token, _) = a.member("silenced@x.io").await;
    active_on_both(&a, &b, &token).await;

    gate.set(Gate::ClosedToListeners);
    // B stops hearing its own heartbeat and stops answering from memory...
    cache_serving(&b, false).await;
    // ...so a session ended now, unheard by B, is refused by B at once.
    assert_eq!(
        a.send("DELETE", "/api/v1/sessions", Some(&token), None)
            .await
            .status,
        204
    );
    assert!(!active(&b, &token).await, "answered from the database");

    // The connection back, B listens again and serves from memory again.
    gate.set(Gate::Open);
    cache_serving(&b, true).await;
    let (_, fresh, _) = a.member("heard-again@x.io").await;
    active_on_both(&a, &b, &fresh).await;
}
