//! The identity service while migrating, beside a legacy (the simulator on the legacy's
//! own database): writes go through to the legacy in its format, legacy changes come
//! in, and sessions work on both sides, ending on both.

use serde_json::{Value, json};

use crate::support::{Db, TestApp, spawn_in};

struct Legacy {
    url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Legacy {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

async fn legacy(db_url: &str) -> Legacy {
    let state = legacy_sim::connect(db_url, 4).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        axum::serve(listener, legacy_sim::router(state))
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await
            .ok();
    });
    Legacy {
        url,
        stop: Some(tx),
    }
}

async fn call(
    client: &reqwest::Client,
    method: &str,
    url: String,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = client.request(method.parse().unwrap(), url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn setup() -> (TestApp, Legacy) {
    let dir = tempfile::tempdir().unwrap();
    let legacy_url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("legacy.sqlite3").display()
    );
    let legacy = legacy(&legacy_url).await;
    let app = spawn_in(
        Db::Sqlite,
        dir,
        &[
            "--legacy-database-url",
            &legacy_url,
            "--legacy-bcrypt-cost",
            "4",
            "--sync-interval-ms",
            "100",
        ],
    )
    .await;
    (app, legacy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_go_through_and_sessions_work_on_both_sides() {
    let (app, legacy) = setup().await;
    let c = &app.client;
    // A sign-up on the identity service exists on the legacy, same id, its password works there.
    let (s, member) = call(c, "POST", app.url("/api/v1/users"), None, Some(json!({"user": {"email": "both@example.com", "password": "password123", "nickname": "both"}}))).await;
    assert_eq!(s, 201);
    let id = member["id"].as_i64().unwrap();
    let (s, shown) = call(
        c,
        "GET",
        format!("{}/api/v1/users/{id}", legacy.url),
        None,
        None,
    )
    .await;
    assert_eq!(
        (s, shown["nickname"].clone(), shown["created_at"].clone()),
        (200, json!("both"), member["created_at"].clone())
    );
    let (s, legacy_session) = call(
        c,
        "POST",
        format!("{}/api/v1/sessions", legacy.url),
        None,
        Some(json!({"email": "both@example.com", "password": "password123"})),
    )
    .await;
    assert_eq!(s, 201);
    let legacy_token = legacy_session["token"].as_str().unwrap().to_owned();

    // A legacy token works on the identity service, and the other way round.
    assert_eq!(
        call(
            c,
            "GET",
            app.url("/api/v1/users/me"),
            Some(&legacy_token),
            None
        )
        .await
        .0,
        200
    );
    let (s, ours) = call(
        c,
        "POST",
        app.url("/api/v1/sessions"),
        None,
        Some(json!({"email": "both@example.com", "password": "password123"})),
    )
    .await;
    assert_eq!(s, 201);
    let our_token = ours["token"].as_str().unwrap().to_owned();
    assert_eq!(
        call(
            c,
            "GET",
            format!("{}/api/v1/users/me", legacy.url),
            Some(&our_token),
            None
        )
        .await
        .0,
        200
    );

    // A profile change here shows there.
    let (s, _) = call(
        c,
        "PATCH",
        app.url("/api/v1/users/me"),
        Some(&our_token),
        Some(json!({"nickname": "renamed"})),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        call(
            c,
            "GET",
            format!("{}/api/v1/users/{id}", legacy.url),
            None,
            None
        )
        .await
        .1["nickname"],
        "renamed"
    );

    // Log-out on the legacy ends our token here; log-out here ends the legacy's token there.
    assert_eq!(
        call(
            c,
            "DELETE",
            format!("{}/api/v1/sessions", legacy.url),
            Some(&our_token),
            None
        )
        .await
        .0,
        204
    );
    assert_eq!(
        call(
            c,
            "GET",
            app.url("/api/v1/users/me"),
            Some(&our_token),
            None
        )
        .await
        .0,
        401
    );
    assert_eq!(
        call(
            c,
            "DELETE",
            app.url("/api/v1/sessions"),
            Some(&legacy_token),
            None
        )
        .await
        .0,
        204
    );
    assert_eq!(
        call(
            c,
            "GET",
            format!("{}/api/v1/users/me", legacy.url),
            Some(&legacy_token),
            None
        )
        .await
        .0,
        401
    );

    // A legacy refresh token refreshed here: the legacy pair is gone, ours works on both.
    let (_, l2) = call(
        c,
        "POST",
        format!("{}/api/v1/sessions", legacy.url),
        None,
        Some(json!({"email": "both@example.com", "password": "password123"})),
    )
    .await;
    let (s, refreshed) = call(
        c,
        "POST",
        app.url("/api/v1/sessions/refresh"),
        None,
        Some(json!({"refresh_token": l2["refresh_token"]})),
    )
    .await;
    assert_eq!(s, 201);
    assert_eq!(
        call(
            c,
            "GET",
            format!("{}/api/v1/users/me", legacy.url),
            Some(l2["token"].as_str().unwrap()),
            None
        )
        .await
        .0,
        401
    );
    let t3 = refreshed["token"].as_str().unwrap().to_owned();
    assert_eq!(
        call(
            c,
            "GET",
            format!("{}/api/v1/users/me", legacy.url),
            Some(&t3),
            None
        )
        .await
        .0,
        200
    );

    // A password change here: the legacy accepts the new password, other sessions end on both sides.
    let (_, l4) = call(
        c,
        "POST",
        format!("{}/api/v1/sessions", legacy.url),
        None,
        Some(json!({"email": "both@example.com", "password": "password123"})),
    )
    .await;
    let (s, _) = call(
        c,
        "PUT",
        app.url("/api/v1/users/me/password"),
        Some(&t3),
        Some(json!({"current_password": "password123", "password": "password456"})),
    )
    .await;
    assert_eq!(s, 204);
    assert_eq!(
        call(
            c,
            "GET",
            format!("{}/api/v1/users/me", legacy.url),
            Some(l4["token"].as_str().unwrap()),
            None
        )
        .await
        .0,
        401
    );
    assert_eq!(
        call(
            c,
            "GET",
            format!("{}/api/v1/users/me", legacy.url),
            Some(&t3),
            None
        )
        .await
        .0,
        200
    );
    assert_eq!(
        call(
            c,
            "POST",
            format!("{}/api/v1/sessions", legacy.url),
            None,
            Some(json!({"email": "both@example.com", "password": "password456"}))
        )
        .await
        .0,
        201
    );

    // Legacy sign-ups and changes come in by the sync.
    let (s, theirs) = call(c, "POST", format!("{}/api/v1/users", legacy.url), None, Some(json!({"user": {"email": "legacy-born@example.com", "password": "password123", "nickname": "born"}}))).await;
    assert_eq!(s, 201);
    let their_id = theirs["id"].as_i64().unwrap();
    let mut seen = false;
    for _ in 0..40 {
        if call(
            c,
            "GET",
            app.url(&format!("/api/v1/users/{their_id}")),
            None,
            None,
        )
        .await
        .0 == 200
        {
            seen = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(seen, "the legacy's sign-up arrives within 2 s");
    // Ids never collide: the next sign-up here takes the legacy's next id.
    let (_, next) = call(c, "POST", app.url("/api/v1/users"), None, Some(json!({"user": {"email": "next@example.com", "password": "password123", "nickname": "next"}}))).await;
    assert_eq!(next["id"].as_i64().unwrap(), their_id + 1);

    // Withdrawal here scrubs there.
    assert_eq!(
        call(c, "DELETE", app.url("/api/v1/users/me"), Some(&t3), None)
            .await
            .0,
        204
    );
    assert_eq!(
        call(
            c,
            "GET",
            format!("{}/api/v1/users/{id}", legacy.url),
            None,
            None
        )
        .await
        .0,
        404
    );
    assert_eq!(
        call(
            c,
            "GET",
            format!("{}/api/v1/users/me", legacy.url),
            Some(&t3),
            None
        )
        .await
        .0,
        401
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_runs_write_nothing_on_either_side() {
    let (app, legacy) = setup().await;
    let r = app
        .client
        .post(app.url("/api/v1/users"))
        .header("x-shadow", "dry-run")
        .json(&json!({"user": {"email": "ghost@example.com", "password": "password123", "nickname": "ghost"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let (s, _) = call(
        &app.client,
        "POST",
        format!("{}/api/v1/sessions", legacy.url),
        None,
        Some(json!({"email": "ghost@example.com", "password": "password123"})),
    )
    .await;
    assert_eq!(s, 401, "nothing on the legacy");
    assert_eq!(
        app.login("ghost@example.com", "password123").await.status,
        401,
        "nothing here"
    );
}
